//! The metric model: families of series ([`Family`], [`Sample`],
//! [`Value`]), built once per export from a snapshot by `build.rs` and
//! written out by `text.rs` (the exposition format) or `facade.rs` (the
//! `metrics` facade). Also the stable metric names and the label vocabulary
//! (`other`, capped label values).

use crate::histogram::Histogram;

/// The label value that stands for everything past a cardinality limit.
pub(super) const OTHER: &str = "other";

/// The Prometheus type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One series' value; histograms are exact (bucket counts, sum).
#[derive(Clone, Debug)]
pub(super) enum Value {
    Int(u64),
    Float(f64),
    Hist(Box<Histogram>),
}

/// A series' labels, in output order.
pub(super) type Labels = Vec<(&'static str, String)>;

/// One series of a family.
#[derive(Clone, Debug)]
pub(super) struct Sample {
    pub(super) labels: Labels,
    pub(super) value: Value,
}

/// A metric family: name, help, type and its series, in output order.
#[derive(Clone, Debug)]
pub(super) struct Family {
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) kind: Kind,
    pub(super) samples: Vec<Sample>,
}

impl Family {
    pub(super) fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, labels: Labels, value: Value) {
        self.samples.push(Sample { labels, value });
    }

    pub(super) fn scalar(name: &'static str, kind: Kind, help: &'static str, value: Value) -> Self {
        let mut f = Family::new(name, kind, help);
        f.push(Vec::new(), value);
        f
    }
}

/// The metric names, in output order.
pub(super) const ALLOCATIONS: &str = "leakscope_heap_allocations_total";
pub(super) const FREES: &str = "leakscope_heap_frees_total";
pub(super) const ALLOCATED_BYTES: &str = "leakscope_heap_allocated_bytes_total";
pub(super) const FREED_BYTES: &str = "leakscope_heap_freed_bytes_total";
pub(super) const LIVE_BYTES: &str = "leakscope_heap_live_bytes";
pub(super) const LIVE_ALLOCATIONS: &str = "leakscope_heap_live_allocations";
pub(super) const SITE_LIVE_BYTES: &str = "leakscope_heap_site_live_bytes";
pub(super) const SITE_GROWTH: &str = "leakscope_heap_site_growth_bytes_per_second";
pub(super) const CREATED: &str = "leakscope_objects_created_total";
pub(super) const DROPPED: &str = "leakscope_objects_dropped_total";
pub(super) const LIVE: &str = "leakscope_objects_live";
pub(super) const OLDEST: &str = "leakscope_objects_oldest_age_seconds";
pub(super) const LIFETIME: &str = "leakscope_object_lifetime_seconds";
pub(super) const LIVE_AGE: &str = "leakscope_objects_live_age_seconds";
pub(super) const BY_LABEL: &str = "leakscope_objects_live_by_label";
pub(super) const HOLDERS: &str = "leakscope_object_holders_live";
pub(super) const RETAINED: &str = "leakscope_objects_retained";
pub(super) const RETAINED_OLDEST: &str = "leakscope_objects_retained_oldest_seconds";
pub(super) const TASKS_IDLE: &str = "leakscope_tasks_idle_seconds";
pub(super) const TASKS_OLDEST_IDLE: &str = "leakscope_tasks_oldest_idle_seconds";
pub(super) const DROPPED_SAMPLES: &str = "leakscope_dropped_samples_total";
pub(super) const SYSTEM_UNWINDS: &str = "leakscope_system_unwinds_total";
pub(super) const METADATA: &str = "leakscope_metadata_bytes";
pub(super) const SYMBOLIZER_BYTES: &str = "leakscope_symbolizer_bytes";
pub(super) const SYMBOLIZER_BUDGET: &str = "leakscope_symbolizer_budget_bytes";
pub(super) const SYMBOLIZER_EVICTIONS: &str = "leakscope_symbolizer_evictions_total";
pub(super) const MEMORY: &str = "leakscope_memory_bytes";

/// Every metric name leakscope exports, in output order (stable: dashboards
/// and alerts depend on them).
pub const METRIC_NAMES: [&str; 27] = [
    ALLOCATIONS,
    FREES,
    ALLOCATED_BYTES,
    FREED_BYTES,
    LIVE_BYTES,
    LIVE_ALLOCATIONS,
    SITE_LIVE_BYTES,
    SITE_GROWTH,
    CREATED,
    DROPPED,
    LIVE,
    OLDEST,
    LIFETIME,
    LIVE_AGE,
    BY_LABEL,
    HOLDERS,
    RETAINED,
    RETAINED_OLDEST,
    TASKS_IDLE,
    TASKS_OLDEST_IDLE,
    DROPPED_SAMPLES,
    SYSTEM_UNWINDS,
    METADATA,
    SYMBOLIZER_BYTES,
    SYMBOLIZER_BUDGET,
    SYMBOLIZER_EVICTIONS,
    MEMORY,
];

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
pub(super) fn cap_label(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_capped_on_char_boundaries() {
        assert_eq!(cap_label("héllo wörld", 8), "héll...");
    }
}
