//! Test-only delays at the exact points of races that are too narrow to hit
//! by chance (feature `test-hooks`, off by default).
//!
//! Without the feature, `pause` is an empty `#[inline(always)]` function:
//! nothing is compiled in. With it, `pause` costs one relaxed load of a
//! per-point flag and delays only while a test has armed that point with
//! [`arm`]: `cargo test --all-features` turns the feature on for every
//! test, and only the tests that arm a point see any delay.

/// A point where a test can widen a race window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Point {
    /// In the unwinder's loader gate, between announcing a loader user and
    /// checking for a fork (`alloc/unwind/loader.rs`).
    LoaderEnter,
    /// Inside `dl_iterate_phdr`'s callback for the unwinder's loader
    /// counters, holding the loader's lock (`alloc/unwind/modules.rs`).
    LoaderInside,
    /// In the re-entrancy guard's drop, after the thread left leakscope
    /// (`alloc/guard.rs`): a signal arriving here runs its handler's
    /// allocations on the user's path.
    GuardLeft,
    /// In `use_coarse_clock`, after claiming the ticker and before its
    /// first reading is stored (`clock/objects.rs`).
    TickerStart,
    /// In the prepare handler of `fork()`, after the loader gate is closed
    /// and before the locks are taken (`alloc/fork.rs`).
    ForkPrepared,
}

#[cfg(feature = "test-hooks")]
mod imp {
    use super::Point;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// Microseconds to pause at each point (0: not armed).
    static ARMED: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

    fn index(p: Point) -> usize {
        match p {
            Point::LoaderEnter => 0,
            Point::GuardLeft => 1,
            Point::TickerStart => 2,
            Point::ForkPrepared => 3,
            Point::LoaderInside => 4,
        }
    }

    pub(crate) fn arm(p: Point, micros: u64) {
        ARMED[index(p)].store(micros, Ordering::Relaxed);
    }

    /// Spins (no syscall, no allocation: safe on the allocator path and in
    /// atfork handlers) while the point is armed.
    #[inline(always)]
    pub(crate) fn pause(p: Point) {
        let us = ARMED[index(p)].load(Ordering::Relaxed);
        if us != 0 {
            spin(us);
        }
    }

    #[cold]
    #[inline(never)]
    fn spin(us: u64) {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let now = |ts: &mut libc::timespec| {
            // SAFETY: `ts` is a valid out-pointer; `clock_gettime` is
            // async-signal-safe and does not allocate.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, ts) };
            ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
        };
        let end = now(&mut ts) + us;
        while now(&mut ts) < end {
            core::hint::spin_loop();
        }
    }
}

/// Arms `point`: every pass through it spins for `micros` µs (0 disarms).
/// Does nothing without the `test-hooks` feature.
pub fn arm(point: Point, micros: u64) {
    #[cfg(feature = "test-hooks")]
    imp::arm(point, micros);
    #[cfg(not(feature = "test-hooks"))]
    let _ = (point, micros);
}

/// Pauses at `point` if a test armed it (nothing without the feature).
#[inline(always)]
pub(crate) fn pause(point: Point) {
    #[cfg(feature = "test-hooks")]
    imp::pause(point);
    #[cfg(not(feature = "test-hooks"))]
    let _ = point;
}
