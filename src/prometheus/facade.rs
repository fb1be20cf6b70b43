//! Publishing through the [`metrics`] facade: the same families as the
//! text format, written into whatever recorder the application installed.
//! The facade cannot take bucket counts, so each histogram becomes plain
//! `_bucket`/`_count` series and a `_sum` gauge (see the module docs of
//! [`crate::prometheus`]): counters for the lifetimes of dropped objects
//! (they only ever add up), gauges for the distributions of what is live
//! now (live ages, task idle times), which shrink when objects go.

use std::collections::HashSet;

use crate::snapshot::Snapshot;

use super::build::{build, with_state};
use super::model::{Family, Kind, Labels, Value, LIFETIME, TASKS_IDLE};
use super::text::le_label;
use super::Limits;

/// Records every leakscope metric of `snap` through the [`metrics`] facade,
/// into whatever recorder is installed (global, or thread-local with
/// `metrics::with_local_recorder`), with the default [`Limits`].
///
/// Counters go through `Counter::absolute` (idempotent, never decreasing),
/// gauges through `Gauge::set`. The histograms become series a Prometheus
/// server reads as histograms (`<name>_bucket{le}`, `<name>_count` and
/// `<name>_sum`), because the facade cannot take bucket counts: the
/// lifetimes' buckets and count are counters (cumulative since start), the
/// live ages' and idle times' are gauges, set to the distribution of what
/// is live now (as counters they could never go down); see the module docs. Gauge series that left the
/// export (a heap site out of the top, a holder gone) are set to 0 once.
///
/// Call it from a timer or scrape thread, never from an allocator hook.
/// Do not combine it with [`install`](super::install), which exports the same names itself.
///
/// # Examples
///
/// ```
/// // With no recorder installed this is a no-op.
/// leakscope::prometheus::publish(&leakscope::snapshot());
/// ```
pub fn publish(snap: &Snapshot) {
    publish_with(snap, &Limits::default());
}

/// Like [`publish`], with explicit [`Limits`].
pub fn publish_with(snap: &Snapshot, limits: &Limits) {
    // The exporter's state and the families are leakscope's memory; what
    // the recorder keeps is the application's (so the facade is called
    // outside the guard).
    let fams = crate::alloc::as_metadata(|| with_state(|st| build(snap, limits, st)));
    {
        let mut gauges: HashSet<(&'static str, Labels)> = HashSet::new();
        for f in &fams {
            describe(f);
            for s in &f.samples {
                let labels = to_metrics_labels(&s.labels);
                match (&s.value, f.kind) {
                    (Value::Int(v), Kind::Counter) => {
                        metrics::counter!(f.name, labels).absolute(*v);
                    }
                    (Value::Int(v), _) => {
                        metrics::gauge!(f.name, labels).set(*v as f64);
                        gauges.insert((f.name, s.labels.clone()));
                    }
                    (Value::Float(v), _) => {
                        metrics::gauge!(f.name, labels).set(*v);
                        gauges.insert((f.name, s.labels.clone()));
                    }
                    (Value::Hist(h), _) => {
                        let (bucket, sum, count) = hist_names(f.name);
                        let cum = h.cumulative();
                        let total = cum.last().copied().unwrap_or(0);
                        if cumulative_since_start(f.name) {
                            for (i, c) in cum.iter().enumerate() {
                                let mut l = labels.clone();
                                l.push(metrics::Label::new("le", le_label(i)));
                                metrics::counter!(bucket, l).absolute(*c);
                            }
                            metrics::counter!(count, labels.clone()).absolute(total);
                        } else {
                            // What is live now: the buckets go down too.
                            for (i, c) in cum.iter().enumerate() {
                                let mut l = labels.clone();
                                l.push(metrics::Label::new("le", le_label(i)));
                                metrics::gauge!(bucket, l).set(*c as f64);
                                let mut key = s.labels.clone();
                                key.push(("le", le_label(i)));
                                gauges.insert((bucket, key));
                            }
                            metrics::gauge!(count, labels.clone()).set(total as f64);
                            gauges.insert((count, s.labels.clone()));
                        }
                        metrics::gauge!(sum, labels).set(h.sum_seconds);
                        gauges.insert((sum, s.labels.clone()));
                    }
                }
            }
        }
        // Zero the gauge series that left the export.
        let gone: Vec<(&'static str, Labels)> = crate::alloc::as_metadata(|| {
            with_state(|st| {
                let gone = st.published_gauges.difference(&gauges).cloned().collect();
                st.published_gauges = gauges.clone();
                gone
            })
        });
        for (name, labels) in &gone {
            metrics::gauge!(*name, to_metrics_labels(labels)).set(0.0);
        }
    }
}

fn hist_names(name: &str) -> (&'static str, &'static str, &'static str) {
    if name == LIFETIME {
        (
            "leakscope_object_lifetime_seconds_bucket",
            "leakscope_object_lifetime_seconds_sum",
            "leakscope_object_lifetime_seconds_count",
        )
    } else if name == TASKS_IDLE {
        (
            "leakscope_tasks_idle_seconds_bucket",
            "leakscope_tasks_idle_seconds_sum",
            "leakscope_tasks_idle_seconds_count",
        )
    } else {
        (
            "leakscope_objects_live_age_seconds_bucket",
            "leakscope_objects_live_age_seconds_sum",
            "leakscope_objects_live_age_seconds_count",
        )
    }
}

/// Whether a histogram family only ever adds up (lifetimes of dropped
/// objects), as opposed to describing what is live now.
fn cumulative_since_start(name: &str) -> bool {
    name == LIFETIME
}

fn describe(f: &Family) {
    match f.kind {
        Kind::Counter => metrics::describe_counter!(f.name, f.help),
        Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
        Kind::Histogram => {
            let (bucket, sum, count) = hist_names(f.name);
            if cumulative_since_start(f.name) {
                metrics::describe_counter!(bucket, f.help);
                metrics::describe_counter!(count, f.help);
            } else {
                metrics::describe_gauge!(bucket, f.help);
                metrics::describe_gauge!(count, f.help);
            }
            metrics::describe_gauge!(sum, f.help);
        }
    }
}

fn to_metrics_labels(labels: &Labels) -> Vec<metrics::Label> {
    labels
        .iter()
        .map(|(k, v)| metrics::Label::new(*k, v.clone()))
        .collect()
}
