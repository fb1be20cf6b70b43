//! Leak suspicion: a small bounded history of observations per site and the
//! two rules that flag a site.
//!
//! # History
//!
//! Each snapshot appends `(time, live, oldest age)` to a ring of
//! [`HISTORY_LEN`] entries per site, but only when at least [`MIN_STEP_NS`]
//! passed since the last kept entry (frequent snapshots do not shrink the
//! window). So the window covers at least the last `HISTORY_LEN - 1` steps
//! of 10 s (on leakscope's clock, which `testing::advance_clock` moves in tests).
//!
//! # Rules
//!
//! - **Growing** (a): at least [`MIN_POINTS`] kept observations spanning at
//!   least [`MIN_SPAN_NS`]; the live count never fell below the first
//!   observation's, ended at least 10% and 3 objects above it; and the
//!   oldest live object aged by at least half the span (old objects are not
//!   being released while new ones pile up).
//! - **Outlived** (b): at least [`MIN_DROPPED`] objects were dropped, and
//!   at least [`MIN_OUTLIVED_OBJECTS`] live objects, and at least
//!   [`MIN_OUTLIVED_PERCENT`]% of the live ones, are older than
//!   `max(10 × the median lifetime of dropped objects, 1 s)`. This catches
//!   the plateau: a leak whose live count stopped growing but whose objects
//!   are far older than this site's objects usually get. The median, not a
//!   high quantile, is the yardstick because leaked objects that are
//!   eventually released (the story's timers fired after 17 h) put their
//!   long lifetimes into the histogram too.
//!
//! A stable pool (old objects, live count flat, no churn) matches neither:
//! not growing, and fewer than `MIN_DROPPED` drops (or its drops lived as
//! long as its live objects). A site that mixes a long-lived pool with many
//! short-lived siblings *is* flagged by (b): give the two kinds separate
//! `track!` calls.

use core::time::Duration;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::format::fmt_duration;
use crate::histogram::Histogram;

/// Entries kept per site.
pub(crate) const HISTORY_LEN: usize = 16;
/// Minimum time between two kept observations.
pub(crate) const MIN_STEP_NS: u64 = 10_000_000_000;
/// Observations needed for the growth rule.
pub(crate) const MIN_POINTS: usize = 3;
/// Time the growth rule's window must span.
pub(crate) const MIN_SPAN_NS: u64 = 60_000_000_000;
/// Drops needed before lifetimes are trusted by the outlived rule.
pub(crate) const MIN_DROPPED: u64 = 20;
/// Live objects must be this many times older than the median lifetime.
pub(crate) const OUTLIVED_FACTOR: u64 = 10;
/// ... and at least this old.
pub(crate) const MIN_OUTLIVED_NS: u64 = 1_000_000_000;
/// At least this many live objects must be that old...
pub(crate) const MIN_OUTLIVED_OBJECTS: u64 = 3;
/// ... and at least this share (in percent) of the live ones.
pub(crate) const MIN_OUTLIVED_PERCENT: u64 = 10;

#[derive(Clone, Copy, Debug, Default)]
struct Obs {
    t_ns: u64,
    live: u64,
    oldest_ns: u64,
}

/// Taken around every use of a site's history mutex (never held while
/// waiting for anything else), so that the forking thread, holding it
/// across `fork()` (`alloc/fork.rs`), knows no thread holds any of them:
/// a child forked mid-snapshot can snapshot.
static GATE: Mutex<()> = Mutex::new(());

static FORK: crate::alloc::ForkGuard<()> = crate::alloc::ForkGuard::new();

