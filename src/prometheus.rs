//! Prometheus metrics: every number of a [`Snapshot`] under stable names,
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
//! plain series a Prometheus server reads the same way: counters
//! `<name>_bucket{...,le}` and `<name>_count`, and a gauge `<name>_sum`
//! (their `# TYPE` is then `counter`/`gauge`, not `histogram`;
//! `histogram_quantile()` works on them all the same).
//!
//! Nothing here runs on the allocation path: exporting reads a snapshot.
//!
//! # Examples
//!
//! ```
//! let text = leakscope::prometheus::render(&leakscope::snapshot());
//! assert!(text.contains("# TYPE leakscope_heap_live_bytes gauge"));
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use crate::histogram::{Histogram, BOUNDS_NS};
use crate::snapshot::{HeapSite, ObjectSite, Snapshot};

#[cfg(feature = "http")]
mod install;
#[cfg(feature = "http")]
pub use install::{install, InstallBuilder, InstallError, Installed};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The label value that stands for everything past a cardinality limit.
pub const OTHER: &str = "other";

/// Cardinality limits of the exported series (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Heap sites exported by name, by live bytes; the rest are summed into
    /// `other`. Default 50.
    pub top_heap_sites: usize,
    /// Object sites exported by name for the life of the process; later ones
    /// are summed into `other`. Default 50.
    pub max_object_sites: usize,
    /// Label values exported per object site; the rest are summed into
    /// `value="other"`. Default 10.
    pub max_label_values: usize,
    /// Holders exported per object site; the rest are summed into
    /// `holder="other"`. Default 10.
    pub max_holders: usize,
    /// Longest label value in bytes; longer ones are cut (on a character
    /// boundary) and end in `...`. Default 200.
    pub max_label_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            top_heap_sites: 50,
            max_object_sites: 50,
            max_label_values: 10,
            max_holders: 10,
            max_label_len: 200,
        }
    }
}

impl Limits {
    /// The default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`Limits::top_heap_sites`].
    #[must_use]
    pub fn top_heap_sites(mut self, n: usize) -> Self {
        self.top_heap_sites = n;
        self
    }

    /// Sets [`Limits::max_object_sites`]. It only takes effect for sites
    /// not yet exported (exported sites keep their series).
    #[must_use]
    pub fn max_object_sites(mut self, n: usize) -> Self {
        self.max_object_sites = n;
        self
    }

    /// Sets [`Limits::max_label_values`].
    #[must_use]
    pub fn max_label_values(mut self, n: usize) -> Self {
        self.max_label_values = n;
        self
    }

    /// Sets [`Limits::max_holders`].
    #[must_use]
    pub fn max_holders(mut self, n: usize) -> Self {
        self.max_holders = n;
        self
    }

    /// Sets [`Limits::max_label_len`] (at least 8).
    #[must_use]
    pub fn max_label_len(mut self, n: usize) -> Self {
        self.max_label_len = n.max(8);
        self
    }
}

// ---------------------------------------------------------------------------
// The model: families of samples, built once per export from a snapshot and
// written out by `render` (text) or `publish` (facade).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug)]
enum Value {
    Int(u64),
    Float(f64),
    Hist(Box<Histogram>),
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
struct Sample {
    labels: Labels,
    value: Value,
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<Sample>,
}

impl Family {
    fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn push(&mut self, labels: Labels, value: Value) {
        self.samples.push(Sample { labels, value });
    }

