//! The tracked objects' clock: which time source `track!` reads for births
//! and drops, and the public switches between them
//! ([`use_coarse_clock`], [`use_precise_clock`], [`clock_resolution`],
//! re-exported at [`crate::objects`], whose docs give the error bounds).
//!
//! Three sources, all in [`now_ns`](super::now_ns)'s time base (including
//! the test offset):
//!
//! - `CLOCK_MONOTONIC_COARSE` (the default): the kernel's time of the last
//!   timer tick, read through the vDSO;
//! - a ticker: the `leakscope-clock` thread's last reading, one load;
//! - the TSC, read inline with quanta's calibration.
//!
//! [`now_ns`] is on every create and drop: keep it `#[inline]`, one relaxed
//! load of the mode and one read of the source.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use core::time::Duration;
use std::sync::OnceLock;

struct PreciseClock {
    clock: quanta::Clock,
    raw0: u64,
    /// `clock::now_ns()` minus the test offset, at `raw0`.
    base_ns: u64,
    /// Nanoseconds per 2^32 TSC ticks when quanta reads the TSC itself
    /// (then we read it inline, skipping a call), else 0.
    tsc_mult: u64,
}

static PRECISE_CLOCK: OnceLock<PreciseClock> = OnceLock::new();

#[cfg(target_arch = "x86_64")]
#[inline]
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no memory effects; every x86-64 CPU has it (we
    // only use it when quanta found an invariant TSC).
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn rdtsc() -> u64 {
    0
}

#[cold]
fn init_precise_clock() -> &'static PreciseClock {
    PRECISE_CLOCK.get_or_init(|| {
        let clock = quanta::Clock::new();
        // quanta reads the TSC when it is invariant; then its raw values sit
        // between two TSC reads. Otherwise (or off x86-64) use quanta's call.
        let before = rdtsc();
        let raw0 = clock.raw();
        let after = rdtsc();
        let tsc = cfg!(target_arch = "x86_64") && before <= raw0 && raw0 <= after;
        let tsc_mult = if tsc {
            clock.delta_as_nanos(raw0, raw0 + (1 << 32))
        } else {
            0
        };
        let base_ns = super::base_ns();
        PreciseClock {
            clock,
            raw0,
            base_ns,
            tsc_mult,
        }
    })
}

/// Which clock tracked objects read (see the module docs).
static CLOCK_MODE: AtomicU8 = AtomicU8::new(KERNEL_COARSE);
/// `CLOCK_MONOTONIC_COARSE` (the default).
const KERNEL_COARSE: u8 = 0;
/// The `leakscope-clock` ticker thread's last reading.
const TICKER: u8 = 1;
/// The TSC (quanta's calibration).
const PRECISE: u8 = 2;

/// The ticker's last reading of `CLOCK_MONOTONIC` (without the test offset).
static TICKER_NS: AtomicU64 = AtomicU64::new(0);
/// The ticker's period in nanoseconds; 0 = not started.
static TICKER_TICK_NS: AtomicU64 = AtomicU64::new(0);

