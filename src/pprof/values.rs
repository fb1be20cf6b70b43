//! The values of one pprof sample, named: a heap site split into per-age
//! parts (live) and one freed part, each carrying [`Values`] in Go's order
//! of sample types ([`SAMPLE_TYPES`]), and the `age` label of a part.

use std::time::Duration;

use crate::histogram::{BOUNDS_NS, BUCKETS};
use crate::snapshot::HeapSite;

/// The sample types of a Go heap profile, in Go's order (the order of
/// [`Values::to_sample`]).
pub(super) const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// Key of the numeric age label.
pub(super) const AGE_LABEL: &str = "age";
/// Unit of the numeric age label.
pub(super) const AGE_UNIT: &str = "nanoseconds";

/// The four values of a sample (already-scaled estimates).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Values {
    /// Allocations made (`alloc_objects`).
    pub(super) alloc_objects: u64,
    /// Bytes allocated (`alloc_space`).
    pub(super) alloc_bytes: u64,
    /// Allocations in use (`inuse_objects`).
    pub(super) inuse_objects: u64,
    /// Bytes in use (`inuse_space`).
    pub(super) inuse_bytes: u64,
}

impl Values {
    /// Live memory: counted as allocated and as in use.
    fn live(objects: u64, bytes: u64) -> Self {
        Values {
            alloc_objects: objects,
            alloc_bytes: bytes,
            inuse_objects: objects,
            inuse_bytes: bytes,
        }
    }

    /// Freed memory: counted as allocated only.
    fn freed(objects: u64, bytes: u64) -> Self {
        Values {
            alloc_objects: objects,
            alloc_bytes: bytes,
            inuse_objects: 0,
            inuse_bytes: 0,
        }
    }

    /// Adds `other`, saturating.
    pub(super) fn add(&mut self, other: Values) {
        self.alloc_objects = self.alloc_objects.saturating_add(other.alloc_objects);
        self.alloc_bytes = self.alloc_bytes.saturating_add(other.alloc_bytes);
        self.inuse_objects = self.inuse_objects.saturating_add(other.inuse_objects);
        self.inuse_bytes = self.inuse_bytes.saturating_add(other.inuse_bytes);
    }

    /// The values of a pprof `Sample`, in [`SAMPLE_TYPES`] order.
    pub(super) fn to_sample(self) -> Vec<i64> {
        [
            self.alloc_objects,
            self.alloc_bytes,
            self.inuse_objects,
            self.inuse_bytes,
        ]
        .iter()
        .map(|&v| to_i64(v))
        .collect()
    }
}

/// One sample's values and its age bucket (`None`: the freed part, or live
/// memory without an age breakdown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Part {
    pub(super) values: Values,
    pub(super) bucket: Option<usize>,
}

/// The (youngest, oldest) live age a profile counts as in use; `None`:
/// unbounded on that side.
pub(super) type AgeBounds = (Option<Duration>, Option<Duration>);

/// Splits a site into per-age-bucket parts (live) and one freed part, such
/// that the parts sum to the site's allocated totals. Live buckets outside
/// `bounds` count as freed: a bucket is kept when its upper bound is at
/// least the youngest age and its lower bound at most the oldest.
pub(super) fn site_parts(site: &HeapSite, bounds: AgeBounds, out: &mut Vec<Part>) {
    out.clear();
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let (min_ns, max_ns) = (bounds.0.map(ns), bounds.1.map(ns));
    let min_age = bounds.0;
    let keep = |i: usize| {
        let upper_ok = match (min_ns, BOUNDS_NS.get(i)) {
            (Some(min), Some(&bound)) => bound >= min,
            _ => true,
        };
        let lower = if i == 0 {
            0
        } else {
            BOUNDS_NS[(i - 1).min(BOUNDS_NS.len() - 1)]
        };
        upper_ok && max_ns.is_none_or(|max| lower <= max)
    };
    let counts = &site.live_ages.counts;
    let by_age = &site.live_bytes_by_age;
    let has_buckets = by_age.iter().any(|&b| b > 0) || counts.iter().any(|&c| c > 0);
    let (mut live_objs, mut live_bytes) = (0u64, 0u64);
    if has_buckets {
        for i in 0..BUCKETS.max(counts.len()).max(by_age.len()) {
            let objs = counts.get(i).copied().unwrap_or(0);
            let bytes = by_age.get(i).copied().unwrap_or(0);
            if (objs == 0 && bytes == 0) || !keep(i) {
                continue;
            }
            live_objs = live_objs.saturating_add(objs);
            live_bytes = live_bytes.saturating_add(bytes);
            out.push(Part {
                values: Values::live(objs, bytes),
                bucket: Some(i.min(BUCKETS - 1)),
            });
        }
    } else if site.live_bytes > 0 || site.live_objects > 0 {
        // No per-age breakdown: one unlabelled live part, dropped when the
        // oldest live allocation is younger than min_age.
        let old_enough = match (min_age, site.oldest_age) {
            (Some(min), Some(oldest)) => oldest >= min,
            _ => true,
        };
        if old_enough {
            live_objs = site.live_objects;
            live_bytes = site.live_bytes;
            out.push(Part {
                values: Values::live(live_objs, live_bytes),
                bucket: None,
            });
        }
    }
    let freed_objs = site.allocated_objects.saturating_sub(live_objs);
    let freed_bytes = site.allocated_bytes.saturating_sub(live_bytes);
    if freed_objs > 0 || freed_bytes > 0 {
        out.push(Part {
            values: Values::freed(freed_objs, freed_bytes),
            bucket: None,
        });
    }
}

