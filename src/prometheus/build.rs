//! Building the model from a [`Snapshot`]: every family in output order,
//! with the cardinality [`Limits`] applied through one selection,
//! [`top_n_plus_other`], and the state kept between exports (the sticky
//! object sites, the monotonic counter clamp) that `render` and `publish`
//! share.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use crate::histogram::Histogram;
use crate::snapshot::{HeapSite, HeapSnapshot, ObjectSite, Snapshot};

use super::model::*;
use super::Limits;

/// Identity of one exported object site: its three labels.
type ObjKey = (String, String, String);

/// What the exporter remembers between exports. Bounded: the sticky set holds
/// at most `max_object_sites` keys, the maps hold one entry per exported
/// series, and series counts are bounded by [`Limits`].
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Object sites that own series.
    sticky: HashSet<ObjKey>,
    /// Last value emitted per counter series (monotonic clamp).
    last_counters: HashMap<String, u64>,
    /// Gauge series [`publish`](super::publish) wrote last time (to zero the ones that left).
    pub(super) published_gauges: HashSet<(&'static str, Labels)>,
}

/// One exporter state for the whole process: `render` and `publish` agree on
/// which object sites own series.
static STATE: Mutex<Option<State>> = Mutex::new(None);

/// The exporter state's mutex, held by the forking thread across `fork()`
/// (`alloc/fork.rs`, whose lock order places it): a child forked
/// mid-render must be able to render.
static FORK: crate::alloc::ForkGuard<Option<State>> = crate::alloc::ForkGuard::new();

/// Locks the exporter state for a `fork()` (prepare handler).
pub(crate) fn fork_prepare() {
    FORK.hold(&STATE);
}

/// Unlocks it after the `fork()` (parent and child).
pub(crate) fn fork_release() {
    FORK.release();
}

pub(super) fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    // A panic while holding the lock leaves at worst a stale clamp map;
    // keep exporting rather than propagate the poison.
    let mut g = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    f(g.get_or_insert_with(State::default))
}

/// Top N plus `other`, the one selection behind every bounded family: walks
/// `ranked` in order and keeps, under their own key, the entries `keep`
/// admits (given their rank); the rest are folded, in order, into one
/// `other` value (`None` when nothing was left out).
pub(super) fn top_n_plus_other<K, V, A: Default>(
    ranked: impl IntoIterator<Item = (K, V)>,
    mut keep: impl FnMut(usize, &K) -> bool,
    mut fold: impl FnMut(&mut A, V),
) -> (Vec<(K, V)>, Option<A>) {
    let mut kept = Vec::new();
    let mut other = None::<A>;
    for (i, (k, v)) in ranked.into_iter().enumerate() {
        if keep(i, &k) {
            kept.push((k, v));
        } else {
            fold(other.get_or_insert_with(A::default), v);
        }
    }
    (kept, other)
}

/// Sums counts (the fold of the `u64` families).
fn sum(acc: &mut u64, n: u64) {
    *acc += n;
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
    /// Some object of the merged sites was ever retired.
    retired: bool,
    /// reason -> retained
    retained: BTreeMap<String, u64>,
    retained_oldest_s: f64,
    /// Idle times of polled live objects, when any is live.
    idle: Option<Histogram>,
    oldest_idle_s: f64,
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
        self.retired |= o.retired > 0;
        for r in &o.retained_reasons {
            let k = cap_label(&r.reason, limits.max_label_len);
            *self.retained.entry(k).or_default() += r.retained;
        }
        if let Some(a) = o.retained_oldest {
            self.retained_oldest_s = self.retained_oldest_s.max(a.as_secs_f64());
        }
        if o.polled_live > 0 {
            merge_hist(&mut self.idle, &o.idle);
        }
        if let Some(a) = o.oldest_idle {
            self.oldest_idle_s = self.oldest_idle_s.max(a.as_secs_f64());
        }
    }
}

fn merge_hist(into: &mut Option<Histogram>, h: &Histogram) {
    into.get_or_insert_with(Histogram::empty).merge(h);
}

/// Builds every family from `snap`, in output order, updating the sticky
/// object-site set and the counter clamp.
pub(super) fn build(snap: &Snapshot, limits: &Limits, st: &mut State) -> Vec<Family> {
    let h = &snap.heap;
    let mut out = heap_totals(h);
    out.push(heap_sites(h, limits));
    out.push(heap_site_growth(h, limits));
    let aggs = admit_object_sites(snap, limits, &mut st.sticky);
    let retained = retained_families(&aggs, limits);
    let tasks = task_families(&aggs);
    out.extend(object_families(aggs, limits));
    out.extend(retained);
    out.extend(tasks);
    out.extend(leakscope_health(h));
    out.push(memory_family(snap.memory.as_ref()));
    clamp_counters(&mut out, &mut st.last_counters);
    out
}

