//! Fixed, human-meaningful duration buckets shared by every histogram
//! leakscope keeps: lifetimes of freed allocations and dropped objects, and
//! ages of live ones.
//!
//! # Buckets
//!
//! The upper bounds ([`BOUNDS_NS`]) run from 1 µs to 7 days, roughly 1-2.5-5 per
//! decade where requests live (milliseconds to seconds) and at clock-friendly
//! steps above (1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h, 1 d,
//! 3 d, 7 d), then `+Inf`. A value equal to a bound falls into that bound's
//! bucket (Prometheus' `le`, "less than or equal"). The same bounds are the
//! `le` labels of the Prometheus histograms and the age buckets of pprof
//! labels, so all exports agree.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use serde::Serialize;

const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;
const MIN: u64 = 60 * S;
const H: u64 = 60 * MIN;
const D: u64 = 24 * H;

/// Upper bounds of the finite buckets, in nanoseconds, ascending.
pub const BOUNDS_NS: [u64; 28] = [
    US,
    10 * US,
    100 * US,
    MS,
    2_500 * US,
    5 * MS,
    10 * MS,
    25 * MS,
    50 * MS,
    100 * MS,
    250 * MS,
    500 * MS,
    S,
    2_500 * MS,
    5 * S,
    10 * S,
    30 * S,
    MIN,
    5 * MIN,
    10 * MIN,
    30 * MIN,
    H,
    3 * H,
    6 * H,
    12 * H,
    D,
    3 * D,
    7 * D,
];

/// Number of buckets, including the final `+Inf` bucket.
pub const BUCKETS: usize = BOUNDS_NS.len() + 1;

/// Index in [`Histogram::counts`] of the bucket holding a duration of `ns`
/// nanoseconds: the first bound of [`BOUNDS_NS`] `>= ns`, or the `+Inf`
/// bucket ([`BUCKETS`]` - 1`). Branch-light binary search; never panics.
///
/// # Examples
///
/// ```
/// use leakscope::histogram::{bucket_index, Histogram, BOUNDS_NS};
/// let mut h = Histogram::empty();
/// h.record(std::time::Duration::from_millis(3));
/// let i = bucket_index(3_000_000);
/// assert_eq!(h.counts[i], 1);
/// assert!(BOUNDS_NS[i] >= 3_000_000 && BOUNDS_NS[i - 1] < 3_000_000);
/// ```
#[inline]
pub fn bucket_index(ns: u64) -> usize {
    if ns <= BOUNDS_NS[0] {
        // The common case for tracked objects on a coarse clock (a lifetime
        // within one tick reads 0): skip the search.
        return 0;
    }
    BOUNDS_NS.partition_point(|&b| b < ns)
}

/// A snapshot of one duration histogram: per-bucket counts (not cumulative)
/// over the shared [`BOUNDS_NS`], plus the sum of all observations.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Histogram {
    /// Count per bucket; the last entry is the `+Inf` bucket. Not
    /// cumulative.
    pub counts: [u64; BUCKETS],
    /// Sum of all observed durations, in seconds.
    pub sum_seconds: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::empty()
    }
}

impl Histogram {
    /// An empty histogram: every count zero.
    pub const fn empty() -> Self {
        Histogram {
            counts: [0; BUCKETS],
            sum_seconds: 0.0,
        }
    }

    /// Builds a histogram from per-bucket counts and a sum.
    ///
    /// Missing buckets are zero; extra entries are folded into `+Inf`.
    pub fn from_counts(counts: &[u64], sum_seconds: f64) -> Self {
        let mut h = Histogram::empty();
        for (i, &c) in counts.iter().enumerate() {
            let b = &mut h.counts[i.min(BUCKETS - 1)];
            *b = b.saturating_add(c);
        }
        h.sum_seconds = sum_seconds;
        h
    }

    /// Total number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Records one observation (used when building snapshots).
    pub fn record(&mut self, d: Duration) {
        self.record_n(d, 1);
    }

