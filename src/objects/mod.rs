//! Tracked objects: [`track!`](crate::track) and
//! [`track_arc!`](crate::track_arc).
//!
//! A drop hook for values you suspect of leaking (request contexts,
//! connections, subscriptions): per callsite it counts objects created,
//! dropped and live, keeps the lifetimes of dropped objects and the ages of
//! live ones, counts live objects per label value, and for shared handles
//! lists *who holds* them and for how long. It needs no global allocator.
//!
//! # Sites
//!
//! Each macro call expands to one `static` site, registered on first use
//! (one per tracked type when the call is in a generic function). The hot
//! path is one load and a `TypeId` compare, then on create a clock read
//! and a load + store of this thread's cohort slot, on drop a clock read,
//! a load + store of the slot and two of the lifetime histogram. No lock,
//! no `lock`-prefixed instruction, no allocation (except the first use of a
//! site, label value or holder).
//!
//! Those counters live in per-thread *stripes*: each thread owns one of 16
//! stripe ids while it lives (recycled when it exits), so its writes need
//! no read-modify-write and threads at one site share no cache line. An
//! object dropped on another thread than the one that created it costs one
//! CAS on a "remote" word of the creator's stripe. Threads beyond 16 at a
//! time count on a shared stripe with atomic read-modify-writes
//! ([`stripe_overflows`] says how many did).
//!
//! # Time
//!
//! Births and drops read `CLOCK_MONOTONIC_COARSE` by default: the kernel's
//! time of the last timer tick, read through the vDSO in about 5 ns (a
//! precise `clock_gettime` costs ~24 ns on the VM this was measured on, a
//! TSC read ~10 ns). It shares `CLOCK_MONOTONIC`'s time base and lags it by
//! less than one tick, [`clock_resolution`] (`clock_getres`, typically
//! 1-4 ms). Every reading adds [`crate::clock::advance`]'s offset, so tests
//! can age objects. No thread is started. Error bounds, with `r` =
//! [`clock_resolution`]:
//!
//! - a lifetime reads as whole ticks and is off by less than `r` either
//!   way (shorter lifetimes mostly read 0);
//! - snapshots read `CLOCK_MONOTONIC`, so a live object's reported age is
//!   never less than its true age `t`, and at most `r` + 1.05 ms more
//!   under 67 ms, at most `r` + (`t` + `r`) / 7.875 (about 13%) more beyond
//!   (the cohorts, see `cohort.rs`).
//!
//! [`use_precise_clock`] switches to the TSC (32 ns resolution, ~6 ns more
//! per create + drop here); [`use_coarse_clock`] to a ticker thread (one
//! load per read, resolution = its tick).
//!
//! # Limits
//!
//! - Label values per site: [`max_label_values`] (default 32); the rest
//!   count as `other`. Values are cut at 64 bytes.
//! - Holder locations per `track_arc!` site: 16; the rest count as `other`.
//! - Tracked types must be `'static` (sites tell types apart by `TypeId`).

mod cohort;
mod history;
mod holders;
mod labels;
pub(crate) mod scope;
mod shared;
pub(crate) mod site;
mod stripe;
mod tracked;

pub use shared::{TrackedArc, TrackedWeak};
pub use tracked::Tracked;

pub(crate) use tracked::Header;

use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::OnceLock;

use crate::histogram::Histogram;
use crate::snapshot::{Holder, LabelCount, ObjectSite};

/// Default cap on distinct label values per site.
pub const DEFAULT_MAX_LABEL_VALUES: usize = 32;
/// Highest accepted cap.
pub const MAX_LABEL_VALUES_LIMIT: usize = 1024;

static MAX_LABELS: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_LABEL_VALUES);

/// The cap on distinct label values per site (default 32).
pub fn max_label_values() -> usize {
    MAX_LABELS.load(Ordering::Relaxed)
}

