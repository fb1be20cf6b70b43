//! Prometheus metrics: every number of a [`Snapshot`](crate::Snapshot) under stable names,
//! with bounded cardinality.
//!
//! # Three ways out
//!
//! - [`render`] turns a snapshot into the Prometheus text exposition format
//!   (version 0.0.4). The two duration histograms are rendered *exactly*
//!   (`_bucket` with cumulative `le`, `_sum`, `_count`), so
//!   `histogram_quantile()` works. The debug server's `/metrics` serves this.
//! - [`publish`] records the same values through the [`metrics`] facade into
//!   whatever recorder the application installed, so they join the
//!   application's own metrics.
//! - [`install`] installs `metrics-exporter-prometheus`' recorder as the
//!   global recorder (so the application's own `metrics` calls land in it)
//!   and serves its rendering plus [`render`]'s exact families on `/metrics`
//!   of a listener, refreshed by a publisher thread on an interval.
//!
//! # Metrics
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `leakscope_heap_allocations_total` | counter | |
//! | `leakscope_heap_frees_total` | counter | |
//! | `leakscope_heap_allocated_bytes_total` | counter | |
//! | `leakscope_heap_freed_bytes_total` | counter | |
//! | `leakscope_heap_live_bytes` | gauge | |
//! | `leakscope_heap_live_allocations` | gauge | |
//! | `leakscope_heap_site_live_bytes` | gauge | `function`, `site` (top sites only) |
//! | `leakscope_heap_site_growth_bytes_per_second` | gauge | `function`, `site` (fastest-growing sites only) |
//! | `leakscope_objects_created_total` | counter | `type`, `site`, `name` |
//! | `leakscope_objects_dropped_total` | counter | `type`, `site`, `name` |
//! | `leakscope_objects_live` | gauge | `type`, `site`, `name` |
//! | `leakscope_objects_oldest_age_seconds` | gauge | `type`, `site`, `name` |
//! | `leakscope_object_lifetime_seconds` | histogram | `type`, `site`, `name` |
//! | `leakscope_objects_live_age_seconds` | histogram (of a gauge: no `rate()`) | `type`, `site`, `name` |
//! | `leakscope_objects_live_by_label` | gauge | `type`, `site`, `label`, `value` |
//! | `leakscope_object_holders_live` | gauge | `type`, `site`, `holder` |
//! | `leakscope_dropped_samples_total` | counter | |
//! | `leakscope_system_unwinds_total` | counter | |
//! | `leakscope_metadata_bytes` | gauge | |
//! | `leakscope_symbolizer_bytes` | gauge | |
//! | `leakscope_symbolizer_budget_bytes` | gauge | |
//! | `leakscope_symbolizer_evictions_total` | counter | |
//!
//! A `site` label reads `src/server.rs:42`. Histogram bucket bounds are
//! [`crate::histogram::BOUNDS_NS`] in seconds.
//!
//! # Cardinality
//!
//! [`Limits`] bounds every labelled family; nothing past a limit is dropped
//! silently, it is summed into a series whose labels read `other`:
//!
//! - heap sites: the top [`Limits::top_heap_sites`] (default 50) by live
//!   bytes, re-chosen at every export; the rest are summed into
//!   `{function="other",site="other"}`. A site that leaves the top leaves
//!   [`render`]'s output at once; through [`publish`] its gauge is set to 0
//!   once (the `metrics` facade cannot unregister a series; give your
//!   exporter an idle timeout to drop it).
//! - object sites: the first [`Limits::max_object_sites`] (default 50) sites
//!   seen, the most suspicious first, keep their own series for the life of
//!   the process (so their counters stay monotonic); later sites are summed
//!   into `{type="other",site="other",name="other"}`.
//! - per site: [`Limits::max_label_values`] label values (default 10) and
//!   [`Limits::max_holders`] holders (default 10), most live first, the rest
//!   summed into `value="other"` / `holder="other"`; label values are cut to
//!   [`Limits::max_label_len`] bytes.
//!
//! Counters never decrease between exports, even if the allocator's
//! per-thread sums momentarily do (the exporter keeps the last value it
//! emitted and never goes below it).
//!
//! # The facade's limits, and the route chosen
//!
//! The `metrics` facade cannot take bucket counts (`record_many(v, n)` is `n`
//! samples) and its Prometheus exporter renders histograms as summaries
//! unless told otherwise. So [`render`] writes the histogram families itself,
//! exactly, and [`install`] appends them to the exporter's rendering.
//! [`publish`], which can only speak the facade, writes each histogram as
//! plain series a Prometheus server reads the same way: `<name>_bucket{...,le}`
//! and `<name>_count`, counters for the lifetimes of dropped objects (they
//! only add up) and gauges for the live ages and task idle times (the
//! distribution of what is live now, which shrinks when objects go), and a
//! gauge `<name>_sum` (their `# TYPE` is then `counter`/`gauge`, not
//! `histogram`; `histogram_quantile()` works on them all the same).
//!
//! Nothing here runs on the allocation path: exporting reads a snapshot.
//! The debug server's `/metrics` and [`install`]'s publisher read a light
//! one, from state the allocator keeps current (per-stack live sums, cached
//! first frames; see `alloc/heap_snapshot.rs`), and render exactly the
//! text [`render`] gives for a full [`snapshot`](crate::snapshot()) of
//! the same state. All of the exporting work runs as leakscope's metadata:
//! only the returned text (and what [`publish`] hands the recorder) is the
//! application's memory.
//!
//! # Where things are
//!
//! As `metrics-exporter-prometheus` separates formatting, recorder and
//! registry: `prometheus/model.rs` is the metric model (families, series,
//! names), `prometheus/build.rs` builds it from a snapshot under the
//! [`Limits`] (`prometheus/limits.rs`) with one top-N-plus-`other`
//! selection, `prometheus/text.rs` renders the text format,
//! `prometheus/facade.rs` publishes into the `metrics` facade, and
//! `prometheus/install.rs` serves the exporter through the crate's listener.
//!
//! # Examples
//!
//! ```
//! let text = leakscope::prometheus::render(&leakscope::snapshot());
//! assert!(text.contains("# TYPE leakscope_heap_live_bytes gauge"));
//! ```

mod build;
pub(crate) use self::build::{fork_prepare, fork_release};
mod facade;
#[cfg(feature = "http")]
mod install;
mod limits;
mod model;
mod text;

pub use facade::{publish, publish_with};
#[cfg(feature = "http")]
pub use install::{install, InstallBuilder, InstallError, Installed};
pub use limits::Limits;
pub use model::METRIC_NAMES;
pub(crate) use text::render_both_paths;
#[cfg(feature = "http")]
pub(crate) use text::render_metrics;
pub use text::{render, render_with, CONTENT_TYPE};