    /// Records `n` observations of the same duration.
    pub fn record_n(&mut self, d: Duration, n: u64) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket_index(ns)] += n;
        self.sum_seconds += d.as_secs_f64() * n as f64;
    }

    /// Adds another histogram's counts and sum into this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, &c) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(c);
        }
        self.sum_seconds += other.sum_seconds;
    }

    /// Cumulative counts (`le` semantics), as Prometheus wants them.
    pub fn cumulative(&self) -> [u64; BUCKETS] {
        let mut acc = 0u64;
        self.counts.map(|c| {
            acc = acc.saturating_add(c);
            acc
        })
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1), or `None`
    /// for an empty histogram. The `+Inf` bucket reports `None` too.
    pub fn quantile_upper_bound(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut acc = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return BOUNDS_NS.get(i).map(|&n| Duration::from_nanos(n));
            }
        }
        None
    }
}

/// A lock-free histogram of durations: one relaxed `fetch_add` per
/// observation on the bucket and one on the sum.
///
/// Used by tracked-object sites; `const`-constructible so it can live in a
/// `static`.
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl AtomicHistogram {
    /// An empty histogram.
    #[allow(clippy::declare_interior_mutable_const)]
    pub(crate) const fn new() -> Self {
        const Z: AtomicU64 = AtomicU64::new(0);
        AtomicHistogram {
            counts: [Z; BUCKETS],
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one duration given in nanoseconds.
    #[inline]
    pub(crate) fn record_ns(&self, ns: u64) {
        self.counts[bucket_index(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Records one duration in a histogram that only the calling thread
    /// writes (a plain load and store per word, no read-modify-write).
    /// Concurrent writers would lose counts; concurrent readers are fine.
    #[inline]
    pub(crate) fn record_ns_exclusive(&self, ns: u64) {
        let c = &self.counts[bucket_index(ns)];
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        let s = &self.sum_ns;
        s.store(
            s.load(Ordering::Relaxed).wrapping_add(ns),
            Ordering::Relaxed,
        );
    }

    /// Reads the current counts into a [`Histogram`].
    pub(crate) fn load(&self) -> Histogram {
        Histogram {
            counts: core::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// A short human label for a bucket bound, e.g. `"2.5ms"`, `"1h"`, `"+Inf"`.
pub(crate) fn bound_label(i: usize) -> String {
    match BOUNDS_NS.get(i) {
        Some(&n) => crate::format::fmt_duration(Duration::from_nanos(n)),
        None => "+Inf".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_ascend_and_index_is_le() {
        for w in BOUNDS_NS.windows(2) {
            assert!(w[0] < w[1]);
        }
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(US), 0);
        assert_eq!(bucket_index(US + 1), 1);
        assert_eq!(bucket_index(S), 12);
        assert_eq!(bucket_index(7 * D), BOUNDS_NS.len() - 1);
        assert_eq!(bucket_index(7 * D + 1), BUCKETS - 1);
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn histogram_record_and_quantile() {
        let mut h = Histogram::empty();
        h.record(Duration::from_millis(3));
        h.record_n(Duration::from_secs(2), 3);
        assert_eq!(h.count(), 4);
        assert_eq!(h.counts[bucket_index(3 * MS)], 1);
        assert_eq!(h.quantile_upper_bound(0.25), Some(Duration::from_millis(5)));
        assert_eq!(
            h.quantile_upper_bound(0.99),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(*h.cumulative().last().unwrap(), 4);
        assert!((h.sum_seconds - 6.003).abs() < 1e-9);
    }

    #[test]
    fn atomic_histogram_loads_what_it_recorded() {
        let h = AtomicHistogram::new();
        h.record_ns(500);
        h.record_ns(2 * H);
        let l = h.load();
        assert_eq!(l.counts[0], 1);
        assert_eq!(l.counts[bucket_index(2 * H)], 1);
        assert_eq!(l.count(), 2);
    }
}