/// The `age` label value of a bucket: its upper bound in nanoseconds; for
/// the `+Inf` bucket the site's oldest age (at least the last bound).
pub(super) fn bucket_age_ns(bucket: usize, oldest: Option<Duration>) -> i64 {
    let last = BOUNDS_NS[BOUNDS_NS.len() - 1];
    let ns = match BOUNDS_NS.get(bucket) {
        Some(&b) => b,
        None => oldest
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(last)
            .max(last.saturating_add(1)),
    };
    to_i64(ns)
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::{bucket_index, Histogram};
    use crate::snapshot::Frame;

    fn site(frames: Vec<Frame>, live: &[(Duration, u64, u64)], alloc: (u64, u64)) -> HeapSite {
        let mut s = HeapSite {
            frames,
            allocated_objects: alloc.0,
            allocated_bytes: alloc.1,
            live_ages: Histogram::empty(),
            live_bytes_by_age: vec![0; BUCKETS],
            ..Default::default()
        };
        for &(age, objs, bytes) in live {
            s.live_ages.record_n(age, objs);
            let ns = u64::try_from(age.as_nanos()).unwrap();
            s.live_bytes_by_age[bucket_index(ns)] += bytes;
            s.live_objects += objs;
            s.live_bytes += bytes;
            s.oldest_age = s.oldest_age.max(Some(age));
        }
        s
    }

    #[test]
    fn parts_split_live_by_age_and_keep_alloc_totals() {
        let s = site(
            vec![Frame::new("f", None, None)],
            &[
                (Duration::from_millis(3), 2, 200),
                (Duration::from_secs(3600), 1, 1000),
            ],
            (10, 5000),
        );
        let mut parts = Vec::new();
        site_parts(&s, (None, None), &mut parts);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].values, Values::live(2, 200));
        assert_eq!(parts[0].bucket, Some(bucket_index(3_000_000)));
        assert_eq!(parts[1].values, Values::live(1, 1000));
        assert_eq!(parts[2].values, Values::freed(7, 3800));
        assert_eq!(parts[2].bucket, None);
        let alloc: u64 = parts.iter().map(|p| p.values.alloc_bytes).sum();
        assert_eq!(alloc, 5000);

        site_parts(&s, (Some(Duration::from_secs(600)), None), &mut parts);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].values, Values::live(1, 1000));
        assert_eq!(parts[1].values, Values::freed(9, 4000));

        // max_age: only the young buckets count as in use.
        site_parts(&s, (None, Some(Duration::from_secs(600))), &mut parts);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].values, Values::live(2, 200));
        assert_eq!(parts[1].values, Values::freed(8, 4800));
        // Both: a window between the two keeps neither.
        let w = (
            Some(Duration::from_secs(60)),
            Some(Duration::from_secs(600)),
        );
        site_parts(&s, w, &mut parts);
        assert_eq!(
            parts,
            vec![Part {
                values: Values::freed(10, 5000),
                bucket: None
            }]
        );
    }

    #[test]
    fn parts_without_age_breakdown_fall_back_to_one_live_part() {
        let s = HeapSite {
            frames: vec![Frame::new("f", None, None)],
            live_objects: 3,
            live_bytes: 300,
            allocated_objects: 3,
            allocated_bytes: 300,
            oldest_age: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let mut parts = Vec::new();
        site_parts(&s, (None, None), &mut parts);
        assert_eq!(
            parts,
            vec![Part {
                values: Values::live(3, 300),
                bucket: None
            }]
        );
        site_parts(&s, (Some(Duration::from_secs(60)), None), &mut parts);
        assert_eq!(parts[0].values, Values::freed(3, 300));
    }

    #[test]
    fn inf_bucket_age_is_at_least_the_last_bound() {
        let last = BOUNDS_NS[BOUNDS_NS.len() - 1];
        assert_eq!(bucket_age_ns(BUCKETS - 1, None), to_i64(last + 1));
        let ten_days = Duration::from_secs(10 * 86_400);
        assert_eq!(
            bucket_age_ns(BUCKETS - 1, Some(ten_days)),
            to_i64(ten_days.as_nanos() as u64)
        );
        assert_eq!(bucket_age_ns(0, None), 1_000);
    }
}
