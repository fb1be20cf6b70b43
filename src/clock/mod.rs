//! leakscope's monotonic clock.
//!
//! Every timestamp leakscope keeps (allocation births, tracked-object births,
//! snapshot times) is a `u64` count of nanoseconds in `CLOCK_MONOTONIC`'s
//! time base plus a test offset. Allocations and snapshots read
//! `CLOCK_MONOTONIC`; tracked objects read the kernel's coarse variant by
//! default, or the source chosen with [`objects::use_coarse_clock`] /
//! [`objects::use_precise_clock`] (the selection lives in
//! `clock/objects.rs`). Reading never allocates and never locks, so it is
//! safe on the allocator path.
//!
//! [`now_ns`] is the time base of
//! [`Snapshot::taken_at_ns`](crate::Snapshot::taken_at_ns): compare the two
//! to know how long ago a snapshot was taken.
//!
//! # Test support
//!
//! [`testing::advance_clock`](crate::testing::advance_clock) moves
//! leakscope's clock forward for the whole process, so a test can make
//! objects "an hour old" without sleeping. It never moves the clock
//! backwards and only affects leakscope's own ages and lifetimes.

pub(crate) mod objects;

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

/// Nanoseconds added to every reading; only ever grows (see [`advance`]).
static OFFSET_NS: AtomicU64 = AtomicU64::new(0);

/// Current time in nanoseconds on leakscope's monotonic clock.
///
/// # Examples
///
/// ```
/// let snap = leakscope::snapshot();
/// let since = leakscope::clock::now_ns().saturating_sub(snap.taken_at_ns);
/// assert!(since < 60_000_000_000);
/// ```
///
/// The origin is arbitrary (boot time plus the test offset); only
/// differences are meaningful.
#[inline]
pub fn now_ns() -> u64 {
    base_ns().wrapping_add(OFFSET_NS.load(Ordering::Relaxed))
}

/// Reads `clock` as nanoseconds (0 if the call fails).
#[inline]
fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec`; `clock_gettime` only
    // writes into it (served by the vDSO on Linux, no allocation, no lock).
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc == 0 {
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    } else {
        0
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds, without the test offset.
#[inline]
pub(crate) fn base_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const COARSE: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const COARSE: libc::clockid_t = libc::CLOCK_MONOTONIC;

/// The kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`: the time
/// of the last timer tick, a few ns per read through the vDSO), without the
/// test offset. Same time base as [`base_ns`] and never ahead of it. Off
/// Linux: `CLOCK_MONOTONIC`.
#[inline]
pub(crate) fn coarse_base_ns() -> u64 {
    read(COARSE)
}

/// The resolution of [`coarse_base_ns`] (`clock_getres`; one timer tick,
/// typically 1-4 ms), at least 1 ns.
pub(crate) fn coarse_resolution_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec`; `clock_getres` only
    // writes into it.
    let rc = unsafe { libc::clock_getres(COARSE, &mut ts) };
    if rc == 0 {
        ((ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64))
        .max(1)
    } else {
        // Unknown: assume a 100 Hz tick, the coarsest common one.
        10_000_000
    }
}

/// Moves leakscope's clock forward by `by`, for the whole process.
///
/// This exists for tests: it lets a test age tracked objects and sampled
/// allocations by hours in microseconds of real time. It affects only the ages
/// and lifetimes leakscope reports, nothing else in the program. Public as
/// [`testing::advance_clock`](crate::testing::advance_clock).
pub(crate) fn advance(by: Duration) {
    let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX / 4);
    OFFSET_NS.fetch_add(ns, Ordering::Relaxed);
}

/// The test offset alone (what [`advance`] has added so far), for clocks
/// that read their own time source (the tracked-object clock).
#[inline]
pub(crate) fn offset_ns() -> u64 {
    OFFSET_NS.load(Ordering::Relaxed)
}

/// Age in nanoseconds of something born at `birth_ns`, as of `now_ns`
/// (zero if the birth is in the future, e.g. a racing reader).
#[inline]
pub(crate) fn age_ns(now_ns: u64, birth_ns: u64) -> u64 {
    now_ns.saturating_sub(birth_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_advances() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert_eq!(age_ns(a, b), 0);
        assert_eq!(age_ns(b + 5, b), 5);
    }

    #[test]
    fn coarse_clock_is_never_ahead() {
        let c = coarse_base_ns();
        let m = base_ns();
        assert!(c <= m, "{c} > {m}");
        assert!(coarse_resolution_ns() >= 1);
    }
}