/// Locks a site's history, under [`GATE`]. Never panics: a poisoned lock
/// is used as is.
pub(crate) fn lock(h: &Mutex<History>) -> (MutexGuard<'static, ()>, MutexGuard<'_, History>) {
    let gate = GATE.lock().unwrap_or_else(PoisonError::into_inner);
    (gate, h.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Takes [`GATE`] for a `fork()` (prepare handler).
pub(crate) fn fork_prepare() {
    FORK.hold(&GATE);
}

/// Releases it after the `fork()` (parent and child).
pub(crate) fn fork_release() {
    FORK.release();
}

/// The per-site ring of observations.
#[derive(Debug)]
pub(crate) struct History {
    ring: [Obs; HISTORY_LEN],
    len: usize,
    next: usize,
}

impl History {
    pub(crate) const fn new() -> Self {
        History {
            ring: [Obs {
                t_ns: 0,
                live: 0,
                oldest_ns: 0,
            }; HISTORY_LEN],
            len: 0,
            next: 0,
        }
    }

    /// Records an observation unless the last kept one is too recent.
    pub(crate) fn observe(&mut self, t_ns: u64, live: u64, oldest_ns: u64) {
        if self.len > 0 {
            let last = self.ring[(self.next + HISTORY_LEN - 1) % HISTORY_LEN];
            if t_ns < last.t_ns.saturating_add(MIN_STEP_NS) {
                return;
            }
        }
        self.ring[self.next] = Obs {
            t_ns,
            live,
            oldest_ns,
        };
        self.next = (self.next + 1) % HISTORY_LEN;
        self.len = (self.len + 1).min(HISTORY_LEN);
    }

    fn iter(&self) -> impl Iterator<Item = Obs> + '_ {
        let start = (self.next + HISTORY_LEN - self.len) % HISTORY_LEN;
        (0..self.len).map(move |k| self.ring[(start + k) % HISTORY_LEN])
    }

    /// Rule (a), in words when it fires.
    pub(crate) fn growing(&self) -> Option<String> {
        if self.len < MIN_POINTS {
            return None;
        }
        let obs: Vec<Obs> = self.iter().collect();
        let (first, last) = (obs[0], obs[obs.len() - 1]);
        let span = last.t_ns.saturating_sub(first.t_ns);
        if span < MIN_SPAN_NS {
            return None;
        }
        let never_fell = obs.iter().all(|o| o.live >= first.live);
        let grew = last.live >= first.live + 3 && last.live * 10 >= first.live * 11;
        let aged = last.oldest_ns.saturating_sub(first.oldest_ns) >= span / 2;
        (never_fell && grew && aged).then(|| {
            format!(
                "live count grew from {} to {} over {} while the oldest live object aged from {} to {}: old objects are not being released",
                first.live,
                last.live,
                fmt_duration(Duration::from_nanos(span)),
                fmt_duration(Duration::from_nanos(first.oldest_ns)),
                fmt_duration(Duration::from_nanos(last.oldest_ns)),
            )
        })
    }
}

/// The outlived rules' yardstick: the median lifetime of dropped objects
/// (or finished tasks), and the threshold past which a live one has
/// outlived its siblings (`OUTLIVED_FACTOR` × the median, at least
/// `MIN_OUTLIVED_NS`). `None` with fewer than `MIN_DROPPED` lifetimes.
pub(crate) fn yardstick(lifetimes: &Histogram) -> Option<(Duration, u64)> {
    if lifetimes.count() < MIN_DROPPED {
        return None;
    }
    let p50 = lifetimes.quantile_upper_bound(0.5)?;
    let p50_ns = u64::try_from(p50.as_nanos()).unwrap_or(u64::MAX);
    Some((
        p50,
        p50_ns.saturating_mul(OUTLIVED_FACTOR).max(MIN_OUTLIVED_NS),
    ))
}

/// Rule (b): `older_than(threshold)` counts live objects older than a
/// threshold; `live` is the site's live count.
///
/// The yardstick is the *median* lifetime of dropped objects (what they
/// usually live), not a high quantile: when leaked objects are eventually
/// released (the story's timers did fire after 17 h), their long lifetimes
/// enter the histogram and would lift a p99 up to the leak itself.
pub(crate) fn outlived(
    lifetimes: &Histogram,
    live: u64,
    older_than: impl Fn(u64) -> u64,
) -> Option<String> {
    let dropped = lifetimes.count();
    let (p50, threshold) = yardstick(lifetimes)?;
    let n = older_than(threshold);
    // A few stragglers (a slow request) are not a leak: a real leak keeps
    // many objects, a sizeable share of the live set.
    (n >= MIN_OUTLIVED_OBJECTS && n.saturating_mul(100) >= live.saturating_mul(MIN_OUTLIVED_PERCENT))
        .then(|| {
            format!(
                "{n} of {live} live object(s) are older than {}, while half of the {dropped} dropped ones lived at most {}",
                fmt_duration(Duration::from_nanos(threshold)),
                fmt_duration(p50),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn growth_needs_span_and_ageing() {
        let mut h = History::new();
        for k in 0..4u64 {
            h.observe(k * 30 * S, 100 + 50 * k, 5 * S + k * 30 * S);
        }
        assert!(h.growing().unwrap().contains("grew from 100 to 250"));

        // Growth while the oldest stays young (churn): not flagged.
        let mut h = History::new();
        for k in 0..4u64 {
            h.observe(k * 30 * S, 100 + 50 * k, 5 * S);
        }
        assert!(h.growing().is_none());

        // A stable pool: old, flat.
        let mut h = History::new();
        for k in 0..4u64 {
            h.observe(k * 30 * S, 10, 3600 * S + k * 30 * S);
        }
        assert!(h.growing().is_none());
    }

    #[test]
    fn frequent_snapshots_keep_one_observation_per_step() {
        let mut h = History::new();
        for k in 0..100u64 {
            h.observe(k * S / 10, k, 0);
        }
        assert_eq!(h.len, 1);
    }

    #[test]
    fn outlived_compares_with_the_median() {
        let mut l = Histogram::empty();
        l.record_n(Duration::from_millis(3), 100);
        let why = outlived(&l, 10, |t| if t <= 3600 * S { 4 } else { 0 }).unwrap();
        assert!(
            why.starts_with("4 of 10 live object(s) are older than 1s"),
            "{why}"
        );
        assert!(outlived(&l, 10, |_| 0).is_none());
        // Too few dropped objects to know what "usual" is.
        let mut few = Histogram::empty();
        few.record_n(Duration::from_millis(3), 5);
        assert!(outlived(&few, 10, |_| 9).is_none());
        // Stragglers: 2 slow objects, or 4 of 100 live, are not a leak.
        assert!(outlived(&l, 3, |_| 2).is_none());
        assert!(outlived(&l, 100, |_| 4).is_none());
        // The plateau: the leaked objects' own long lifetimes (a quarter of
        // the drops) do not hide them, since the median stays short.
        l.record_n(Duration::from_secs(8), 30);
        assert!(outlived(&l, 40, |t| if t <= 2 * S { 38 } else { 0 }).is_some());
    }
}