/// The exact allocator totals.
fn heap_totals(h: &HeapSnapshot) -> Vec<Family> {
    vec![
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
    ]
}

/// Heap sites: stacks sharing an innermost frame merged, the top N by live
/// bytes by name, the rest under `other`.
fn heap_sites(h: &HeapSnapshot, limits: &Limits) -> Family {
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
    let (kept, other) = top_n_plus_other(sites, |i, _| i < limits.top_heap_sites, sum);
    for ((func, site), bytes) in kept {
        fam.push(vec![("function", func), ("site", site)], Value::Int(bytes));
    }
    if let Some(b) = other {
        fam.push(
            vec![("function", OTHER.into()), ("site", OTHER.into())],
            Value::Int(b),
        );
    }
    fam
}

/// Heap sites' growth: stacks sharing an innermost frame merged (their
/// growth histories summed slot by slot), the fastest growing N by name,
/// the rest summed under `other`. Sites without a history long enough for
/// a rate (under one 10 s slot) are left out. Rates come from integer
/// histories aligned on the tables' latest slot, so the light and the full
/// snapshot give the same text.
fn heap_site_growth(h: &HeapSnapshot, limits: &Limits) -> Family {
    let mut by_site: HashMap<(String, String), crate::alloc::GrowthSeries> = HashMap::new();
    for s in &h.sites {
        let (func, site) = heap_site_labels(s);
        let k = (
            cap_label(&func, limits.max_label_len),
            cap_label(&site, limits.max_label_len),
        );
        match by_site.entry(k) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(&s.history),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(s.history);
            }
        }
    }
    let mut sites: Vec<((String, String), f64)> = by_site
        .into_iter()
        .filter_map(|(k, series)| match series.rate() {
            (r, Some(_)) => Some((k, r)),
            _ => None,
        })
        .collect();
    sites.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut fam = Family::new(
        SITE_GROWTH,
        Kind::Gauge,
        "Estimated live heap bytes gained per second per allocation site (innermost frame) over its growth history (up to the last 2m40s, 10 s slots), fastest growing sites only; the rest summed under site=\"other\".",
    );
    let (kept, other) = top_n_plus_other(
        sites,
        |i, _| i < limits.top_heap_sites,
        |acc: &mut f64, r| *acc += r,
    );
    for ((func, site), r) in kept {
        fam.push(vec![("function", func), ("site", site)], Value::Float(r));
    }
    if let Some(r) = other {
        fam.push(
            vec![("function", OTHER.into()), ("site", OTHER.into())],
            Value::Float(r),
        );
    }
    fam
}

/// Object sites: the sites already exported keep their series; new ones
/// are admitted, most suspicious first, while room is left; the rest are
/// merged under `other`.
fn admit_object_sites(
    snap: &Snapshot,
    limits: &Limits,
    sticky: &mut HashSet<ObjKey>,
) -> BTreeMap<ObjKey, ObjAgg> {
    let mut order: Vec<&ObjectSite> = snap.objects.iter().collect();
    order.sort_by(|a, b| {
        b.suspected
            .is_some()
            .cmp(&a.suspected.is_some())
            .then(b.oldest_age.cmp(&a.oldest_age))
            .then(b.live.cmp(&a.live))
    });
    let other_key: ObjKey = (OTHER.into(), OTHER.into(), OTHER.into());
    let ranked = order.into_iter().map(|o| (obj_key(o, limits), o));
    let admit = |_: usize, k: &ObjKey| {
        sticky.contains(k)
            || (sticky.len() < limits.max_object_sites
                && *k != other_key
                && sticky.insert(k.clone()))
    };
    let (kept, other) = top_n_plus_other(ranked, admit, |agg: &mut ObjAgg, o| agg.add(o, limits));
    let mut aggs: BTreeMap<ObjKey, ObjAgg> = BTreeMap::new();
    for (k, o) in kept {
        aggs.entry(k).or_default().add(o, limits);
    }
    if let Some(agg) = other {
        aggs.insert(other_key, agg);
    }
    aggs
}

