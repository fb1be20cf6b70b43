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
//! time share one overflow stripe, with atomic read-modify-writes
//! ([`stripe_overflows`] says how many did).
//!
//! # Time
//!
//! Births and drops read `CLOCK_MONOTONIC_COARSE` by default: the kernel's
//! time of the last timer tick, read through the vDSO in about 5 ns (a
//! precise `clock_gettime` costs ~24 ns on the VM this was measured on, a
//! TSC read ~10 ns). It shares `CLOCK_MONOTONIC`'s time base and lags it by
//! less than one tick, [`clock_resolution`] (`clock_getres`, typically
//! 1-4 ms). Every reading adds the offset of
//! [`testing::advance_clock`](crate::testing::advance_clock), so tests can
//! age objects. No thread is started. The clock selection itself lives in
//! `clock/objects.rs`. Error bounds, with `r` =
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
//! - Retired objects live at once: [`MAX_RETIRED`]; retained reasons per
//!   site: [`MAX_RETAINED_REASONS`] (the rest count as `other`).
//!
//! # Retired objects and tasks
//!
//! `retire` says an object should be gone now; one still live after
//! [`retire_grace`] is *retained*, reported exactly (see `retire.rs`). A
//! tracked future, stream or async I/O object records its polls; snapshots
//! show how long live tasks have not been polled (see `tasks.rs`).

mod arc;
mod cohort;
mod history;
/// Takes the objects' locks for a `fork()` (prepare handler), in order:
/// the site-history gate, then the retired-objects table.
pub(crate) fn fork_prepare() {
    history::fork_prepare();
    retire::fork_prepare();
}

/// Releases them after the `fork()` (parent and child), in reverse.
pub(crate) fn fork_release() {
    retire::fork_release();
    history::fork_release();
}
mod holders;
mod labels;
mod retire;
pub(crate) mod scope;
pub(crate) mod site;
mod stripe;
mod tasks;
mod tracked;

pub use arc::{TrackedArc, TrackedWeak};
pub use tracked::Tracked;

pub(crate) use tracked::Header;

pub use retire::{
    retire_grace, retire_overflows, set_retire_grace, DEFAULT_RETIRE_GRACE, MAX_RETAINED_REASONS,
    MAX_RETIRED,
};

pub use crate::clock::objects::{clock_resolution, use_coarse_clock, use_precise_clock};

use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;

use crate::histogram::Histogram;
use crate::snapshot::{Holder, LabelCount, ObjectSite, RetainedReason};

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

/// Threads so far that found every owned stripe taken (they count on each
/// site's overflow stripe, with atomic read-modify-writes; see
/// `objects/stripe.rs`).
pub fn stripe_overflows() -> u64 {
    stripe::overflowed()
}

/// Reads one site into a snapshot record (no history update, no
/// suspicion); `retired` is the site's part of the retired table, read
/// with [`retire::read`].
pub(crate) fn read_site_with(
    ts: &site::TypeState,
    now: u64,
    retired: Option<&retire::SiteRetired>,
) -> (ObjectSite, Vec<(u64, u64)>) {
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
    let mut idle = Histogram::empty();
    let mut oldest_idle: Option<u64> = None;
    let polled_live = ts.idle_if_any().map_or(0, |c| {
        c.read(now, |c| {
            idle.record_n(Duration::from_nanos(c.age_ns), c.count);
            oldest_idle = Some(oldest_idle.map_or(c.age_ns, |o| o.max(c.age_ns)));
        })
        .max(0) as u64
    });
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
        retired: ts.retired.load(Ordering::Relaxed),
        polled_live,
        idle,
        oldest_idle: oldest_idle.map(Duration::from_nanos),
        ..ObjectSite::default()
    };
    let mut site = site;
    if let Some(r) = retired {
        add_retired(&mut site, ts, now, r);
    }
    (site, cohorts)
}

/// Reads one site, with its retired objects.
pub(crate) fn read_site(ts: &site::TypeState, now: u64) -> (ObjectSite, Vec<(u64, u64)>) {
    let retired = retire::read(now, Some(ts));
    let key = ts as *const site::TypeState as usize;
    read_site_with(ts, now, retired.get(&key))
}