    fn scalar(name: &'static str, kind: Kind, help: &'static str, value: Value) -> Self {
        let mut f = Family::new(name, kind, help);
        f.push(Vec::new(), value);
        f
    }
}

/// Names and help texts, in output order.
const ALLOCATIONS: &str = "leakscope_heap_allocations_total";
const FREES: &str = "leakscope_heap_frees_total";
const ALLOCATED_BYTES: &str = "leakscope_heap_allocated_bytes_total";
const FREED_BYTES: &str = "leakscope_heap_freed_bytes_total";
const LIVE_BYTES: &str = "leakscope_heap_live_bytes";
const LIVE_ALLOCATIONS: &str = "leakscope_heap_live_allocations";
const SITE_LIVE_BYTES: &str = "leakscope_heap_site_live_bytes";
const CREATED: &str = "leakscope_objects_created_total";
const DROPPED: &str = "leakscope_objects_dropped_total";
const LIVE: &str = "leakscope_objects_live";
const OLDEST: &str = "leakscope_objects_oldest_age_seconds";
const LIFETIME: &str = "leakscope_object_lifetime_seconds";
const LIVE_AGE: &str = "leakscope_objects_live_age_seconds";
const BY_LABEL: &str = "leakscope_objects_live_by_label";
const HOLDERS: &str = "leakscope_object_holders_live";
const DROPPED_SAMPLES: &str = "leakscope_dropped_samples_total";
const SYSTEM_UNWINDS: &str = "leakscope_system_unwinds_total";
const METADATA: &str = "leakscope_metadata_bytes";

/// Every metric name leakscope exports, in output order (stable: dashboards
/// and alerts depend on them).
pub const METRIC_NAMES: [&str; 18] = [
    ALLOCATIONS,
    FREES,
    ALLOCATED_BYTES,
    FREED_BYTES,
    LIVE_BYTES,
    LIVE_ALLOCATIONS,
    SITE_LIVE_BYTES,
    CREATED,
    DROPPED,
    LIVE,
    OLDEST,
    LIFETIME,
    LIVE_AGE,
    BY_LABEL,
    HOLDERS,
    DROPPED_SAMPLES,
    SYSTEM_UNWINDS,
    METADATA,
];

/// Identity of one exported object site: its three labels.
type ObjKey = (String, String, String);

/// What the exporter remembers between exports. Bounded: the sticky set holds
/// at most `max_object_sites` keys, the maps hold one entry per exported
/// series, and series counts are bounded by [`Limits`].
#[derive(Debug, Default)]
struct State {
    /// Object sites that own series, in admission order.
    sticky: HashSet<ObjKey>,
    /// Last value emitted per counter series (monotonic clamp).
    last_counters: HashMap<String, u64>,
    /// Gauge series [`publish`] wrote last time (to zero the ones that left).
    published_gauges: HashSet<(&'static str, Labels)>,
}

/// One exporter state for the whole process: `render` and `publish` agree on
/// which object sites own series.
static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    // A panic while holding the lock leaves at worst a stale clamp map;
    // keep exporting rather than propagate the poison.
    let mut g = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    f(g.get_or_insert_with(State::default))
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
fn cap_label(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The `site` label of a heap site: the innermost frame's `file:line`, with
/// the file shortened to a path relative to the working directory, the
/// cargo registry or the Rust source tree when it is under one of those.
fn heap_site_labels(s: &HeapSite) -> (String, String) {
    let Some(fr) = s.frames.first() else {
        return ("??".into(), "??".into());
    };
    (fr.function.clone(), fr.location())
}

fn obj_key(o: &ObjectSite, limits: &Limits) -> ObjKey {
    (
        cap_label(&o.type_name, limits.max_label_len),
        cap_label(&o.site(), limits.max_label_len),
        cap_label(o.name.as_deref().unwrap_or(""), limits.max_label_len),
    )
}

/// An object site after merging (same labels, or the `other` bucket).
#[derive(Debug, Default)]
struct ObjAgg {
    created: u64,
    dropped: u64,
    live: u64,
    oldest_s: f64,
    lifetimes: Option<Histogram>,
    live_ages: Option<Histogram>,
    /// (key, value) -> live
    labels: BTreeMap<(String, String), u64>,
    /// holder -> live
    holders: BTreeMap<String, u64>,
}

impl ObjAgg {
    fn add(&mut self, o: &ObjectSite, limits: &Limits) {
        self.created += o.created;
        self.dropped += o.dropped;
        self.live += o.live;
        if let Some(a) = o.oldest_age {
            self.oldest_s = self.oldest_s.max(a.as_secs_f64());
        }
        merge_hist(&mut self.lifetimes, &o.lifetimes);
        merge_hist(&mut self.live_ages, &o.live_ages);
        for l in &o.labels {
            let k = (
                cap_label(&l.key, limits.max_label_len),
                cap_label(&l.value, limits.max_label_len),
            );
            *self.labels.entry(k).or_default() += l.live;
        }
        for h in &o.holders {
            let k = cap_label(&format!("{}:{}", h.file, h.line), limits.max_label_len);
            *self.holders.entry(k).or_default() += h.live;
        }
    }
}

fn merge_hist(into: &mut Option<Histogram>, h: &Histogram) {
    into.get_or_insert_with(Histogram::empty).merge(h);
}

/// Builds every family from `snap`, updating the sticky object-site set.
fn build(snap: &Snapshot, limits: &Limits, st: &mut State) -> Vec<Family> {
    let h = &snap.heap;
    let mut out = vec![
        Family::scalar(
            ALLOCATIONS,
            Kind::Counter,
            "Heap allocations since the process started (exact).",
            Value::Int(h.allocations),
        ),
        Family::scalar(
            FREES,
            Kind::Counter,
            "Heap frees since the process started (exact).",
            Value::Int(h.frees),
        ),
        Family::scalar(
            ALLOCATED_BYTES,
            Kind::Counter,
            "Bytes allocated on the heap since the process started (exact).",
            Value::Int(h.allocated_bytes),
        ),
        Family::scalar(
            FREED_BYTES,
            Kind::Counter,
            "Bytes freed on the heap since the process started (exact).",
            Value::Int(h.freed_bytes),
        ),
        Family::scalar(
            LIVE_BYTES,
            Kind::Gauge,
            "Bytes live on the heap now (exact).",
            Value::Int(h.live_bytes),
        ),
        Family::scalar(
            LIVE_ALLOCATIONS,
            Kind::Gauge,
            "Heap allocations live now (exact).",
            Value::Int(h.live_allocations),
        ),
    ];

    // Heap sites: merge stacks sharing an innermost frame, keep the top N.
    let mut by_site: HashMap<(String, String), u64> = HashMap::new();
    for s in &h.sites {
        let (func, site) = heap_site_labels(s);
        let k = (
            cap_label(&func, limits.max_label_len),
            cap_label(&site, limits.max_label_len),
        );
        *by_site.entry(k).or_default() += s.live_bytes;
    }
    let mut sites: Vec<((String, String), u64)> = by_site.into_iter().collect();
    sites.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut fam = Family::new(
        SITE_LIVE_BYTES,
        Kind::Gauge,
        "Estimated live heap bytes per allocation site (innermost frame), top sites only; the rest under site=\"other\".",
    );
    let mut other = None::<u64>;
    for (i, ((func, site), bytes)) in sites.into_iter().enumerate() {
        if i < limits.top_heap_sites {
            fam.push(vec![("function", func), ("site", site)], Value::Int(bytes));
        } else {
            *other.get_or_insert(0) += bytes;
        }
    }
    if let Some(b) = other {
        fam.push(
            vec![("function", OTHER.into()), ("site", OTHER.into())],
            Value::Int(b),
        );
    }
    out.push(fam);

    // Object sites: admit new ones (most suspicious first) while room is left.
    let mut order: Vec<&ObjectSite> = snap.objects.iter().collect();
    order.sort_by(|a, b| {
        b.suspected
            .is_some()
            .cmp(&a.suspected.is_some())
            .then(b.oldest_age.cmp(&a.oldest_age))
            .then(b.live.cmp(&a.live))
    });
    let mut aggs: BTreeMap<ObjKey, ObjAgg> = BTreeMap::new();
    let other_key: ObjKey = (OTHER.into(), OTHER.into(), OTHER.into());
    for o in order {
        let mut k = obj_key(o, limits);
        if !st.sticky.contains(&k) {
            if st.sticky.len() < limits.max_object_sites && k != other_key {
                st.sticky.insert(k.clone());
            } else {
                k = other_key.clone();
            }
        }
        aggs.entry(k).or_default().add(o, limits);
    }

    let obj_labels = |(t, s, n): &ObjKey| -> Labels {
        vec![
            ("type", t.clone()),
            ("site", s.clone()),
            ("name", n.clone()),
        ]
    };
    let mut created = Family::new(
        CREATED,
        Kind::Counter,
        "Tracked objects created per track! site (exact).",
    );
    let mut dropped = Family::new(
        DROPPED,
        Kind::Counter,
        "Tracked objects dropped per track! site (exact).",
    );
    let mut live = Family::new(
        LIVE,
        Kind::Gauge,
        "Tracked objects live now per track! site (exact).",
    );
    let mut oldest = Family::new(
        OLDEST,
        Kind::Gauge,
        "Age in seconds of the oldest live tracked object per track! site (0 when none is live).",
    );
    let mut lifetimes = Family::new(
        LIFETIME,
        Kind::Histogram,
        "Lifetimes in seconds of dropped tracked objects per track! site.",
    );
    let mut live_ages = Family::new(
        LIVE_AGE,
        Kind::Histogram,
        "Ages in seconds of the tracked objects live now per track! site (a histogram of a gauge: use without rate()).",
    );
    let mut by_label = Family::new(
        BY_LABEL,
        Kind::Gauge,
        "Live tracked objects per label value (track!(v, key = value)); values past the cap under value=\"other\".",
    );
    let mut holders = Family::new(
        HOLDERS,
        Kind::Gauge,
        "Live shared handles (track_arc!) per place that created or cloned them; places past the cap under holder=\"other\".",
    );
    for (k, a) in aggs {
        let base = obj_labels(&k);
        created.push(base.clone(), Value::Int(a.created));
        dropped.push(base.clone(), Value::Int(a.dropped));
        live.push(base.clone(), Value::Int(a.live));
        oldest.push(base.clone(), Value::Float(a.oldest_s));
        lifetimes.push(
            base.clone(),
            Value::Hist(Box::new(a.lifetimes.unwrap_or_else(Histogram::empty))),
        );
        live_ages.push(
            base.clone(),
            Value::Hist(Box::new(a.live_ages.unwrap_or_else(Histogram::empty))),
        );
        // Labels: top values per key by live count, the rest summed.
        let mut per_key: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
        for ((key, value), n) in &a.labels {
            per_key.entry(key).or_default().push((value, *n));
        }
        for (key, mut values) in per_key {
            values.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
            let mut rest = None::<u64>;
            for (i, (value, n)) in values.into_iter().enumerate() {
                if i < limits.max_label_values && value != OTHER {
                    let mut l = vec![("type", k.0.clone()), ("site", k.1.clone())];
                    l.push(("label", key.to_string()));
                    l.push(("value", value.to_string()));
                    by_label.push(l, Value::Int(n));
                } else {
                    *rest.get_or_insert(0) += n;
                }
            }
            if let Some(n) = rest {
                let l = vec![
                    ("type", k.0.clone()),
                    ("site", k.1.clone()),
                    ("label", key.to_string()),
                    ("value", OTHER.to_string()),
                ];
                by_label.push(l, Value::Int(n));
            }
        }
        let mut hs: Vec<(&String, &u64)> = a.holders.iter().collect();
        hs.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
        let mut rest = None::<u64>;
        for (i, (holder, n)) in hs.into_iter().enumerate() {
            if i < limits.max_holders && holder != OTHER {
                let l = vec![
                    ("type", k.0.clone()),
                    ("site", k.1.clone()),
                    ("holder", holder.clone()),
                ];
                holders.push(l, Value::Int(*n));
            } else {
                *rest.get_or_insert(0) += n;
            }
        }
        if let Some(n) = rest {
            let l = vec![
                ("type", k.0.clone()),
                ("site", k.1.clone()),
                ("holder", OTHER.to_string()),
            ];
            holders.push(l, Value::Int(n));
        }
    }
    out.extend([
        created, dropped, live, oldest, lifetimes, live_ages, by_label, holders,
    ]);
    out.push(Family::scalar(
        DROPPED_SAMPLES,
        Kind::Counter,
        "Heap samples leakscope could not record because a table was full or a stack could not be captured.",
        Value::Int(h.dropped_samples),
    ));
    out.push(Family::scalar(
        SYSTEM_UNWINDS,
        Kind::Counter,
        "Heap samples whose stack leakscope's caching unwinder could not walk, walked by the slower system unwinder instead.",
        Value::Int(h.system_unwinds),
    ));
    out.push(Family::scalar(
        METADATA,
        Kind::Gauge,
        "Bytes of leakscope's own metadata (sample tables, stacks, symbol cache).",
        Value::Int(h.metadata_bytes),
    ));

    // Counters never go down between exports.
    for f in out.iter_mut().filter(|f| f.kind == Kind::Counter) {
        for s in &mut f.samples {
            if let Value::Int(v) = &mut s.value {
                let id = series_id(f.name, &s.labels);
                let last = st.last_counters.entry(id).or_insert(0);
                *v = (*v).max(*last);
                *last = *v;
            }
        }
    }
    out
}

fn series_id(name: &str, labels: &Labels) -> String {
    let mut id = String::from(name);
    for (k, v) in labels {
        id.push('\0');
        id.push_str(k);
        id.push('=');
        id.push_str(v);
    }
    id
}

// ---------------------------------------------------------------------------
// Text exposition.

/// Renders every leakscope metric of `snap` in the Prometheus text format
/// (version 0.0.4, [`CONTENT_TYPE`]), with the default [`Limits`].
///
/// Every family has `# HELP` and `# TYPE` lines; the histograms are exact.
///
/// # Examples
///
/// ```
/// let text = leakscope::prometheus::render(&leakscope::snapshot());
/// assert!(text.contains("leakscope_heap_allocations_total "));
/// ```
pub fn render(snap: &Snapshot) -> String {
    render_with(snap, &Limits::default())
}

/// Like [`render`], with explicit [`Limits`].
pub fn render_with(snap: &Snapshot, limits: &Limits) -> String {
    let fams = with_state(|st| build(snap, limits, st));
    let mut out = String::with_capacity(4096);
    for f in &fams {
        write_family(&mut out, f);
    }
    out
}

fn write_family(out: &mut String, f: &Family) {
    let ty = match f.kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    };
    let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
    let _ = writeln!(out, "# TYPE {} {ty}", f.name);
    for s in &f.samples {
        match &s.value {
            Value::Int(v) => {
                write_series(out, f.name, "", &s.labels, None);
                let _ = writeln!(out, " {v}");
            }
            Value::Float(v) => {
                write_series(out, f.name, "", &s.labels, None);
                let _ = writeln!(out, " {}", fmt_f64(*v));
            }
            Value::Hist(h) => {
                let cum = h.cumulative();
                for (i, c) in cum.iter().enumerate() {
                    let le = le_label(i);
                    write_series(out, f.name, "_bucket", &s.labels, Some(&le));
                    let _ = writeln!(out, " {c}");
                }
                write_series(out, f.name, "_sum", &s.labels, None);
                let _ = writeln!(out, " {}", fmt_f64(h.sum_seconds));
                write_series(out, f.name, "_count", &s.labels, None);
                let _ = writeln!(out, " {}", cum.last().copied().unwrap_or(0));
            }
        }
    }
}

/// The `le` label of bucket `i`: the bound in seconds, or `+Inf`.
fn le_label(i: usize) -> String {
    match BOUNDS_NS.get(i) {
        Some(&ns) => fmt_f64(ns as f64 / 1e9),
        None => "+Inf".to_string(),
    }
}

fn write_series(out: &mut String, name: &str, suffix: &str, labels: &Labels, le: Option<&str>) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(le.map(|l| ("le", l)))
    {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label_into(out, v);
        out.push('"');
    }
    out.push('}');
}

fn escape_label_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

// ---------------------------------------------------------------------------
// The `metrics` facade.

/// Records every leakscope metric of `snap` through the [`metrics`] facade,
/// into whatever recorder is installed (global, or thread-local with
/// `metrics::with_local_recorder`), with the default [`Limits`].
///
/// Counters go through `Counter::absolute` (idempotent, never decreasing),
/// gauges through `Gauge::set`. The two histograms become series a
/// Prometheus server reads as histograms (`<name>_bucket{le}` and
/// `<name>_count` counters, a `<name>_sum` gauge), because the facade cannot
/// take bucket counts; see the module docs. Gauge series that left the
/// export (a heap site out of the top, a holder gone) are set to 0 once.
///
/// Call it from a timer or scrape thread, never from an allocator hook.
/// Do not combine it with [`install`], which exports the same names itself.
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
    with_state(|st| {
        let fams = build(snap, limits, st);
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
                        for (i, c) in cum.iter().enumerate() {
                            let mut l = labels.clone();
                            l.push(metrics::Label::new("le", le_label(i)));
                            metrics::counter!(bucket, l).absolute(*c);
                        }
                        metrics::gauge!(sum, labels.clone()).set(h.sum_seconds);
                        metrics::counter!(count, labels).absolute(cum.last().copied().unwrap_or(0));
                    }
                }
            }
        }
        // Zero the gauge series that left the export.
        for (name, labels) in st.published_gauges.difference(&gauges) {
            metrics::gauge!(*name, to_metrics_labels(labels)).set(0.0);
        }
        st.published_gauges = gauges;
    });
}