/// The eight families of the tracked objects, one series per merged site.
fn object_families(aggs: BTreeMap<ObjKey, ObjAgg>, limits: &Limits) -> [Family; 8] {
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
        let base = vec![
            ("type", k.0.clone()),
            ("site", k.1.clone()),
            ("name", k.2.clone()),
        ];
        created.push(base.clone(), Value::Int(a.created));
        dropped.push(base.clone(), Value::Int(a.dropped));
        live.push(base.clone(), Value::Int(a.live));
        oldest.push(base.clone(), Value::Float(a.oldest_s));
        lifetimes.push(
            base.clone(),
            Value::Hist(Box::new(a.lifetimes.unwrap_or_else(Histogram::empty))),
        );
        live_ages.push(
            base,
            Value::Hist(Box::new(a.live_ages.unwrap_or_else(Histogram::empty))),
        );
        // Labels: top values per key by live count, the rest summed.
        let mut per_key: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
        for ((key, value), n) in &a.labels {
            per_key.entry(key).or_default().push((value, *n));
        }
        for (key, mut values) in per_key {
            values.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
            let keep = |i: usize, v: &&str| i < limits.max_label_values && *v != OTHER;
            let (kept, other) = top_n_plus_other(values, keep, sum);
            let label = |value: &str| {
                vec![
                    ("type", k.0.clone()),
                    ("site", k.1.clone()),
                    ("label", key.to_string()),
                    ("value", value.to_string()),
                ]
            };
            for (value, n) in kept {
                by_label.push(label(value), Value::Int(n));
            }
            if let Some(n) = other {
                by_label.push(label(OTHER), Value::Int(n));
            }
        }
        // Holders: the most live first, the rest summed.
        let mut hs: Vec<(&str, u64)> = a.holders.iter().map(|(h, n)| (h.as_str(), *n)).collect();
        hs.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
        let keep = |i: usize, h: &&str| i < limits.max_holders && *h != OTHER;
        let (kept, other) = top_n_plus_other(hs, keep, sum);
        let holder = |h: &str| {
            vec![
                ("type", k.0.clone()),
                ("site", k.1.clone()),
                ("holder", h.to_string()),
            ]
        };
        for (h, n) in kept {
            holders.push(holder(h), Value::Int(n));
        }
        if let Some(n) = other {
            holders.push(holder(OTHER), Value::Int(n));
        }
    }
    [
        created, dropped, live, oldest, lifetimes, live_ages, by_label, holders,
    ]
}

/// The retained objects (retired, still live after the grace period) of
/// the merged sites that ever retired one: per reason (the most retained
/// first, the rest under `reason="other"`), and how long ago the
/// longest-retained one was retired.
fn retained_families(aggs: &BTreeMap<ObjKey, ObjAgg>, limits: &Limits) -> [Family; 2] {
    let mut retained = Family::new(
        RETAINED,
        Kind::Gauge,
        "Tracked objects retired (\"this should be gone now\") more than the grace period ago and still live, per track! site and reason; reasons past the cap under reason=\"other\".",
    );
    let mut oldest = Family::new(
        RETAINED_OLDEST,
        Kind::Gauge,
        "Seconds since the longest-retained object of a track! site was retired (0 when none is retained).",
    );
    for (k, a) in aggs.iter().filter(|(_, a)| a.retired) {
        let mut rs: Vec<(&str, u64)> = a.retained.iter().map(|(r, n)| (r.as_str(), *n)).collect();
        rs.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
        let keep = |i: usize, r: &&str| i < limits.max_label_values && *r != OTHER;
        let (kept, other) = top_n_plus_other(rs, keep, sum);
        let series = |reason: &str| {
            vec![
                ("type", k.0.clone()),
                ("site", k.1.clone()),
                ("reason", reason.to_string()),
            ]
        };
        for (r, n) in kept {
            retained.push(series(r), Value::Int(n));
        }
        if let Some(n) = other {
            retained.push(series(OTHER), Value::Int(n));
        }
        let base = vec![
            ("type", k.0.clone()),
            ("site", k.1.clone()),
            ("name", k.2.clone()),
        ];
        oldest.push(base, Value::Float(a.retained_oldest_s));
    }
    [retained, oldest]
}

/// Tasks (tracked futures, streams, async I/O polled at least once): how
/// long the live ones have not been polled, per merged site with any.
fn task_families(aggs: &BTreeMap<ObjKey, ObjAgg>) -> [Family; 2] {
    let mut idle = Family::new(
        TASKS_IDLE,
        Kind::Histogram,
        "Seconds since the last poll of each live tracked future, stream or async I/O object per track! site (a histogram of a gauge: use without rate()).",
    );
    let mut oldest = Family::new(
        TASKS_OLDEST_IDLE,
        Kind::Gauge,
        "Longest time in seconds a live tracked future, stream or async I/O object of a track! site has not been polled.",
    );
    for (k, a) in aggs {
        let Some(h) = &a.idle else { continue };
        let base = vec![
            ("type", k.0.clone()),
            ("site", k.1.clone()),
            ("name", k.2.clone()),
        ];
        idle.push(base.clone(), Value::Hist(Box::new(h.clone())));
        oldest.push(base, Value::Float(a.oldest_idle_s));
    }
    [idle, oldest]
}