/// Fills the retained fields of `site` from its part of the retired table.
fn add_retired(site: &mut ObjectSite, ts: &site::TypeState, now: u64, r: &retire::SiteRetired) {
    site.retiring = r.retiring;
    site.retained = r.retained;
    site.retained_since = r.since.clone();
    site.retained_ages = r.ages.clone();
    let mut reasons = r.reasons.clone();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(b.0)));
    site.retained_oldest = reasons.iter().map(|x| x.2).max().map(Duration::from_nanos);
    for (i, (reason, n, oldest)) in reasons.into_iter().enumerate() {
        let oldest = Some(Duration::from_nanos(oldest));
        if i < MAX_RETAINED_REASONS {
            site.retained_reasons.push(RetainedReason {
                reason: reason.to_string(),
                retained: n,
                oldest,
            });
        } else if let Some(o) = site
            .retained_reasons
            .iter_mut()
            .find(|x| x.reason == "other")
        {
            o.retained += n;
            o.oldest = o.oldest.max(oldest);
        } else {
            site.retained_reasons.push(RetainedReason {
                reason: "other".to_string(),
                retained: n,
                oldest,
            });
        }
    }
    if let (Some(t), Some(key)) = (&ts.labels, ts.site.meta.label_key) {
        for &(ix, n) in &r.labels {
            let value = t.value_of(ix).unwrap_or_else(|| "other".to_string());
            match site.retained_labels.iter_mut().find(|l| l.value == value) {
                Some(l) => l.live += n,
                None => site.retained_labels.push(LabelCount {
                    key: key.to_string(),
                    value,
                    live: n,
                }),
            }
        }
        site.retained_labels
            .sort_by(|a, b| b.live.cmp(&a.live).then_with(|| a.value.cmp(&b.value)));
    }
    if let Some(t) = &ts.holders {
        for (ix, &n) in r.held.iter().enumerate() {
            let Some(rec) = t.record_at(ix).filter(|_| n > 0) else {
                continue;
            };
            let mut oldest_h: Option<u64> = None;
            rec.cohorts.read(now, |c| {
                oldest_h = Some(oldest_h.map_or(c.age_ns, |o| o.max(c.age_ns)));
            });
            let (file, line) = match rec.loc {
                Some(l) => (l.file().to_string(), l.line()),
                None => ("other".to_string(), 0),
            };
            site.retained_holders.push(Holder {
                file,
                line,
                live: n,
                oldest_age: oldest_h.map(Duration::from_nanos),
            });
        }
        site.retained_holders
            .sort_by(|a, b| b.live.cmp(&a.live).then(b.oldest_age.cmp(&a.oldest_age)));
    }
}

/// The retained-objects rule, in words: "400 objects retired 'request
/// finished' more than 5s ago are still held at src/timer.rs:31".
fn retained_why(s: &ObjectSite) -> Option<String> {
    if s.retained == 0 {
        return None;
    }
    let reason = s
        .retained_reasons
        .first()
        .map(|r| r.reason.as_str())
        .unwrap_or("?");
    let others = if s.retained_reasons.len() > 1 {
        " (and other reasons)"
    } else {
        ""
    };
    let grace = crate::format::fmt_duration(retire_grace());
    let held = match s.retained_holders.first() {
        Some(h) => format!("are still held at {}:{}", h.file, h.line),
        None => "are still live".to_string(),
    };
    Some(format!(
        "{} object(s) retired '{reason}'{others} more than {grace} ago {held}",
        s.retained
    ))
}

/// Reads every registered site into snapshot records, updates each site's
/// history and flags suspected leaks (see `history.rs` for the rules).
///
/// Ages are measured against `clock::objects::read_now_ns`: `CLOCK_MONOTONIC` (the
/// caller's `_now_ns` time base), or the TSC clock after
/// [`use_precise_clock`] (which agrees with it up to calibration drift).
pub(crate) fn snapshot_sites(_now_ns: u64) -> Vec<ObjectSite> {
    let now = crate::clock::objects::read_now_ns();
    let retired = retire::read(now, None);
    let mut out = Vec::new();
    for ts in site::registered() {
        let key = ts as *const site::TypeState as usize;
        let (mut s, cohorts) = read_site_with(ts, now, retired.get(&key));
        let oldest_ns = cohorts.iter().map(|c| c.0).max().unwrap_or(0);
        let growing = {
            let (_gate, mut h) = history::lock(&ts.history);
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
        let stuck = ts.idle_if_any().and_then(|idle| {
            let mut idle_cohorts: Vec<(u64, u64)> = Vec::new();
            idle.read(now, |c| idle_cohorts.push((c.age_ns, c.count)));
            tasks::stuck(&s.lifetimes, s.polled_live, |threshold| {
                idle_cohorts
                    .iter()
                    .filter(|c| c.0 > threshold)
                    .map(|c| c.1)
                    .sum()
            })
        });
        let why: Vec<String> = [retained_why(&s), stuck, growing, outlived]
            .into_iter()
            .flatten()
            .collect();
        s.suspected = (!why.is_empty()).then(|| why.join("; "));
        out.push(s);
    }
    out.sort_by(|a, b| {
        (b.retained > 0)
            .cmp(&(a.retained > 0))
            .then(b.suspected.is_some().cmp(&a.suspected.is_some()))
            .then(b.oldest_age.cmp(&a.oldest_age))
            .then(b.live.cmp(&a.live))
    });
    out
}