fn hist_names(name: &str) -> (&'static str, &'static str, &'static str) {
    if name == LIFETIME {
        (
            "leakscope_object_lifetime_seconds_bucket",
            "leakscope_object_lifetime_seconds_sum",
            "leakscope_object_lifetime_seconds_count",
        )
    } else {
        (
            "leakscope_objects_live_age_seconds_bucket",
            "leakscope_objects_live_age_seconds_sum",
            "leakscope_objects_live_age_seconds_count",
        )
    }
}

fn describe(f: &Family) {
    match f.kind {
        Kind::Counter => metrics::describe_counter!(f.name, f.help),
        Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
        Kind::Histogram => {
            let (bucket, sum, count) = hist_names(f.name);
            metrics::describe_counter!(bucket, f.help);
            metrics::describe_gauge!(sum, f.help);
            metrics::describe_counter!(count, f.help);
        }
    }
}

fn to_metrics_labels(labels: &Labels) -> Vec<metrics::Label> {
    labels
        .iter()
        .map(|(k, v)| metrics::Label::new(*k, v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Frame, Holder, LabelCount};
    use std::time::Duration;

    fn site(file: &str, line: u32, live: u64) -> ObjectSite {
        let mut lifetimes = Histogram::empty();
        lifetimes.record_n(Duration::from_millis(3), 4);
        let mut live_ages = Histogram::empty();
        live_ages.record_n(Duration::from_secs(7200), live);
        ObjectSite {
            type_name: "app::Ctx".into(),
            file: file.into(),
            line,
            created: live + 4,
            dropped: 4,
            live,
            oldest_age: Some(Duration::from_secs(7200)),
            lifetimes,
            live_ages,
            ..Default::default()
        }
    }

    fn heap_site(func: &str, file: &str, line: u32, bytes: u64) -> HeapSite {
        HeapSite {
            frames: vec![Frame::new(func, Some(file.into()), Some(line))],
            live_bytes: bytes,
            ..Default::default()
        }
    }

    fn fresh() -> State {
        State::default()
    }

    fn text(snap: &Snapshot, limits: &Limits, st: &mut State) -> String {
        let mut out = String::new();
        for f in build(snap, limits, st) {
            write_family(&mut out, &f);
        }
        out
    }

    #[test]
    fn every_name_has_help_and_type() {
        let t = text(&Snapshot::default(), &Limits::default(), &mut fresh());
        for n in METRIC_NAMES {
            assert!(t.contains(&format!("# HELP {n} ")), "{n} help");
            assert!(t.contains(&format!("# TYPE {n} ")), "{n} type");
        }
    }

    #[test]
    fn histogram_is_exact_and_cumulative() {
        let mut snap = Snapshot::default();
        snap.objects.push(site("src/server.rs", 42, 3));
        let t = text(&snap, &Limits::default(), &mut fresh());
        let l = r#"type="app::Ctx",site="src/server.rs:42",name="""#;
        assert!(t.contains(&format!(
            "leakscope_object_lifetime_seconds_bucket{{{l},le=\"0.0025\"}} 0\n"
        )));
        assert!(t.contains(&format!(
            "leakscope_object_lifetime_seconds_bucket{{{l},le=\"0.005\"}} 4\n"
        )));
        assert!(t.contains(&format!(
            "leakscope_object_lifetime_seconds_bucket{{{l},le=\"+Inf\"}} 4\n"
        )));
        assert!(t.contains(&format!(
            "leakscope_object_lifetime_seconds_count{{{l}}} 4\n"
        )));
        assert!(t.contains(&format!(
            "leakscope_object_lifetime_seconds_sum{{{l}}} 0.012\n"
        )));
        assert!(t.contains(&format!(
            "leakscope_objects_live_age_seconds_bucket{{{l},le=\"3600\"}} 0\n"
        )));
        assert!(t.contains(&format!(
            "leakscope_objects_live_age_seconds_bucket{{{l},le=\"10800\"}} 3\n"
        )));
        assert!(t.contains(&format!(
            "leakscope_objects_oldest_age_seconds{{{l}}} 7200\n"
        )));
    }

    #[test]
    fn heap_sites_top_n_and_other() {
        let mut snap = Snapshot::default();
        for i in 0..5u32 {
            snap.heap.sites.push(heap_site(
                &format!("f{i}"),
                "src/a.rs",
                i,
                100 * (i as u64 + 1),
            ));
        }
        // same innermost frame as f4: merged
        snap.heap.sites.push(heap_site("f4", "src/a.rs", 4, 1));
        let mut st = fresh();
        let t = text(&snap, &Limits::default().top_heap_sites(2), &mut st);
        assert!(
            t.contains("leakscope_heap_site_live_bytes{function=\"f4\",site=\"src/a.rs:4\"} 501\n")
        );
        assert!(
            t.contains("leakscope_heap_site_live_bytes{function=\"f3\",site=\"src/a.rs:3\"} 400\n")
        );
        assert!(!t.contains("function=\"f2\""));
        assert!(
            t.contains("leakscope_heap_site_live_bytes{function=\"other\",site=\"other\"} 600\n")
        );
        // f3 falls out of the top: its series is gone, not stale.
        snap.heap.sites[3].live_bytes = 0;
        let t = text(&snap, &Limits::default().top_heap_sites(2), &mut st);
        assert!(!t.contains("function=\"f3\""), "{t}");
        assert!(t.contains("function=\"f2\""));
    }

    #[test]
    fn object_sites_are_sticky_and_other_is_monotonic() {
        let limits = Limits::default().max_object_sites(2);
        let mut st = fresh();
        let mut snap = Snapshot::default();
        snap.objects.push(site("src/a.rs", 1, 1));
        snap.objects.push(site("src/b.rs", 2, 1));
        let _ = text(&snap, &limits, &mut st);
        // a later site with many more live objects goes to `other`
        snap.objects.push(site("src/c.rs", 3, 100));
        let t = text(&snap, &limits, &mut st);
        assert!(t.contains("site=\"src/a.rs:1\""));
        assert!(t.contains("site=\"src/b.rs:2\""));
        assert!(!t.contains("site=\"src/c.rs:3\""));
        assert!(t.contains(
            "leakscope_objects_live{type=\"other\",site=\"other\",name=\"other\"} 100\n"
        ));
        assert!(t.contains(
            "leakscope_objects_created_total{type=\"other\",site=\"other\",name=\"other\"} 104\n"
        ));
    }

    #[test]
    fn counters_never_decrease() {
        let mut st = fresh();
        let mut snap = Snapshot::default();
        snap.heap.allocations = 100;
        let t = text(&snap, &Limits::default(), &mut st);
        assert!(t.contains("leakscope_heap_allocations_total 100\n"));
        snap.heap.allocations = 90;
        let t = text(&snap, &Limits::default(), &mut st);
        assert!(t.contains("leakscope_heap_allocations_total 100\n"));
        snap.heap.allocations = 120;
        let t = text(&snap, &Limits::default(), &mut st);
        assert!(t.contains("leakscope_heap_allocations_total 120\n"));
    }

    #[test]
    fn labels_and_holders_are_capped_and_escaped() {
        let mut o = site("src/a.rs", 1, 10);
        for i in 0..5u64 {
            o.labels.push(LabelCount {
                key: "caller".into(),
                value: format!("c\"{i}\n"),
                live: i + 1,
            });
            o.holders.push(Holder {
                file: "src/h.rs".into(),
                line: i as u32,
                live: 10 - i,
                oldest_age: None,
            });
        }
        o.labels.push(LabelCount {
            key: "caller".into(),
            value: "x".repeat(1000),
            live: 100,
        });
        let mut snap = Snapshot::default();
        snap.objects.push(o);
        let limits = Limits::default()
            .max_label_values(2)
            .max_holders(3)
            .max_label_len(16);
        let t = text(&snap, &limits, &mut fresh());
        let by_label: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("leakscope_objects_live_by_label{"))
            .collect();
        assert_eq!(by_label.len(), 3, "{by_label:?}");
        assert!(t.contains(&format!("value=\"{}...\"}} 100", "x".repeat(13))));
        assert!(t.contains("value=\"c\\\"4\\n\"} 5"));
        assert!(t.contains("label=\"caller\",value=\"other\"} 10\n"), "{t}");
        let holders: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("leakscope_object_holders_live{"))
            .collect();
        assert_eq!(holders.len(), 4);
        assert!(t.contains("holder=\"src/h.rs:0\"} 10\n"));
        assert!(t.contains("holder=\"other\"} 13\n"));
    }

    #[test]
    fn labels_are_capped_on_char_boundaries() {
        assert_eq!(cap_label("héllo wörld", 8), "héll...");
    }
}