/// Sets the cap on distinct label values per site, for sites registered
/// from now on (clamped to `1..=1024`). Values past the cap count as
/// `other`.
///
/// # Examples
///
/// ```
/// leakscope::objects::set_max_label_values(8);
/// assert_eq!(leakscope::objects::max_label_values(), 8);
/// ```
pub fn set_max_label_values(n: usize) {
    MAX_LABELS.store(n.clamp(1, MAX_LABEL_VALUES_LIMIT), Ordering::Relaxed);
}

struct ObjClock {
    clock: quanta::Clock,
    raw0: u64,
    /// `clock::now_ns()` minus the test offset, at `raw0`.
    base_ns: u64,
    /// Nanoseconds per 2^32 TSC ticks when quanta reads the TSC itself
    /// (then we read it inline, skipping a call), else 0.
    tsc_mult: u64,
}

static CLOCK: OnceLock<ObjClock> = OnceLock::new();

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
fn init_clock() -> &'static ObjClock {
    CLOCK.get_or_init(|| {
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
        let base_ns = crate::clock::base_ns();
        ObjClock {
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
/// `clock::advance` keeps working. Calling it again changes the tick
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
    if TICKER_TICK_NS.swap(tick_ns, Ordering::AcqRel) != 0 {
        // Already ticking: it picks the new tick up.
        CLOCK_MODE.store(TICKER, Ordering::Relaxed);
        return Ok(());
    }
    TICKER_NS.store(crate::clock::base_ns(), Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name("leakscope-clock".into())
        .spawn(|| loop {
            TICKER_NS.store(crate::clock::base_ns(), Ordering::Relaxed);
            let tick = TICKER_TICK_NS.load(Ordering::Relaxed).max(100_000);
            std::thread::sleep(Duration::from_nanos(tick));
        });
    match spawned {
        Ok(_) => {
            CLOCK_MODE.store(TICKER, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
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
    init_clock();
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
    *RES.get_or_init(crate::clock::coarse_resolution_ns)
}

/// The objects' clock, in [`crate::clock::now_ns`]'s time base (including
/// [`crate::clock::advance`]): births and drops.
#[inline]
pub(crate) fn now_ns() -> u64 {
    let base = match CLOCK_MODE.load(Ordering::Relaxed) {
        KERNEL_COARSE => crate::clock::coarse_base_ns(),
        TICKER => TICKER_NS.load(Ordering::Relaxed),
        _ => precise_ns(),
    };
    base.wrapping_add(crate::clock::offset_ns())
}

/// "Now" for reading ages (snapshots, leak checks): the precise clock the
/// births were stamped against. The coarse clocks lag `CLOCK_MONOTONIC`,
/// so reading `CLOCK_MONOTONIC` keeps every reported age an upper bound.
pub(crate) fn read_now_ns() -> u64 {
    match CLOCK_MODE.load(Ordering::Relaxed) {
        PRECISE => precise_ns().wrapping_add(crate::clock::offset_ns()),
        _ => crate::clock::now_ns(),
    }
}

/// The precise (TSC) clock without the test offset (out of line: it is
/// the opt-in clock, and keeping it out keeps the default path short).
#[inline(never)]
fn precise_ns() -> u64 {
    let c = match CLOCK.get() {
        Some(c) => c,
        None => init_clock(),
    };
    let delta = if c.tsc_mult != 0 {
        let ticks = rdtsc().saturating_sub(c.raw0);
        ((u128::from(ticks) * u128::from(c.tsc_mult)) >> 32) as u64
    } else {
        c.clock.delta_as_nanos(c.raw0, c.clock.raw())
    };
    c.base_ns.wrapping_add(delta)
}

/// Threads so far that found every owned stripe taken (they count on each
/// site's shared stripe, with atomic read-modify-writes; see
/// `objects/stripe.rs`).
pub fn stripe_overflows() -> u64 {
    stripe::overflowed()
}

/// Reads one site into a snapshot record (no history update, no
/// suspicion).
pub(crate) fn read_site(ts: &site::TypeState, now: u64) -> (ObjectSite, Vec<(u64, u64)>) {
    let meta = &ts.site.meta;
    let lifetimes = ts.lifetimes();
    let dropped = lifetimes.count();
    let mut live_ages = Histogram::empty();
    let mut cohorts: Vec<(u64, u64)> = Vec::new();
    let total = ts.cohorts.read(now, |c| {
        live_ages.record_n(Duration::from_nanos(c.age_ns), c.count);
        cohorts.push((c.age_ns, c.count));
    });
    let live = total.max(0) as u64;
    let oldest = cohorts.iter().map(|c| c.0).max();
    let labels = match (&ts.labels, meta.label_key) {
        (Some(t), Some(key)) => t
            .read()
            .into_iter()
            .map(|(value, live)| LabelCount {
                key: key.to_string(),
                value,
                live,
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut holders: Vec<Holder> = Vec::new();
    if let Some(t) = &ts.holders {
        for rec in t.records() {
            let mut oldest_h: Option<u64> = None;
            let n = rec.cohorts.read(now, |c| {
                oldest_h = Some(oldest_h.map_or(c.age_ns, |o| o.max(c.age_ns)));
            });
            if n <= 0 {
                continue;
            }
            let (file, line) = match rec.loc {
                Some(l) => (l.file().to_string(), l.line()),
                None => ("other".to_string(), 0),
            };
            let oldest_age = oldest_h.map(Duration::from_nanos);
            match holders
                .iter_mut()
                .find(|h| h.file == file && h.line == line)
            {
                Some(h) => {
                    h.live += n as u64;
                    h.oldest_age = h.oldest_age.max(oldest_age);
                }
                None => holders.push(Holder {
                    file,
                    line,
                    live: n as u64,
                    oldest_age,
                }),
            }
        }
        holders.sort_by(|a, b| b.live.cmp(&a.live).then(b.oldest_age.cmp(&a.oldest_age)));
    }
    let site = ObjectSite {
        type_name: ts.type_name.to_string(),
        name: meta.name.map(str::to_string),
        file: meta.file.to_string(),
        line: meta.line,
        column: meta.column,
        module_path: meta.module_path.to_string(),
        created: dropped + live,
        dropped,
        live,
        oldest_age: oldest.map(Duration::from_nanos),
        lifetimes,
        live_ages,
        labels,
        holders,
        suspected: None,
    };
    (site, cohorts)
}

/// Reads every registered site into snapshot records, updates each site's
/// history and flags suspected leaks (see `history.rs` for the rules).
///
/// Ages are measured against [`read_now_ns`]: `CLOCK_MONOTONIC` (the
/// caller's `_now_ns` time base), or the TSC clock after
/// [`use_precise_clock`] (which agrees with it up to calibration drift).
pub(crate) fn snapshot_sites(_now_ns: u64) -> Vec<ObjectSite> {
    let now = read_now_ns();
    let mut out = Vec::new();
    for ts in site::registered() {
        let (mut s, cohorts) = read_site(ts, now);
        let oldest_ns = cohorts.iter().map(|c| c.0).max().unwrap_or(0);
        let growing = {
            let mut h = match ts.history.lock() {
                Ok(h) => h,
                Err(poisoned) => poisoned.into_inner(),
            };
            h.observe(now, s.live, oldest_ns);
            h.growing()
        };
        let outlived = history::outlived(&s.lifetimes, s.live, |threshold| {
            cohorts
                .iter()
                .filter(|c| c.0 > threshold)
                .map(|c| c.1)
                .sum()
        });
        s.suspected = match (growing, outlived) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        out.push(s);
    }
    out.sort_by(|a, b| {
        b.suspected
            .is_some()
            .cmp(&a.suspected.is_some())
            .then(b.oldest_age.cmp(&a.oldest_age))
            .then(b.live.cmp(&a.live))
    });
    out
}