/// leakscope's own health: dropped samples, system unwinds, metadata, and
/// the symbolizer's memory against its budget.
fn leakscope_health(h: &HeapSnapshot) -> [Family; 6] {
    [
        Family::scalar(
        DROPPED_SAMPLES,
        Kind::Counter,
        "Heap samples leakscope could not record because a table was full or a stack could not be captured.",
        Value::Int(h.dropped_samples),
        ),
        Family::scalar(
        SYSTEM_UNWINDS,
        Kind::Counter,
        "Heap samples whose stack leakscope's caching unwinder could not walk, walked by the slower system unwinder instead.",
        Value::Int(h.system_unwinds),
        ),
        Family::scalar(
        METADATA,
        Kind::Gauge,
        "Bytes of leakscope's own metadata (sample tables, stacks, symbol cache).",
        Value::Int(h.metadata_bytes),
        ),
        Family::scalar(
            SYMBOLIZER_BYTES,
            Kind::Gauge,
            "Heap bytes leakscope's symbolizer holds (parsed debug info, address cache; part of the metadata), kept under its budget.",
            Value::Int(h.symbolizer_bytes),
        ),
        Family::scalar(
            SYMBOLIZER_BUDGET,
            Kind::Gauge,
            "The bound on leakscope_symbolizer_bytes.",
            Value::Int(h.symbolizer_budget_bytes),
        ),
        Family::scalar(
            SYMBOLIZER_EVICTIONS,
            Kind::Counter,
            "Parsed objects leakscope's symbolizer dropped to stay under its budget.",
            Value::Int(h.symbolizer_evictions),
        ),
    ]
}

/// The process's memory by part (`crate::memory`): one series per `kind`,
/// summing to RSS. No series when the snapshot has no memory reading or
/// RSS could not be read.
fn memory_family(m: Option<&crate::memory::Memory>) -> Family {
    let mut f = Family::new(
        MEMORY,
        Kind::Gauge,
        "The process's resident memory by part: heap (Rust heap, live), leakscope (its metadata), allocator (inner allocator overhead), thread_stacks (resident), unattributed (the rest: mapped files, C malloc, mmaps). The kinds sum to RSS.",
    );
    if let Some(m) = m.filter(|m| m.available) {
        for (kind, bytes) in m.parts() {
            f.push(vec![("kind", kind.to_string())], Value::Int(bytes));
        }
    }
    f
}

/// Counters never go down between exports: each is clamped to the last
/// value emitted for its series.
fn clamp_counters(out: &mut [Family], last_counters: &mut HashMap<String, u64>) {
    for f in out.iter_mut().filter(|f| f.kind == Kind::Counter) {
        for s in &mut f.samples {
            if let Value::Int(v) = &mut s.value {
                let id = series_id(f.name, &s.labels);
                let last = last_counters.entry(id).or_insert(0);
                *v = (*v).max(*last);
                *last = *v;
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::text::write_family;
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
    fn retained_reasons_are_top_n_plus_other() {
        use crate::snapshot::RetainedReason;
        let mut o = site("src/r.rs", 1, 50);
        o.retired = 50;
        o.retained = 50;
        o.retained_oldest = Some(Duration::from_secs(9));
        o.retained_reasons = (0..5u64)
            .map(|i| RetainedReason {
                reason: format!("reason {i}"),
                retained: 10,
                oldest: Some(Duration::from_secs(9 - i)),
            })
            .collect();
        let mut snap = Snapshot::default();
        snap.objects.push(o);
        let limits = Limits::default().max_label_values(2);
        let t = text(&snap, &limits, &mut fresh());
        let series: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("leakscope_objects_retained{"))
            .collect();
        assert_eq!(series.len(), 3, "{series:?}");
        assert!(series[2].contains("reason=\"other\"") && series[2].ends_with(" 30"));
        assert!(t.contains(
            "leakscope_objects_retained_oldest_seconds{type=\"app::Ctx\",site=\"src/r.rs:1\",name=\"\"} 9\n"
        ));
        // A site that never retired or polled anything adds no series.
        let plain = text(
            &Snapshot {
                objects: vec![site("src/p.rs", 2, 1)],
                ..Default::default()
            },
            &limits,
            &mut fresh(),
        );
        assert!(!plain.contains("leakscope_objects_retained{"));
        assert!(!plain.contains("leakscope_tasks_idle_seconds_bucket{"));
    }
}