/// Switches tracked objects to a ticker clock: a background thread
/// (`leakscope-clock`) reads `CLOCK_MONOTONIC` every `tick` and `track!`
/// loads its last value (one load instead of a ~5 ns vDSO call). The thread
/// runs until the process exits.
///
/// Lifetimes and ages then have a resolution of `tick` (see
/// [`clock_resolution`]), and lag when the ticker thread is starved of CPU.
/// [`testing::advance_clock`](crate::testing::advance_clock) keeps working. Calling it again changes the tick
/// (clamped to 100 µs ..= 1 s) and switches back from
/// [`use_precise_clock`].
///
/// # Errors
///
/// When the ticker thread cannot be spawned; the clock in use stays.
///
/// # Examples
///
/// ```
/// leakscope::objects::use_coarse_clock(std::time::Duration::from_millis(1)).unwrap();
/// let t = leakscope::track!(5u8);
/// assert_eq!(*t, 5);
/// ```
pub fn use_coarse_clock(tick: Duration) -> std::io::Result<()> {
    let tick_ns = u64::try_from(tick.as_nanos())
        .unwrap_or(u64::MAX)
        .clamp(100_000, 1_000_000_000);
    // A reading first, by every caller: one that finds the ticker already
    // claimed switches the clock at once, possibly before the claimer
    // (racing in another thread) stored its first reading, and 0 would
    // make every object born then look as old as the machine's uptime.
    TICKER_NS.fetch_max(super::base_ns(), Ordering::Release);
    if TICKER_TICK_NS.swap(tick_ns, Ordering::AcqRel) != 0 {
        // Already ticking (or being started): it picks the new tick up.
        CLOCK_MODE.store(TICKER, Ordering::Release);
        return Ok(());
    }
    crate::__hooks::pause(crate::__hooks::Point::TickerStart);
    TICKER_NS.fetch_max(super::base_ns(), Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name("leakscope-clock".into())
        .spawn(|| loop {
            TICKER_NS.store(super::base_ns(), Ordering::Relaxed);
            let tick = TICKER_TICK_NS.load(Ordering::Relaxed).max(100_000);
            std::thread::sleep(Duration::from_nanos(tick));
        });
    match spawned {
        Ok(_) => {
            CLOCK_MODE.store(TICKER, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            // No ticker runs: a racing caller that switched to it, believing
            // this one would start it, is switched back.
            let _ = CLOCK_MODE.compare_exchange(
                TICKER,
                KERNEL_COARSE,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            TICKER_TICK_NS.store(0, Ordering::Release);
            Err(e)
        }
    }
}

/// Switches tracked objects to the precise clock: the TSC, read inline with
/// [`quanta`](https://docs.rs/quanta)'s calibration (the OS monotonic clock
/// where quanta finds no invariant TSC). Lifetimes then have a resolution
/// of 32 ns instead of a timer tick, for about 6 ns more per create +
/// drop (two TSC reads, measured in a VM). Process-wide; best called once at
/// startup (objects born on one clock and dropped on another see both
/// clocks' errors).
///
/// # Examples
///
/// ```
/// leakscope::objects::use_precise_clock();
/// assert!(leakscope::objects::clock_resolution() < std::time::Duration::from_micros(1));
/// ```
pub fn use_precise_clock() {
    init_precise_clock();
    CLOCK_MODE.store(PRECISE, Ordering::Relaxed);
}

/// The resolution of the tracked objects' clock, which bounds the error of
/// every lifetime (and, plus 1.05 ms, of young objects' ages): one kernel
/// timer tick by default (`clock_getres(CLOCK_MONOTONIC_COARSE)`, typically
/// 1-4 ms), the tick of [`use_coarse_clock`], or 32 ns after
/// [`use_precise_clock`].
///
/// # Examples
///
/// ```
/// let r = leakscope::objects::clock_resolution();
/// assert!(r > std::time::Duration::ZERO);
/// ```
pub fn clock_resolution() -> Duration {
    Duration::from_nanos(match CLOCK_MODE.load(Ordering::Relaxed) {
        KERNEL_COARSE => kernel_resolution_ns(),
        TICKER => TICKER_TICK_NS.load(Ordering::Relaxed).max(1),
        _ => 32,
    })
}

/// `clock_getres(CLOCK_MONOTONIC_COARSE)`, read once.
fn kernel_resolution_ns() -> u64 {
    static RES: OnceLock<u64> = OnceLock::new();
    *RES.get_or_init(super::coarse_resolution_ns)
}

/// The objects' clock, in [`super::now_ns`]'s time base (including the
/// test offset of [`super::advance`]): births and drops.
#[inline]
pub(crate) fn now_ns() -> u64 {
    let base = match CLOCK_MODE.load(Ordering::Relaxed) {
        KERNEL_COARSE => super::coarse_base_ns(),
        TICKER => TICKER_NS.load(Ordering::Relaxed),
        _ => precise_ns(),
    };
    base.wrapping_add(super::offset_ns())
}

/// "Now" for reading ages (snapshots, leak checks): the precise clock the
/// births were stamped against. The coarse clocks lag `CLOCK_MONOTONIC`,
/// so reading `CLOCK_MONOTONIC` keeps every reported age an upper bound.
pub(crate) fn read_now_ns() -> u64 {
    match CLOCK_MODE.load(Ordering::Relaxed) {
        PRECISE => precise_ns().wrapping_add(super::offset_ns()),
        _ => super::now_ns(),
    }
}

/// The precise (TSC) clock without the test offset (out of line: it is
/// the opt-in clock, and keeping it out keeps the default path short).
#[inline(never)]
fn precise_ns() -> u64 {
    let c = match PRECISE_CLOCK.get() {
        Some(c) => c,
        None => init_precise_clock(),
    };
    let delta = if c.tsc_mult != 0 {
        let ticks = rdtsc().saturating_sub(c.raw0);
        ((u128::from(ticks) * u128::from(c.tsc_mult)) >> 32) as u64
    } else {
        c.clock.delta_as_nanos(c.raw0, c.clock.raw())
    };
    c.base_ns.wrapping_add(delta)
}
