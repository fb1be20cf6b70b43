//! The text exposition of a real snapshot: stable names, HELP/TYPE for every
//! family, well-formed histograms (cumulative `le`, `+Inf` == `_count`),
//! bounded series, and counters that never go down.

#![cfg(feature = "prometheus")]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use leakscope::histogram::{Histogram, BOUNDS_NS, BUCKETS};
use leakscope::prometheus::{self, Limits, METRIC_NAMES};
use leakscope::{ObjectSite, Snapshot};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// A minimal parser of the text format, strict enough to catch what
/// `promtool check metrics` catches: every sample belongs to a family with
/// HELP and TYPE declared before it, once.
#[derive(Default, Debug)]
struct Parsed {
    types: HashMap<String, String>,
    helps: HashMap<String, String>,
    /// (series name with labels) -> value
    samples: BTreeMap<String, f64>,
}

fn parse(text: &str) -> Parsed {
    let mut p = Parsed::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("help text");
            assert!(!help.is_empty());
            assert!(
                p.helps.insert(name.into(), help.into()).is_none(),
                "HELP twice: {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("type");
            assert!(["counter", "gauge", "histogram"].contains(&ty));
            assert!(p.helps.contains_key(name), "TYPE before HELP: {name}");
            assert!(
                p.types.insert(name.into(), ty.into()).is_none(),
                "TYPE twice: {name}"
            );
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample");
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| p.types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(p.types.contains_key(family), "sample before TYPE: {line}");
            let v: f64 = if value == "+Inf" {
                f64::INFINITY
            } else {
                value.parse().expect(line)
            };
            assert!(
                p.samples.insert(series.into(), v).is_none(),
                "duplicate series {series}"
            );
        }
    }
    p
}

fn site(file: &str, line: u32, live: u64, dropped_ms: &[u64]) -> ObjectSite {
    let mut o = ObjectSite::default();
    o.type_name = "app::RequestCtx".into();
    o.name = Some("request".into());
    o.file = file.into();
    o.line = line;
    o.live = live;
    o.dropped = dropped_ms.len() as u64;
    o.created = live + o.dropped;
    o.oldest_age = Some(Duration::from_secs(17 * 3600));
    o.lifetimes = Histogram::empty();
    for &ms in dropped_ms {
        o.lifetimes.record(Duration::from_millis(ms));
    }
    o.live_ages = Histogram::empty();
    o.live_ages.record_n(Duration::from_secs(17 * 3600), live);
    o
}

#[test]
fn real_snapshot_renders_every_family() {
    let keep = vec![1u8; 1 << 20];
    let text = prometheus::render(&leakscope::snapshot());
    let p = parse(&text);
    for n in METRIC_NAMES {
        assert!(p.helps.contains_key(n), "no HELP for {n}");
    }
    assert_eq!(p.types["leakscope_heap_allocations_total"], "counter");
    assert_eq!(p.types["leakscope_heap_live_bytes"], "gauge");
    assert_eq!(p.types["leakscope_object_lifetime_seconds"], "histogram");
    assert_eq!(p.types["leakscope_objects_live_age_seconds"], "histogram");
    assert!(p.samples["leakscope_heap_allocations_total"] > 0.0);
    assert!(p.samples["leakscope_heap_live_bytes"] >= (1 << 20) as f64);
    drop(keep);
}

#[test]
fn histograms_are_well_formed() {
    let mut snap = Snapshot::default();
    snap.objects
        .push(site("src/server.rs", 42, 3, &[1, 2, 30, 400, 5000]));
    let text = prometheus::render(&snap);
    let p = parse(&text);
    let labels = r#"type="app::RequestCtx",site="src/server.rs:42",name="request""#;
    for fam in [
        "leakscope_object_lifetime_seconds",
        "leakscope_objects_live_age_seconds",
    ] {
        let mut last = 0.0;
        let mut les = Vec::new();
        let bounds = BOUNDS_NS.iter().map(|&ns| format!("{}", ns as f64 / 1e9));
        for le in bounds.chain(["+Inf".to_string()]) {
            let v = p.samples[&format!("{fam}_bucket{{{labels},le=\"{le}\"}}")];
            assert!(v >= last, "{fam} not cumulative at le={le}");
            last = v;
            les.push(le);
        }
        assert_eq!(les.len(), BUCKETS);
        let count = p.samples[&format!("{fam}_count{{{labels}}}")];
        assert_eq!(last, count, "{fam}: +Inf bucket != _count");
        assert!(p.samples.contains_key(&format!("{fam}_sum{{{labels}}}")));
    }
    assert_eq!(
        p.samples[&format!("leakscope_object_lifetime_seconds_count{{{labels}}}")],
        5.0
    );
    let sum = p.samples[&format!("leakscope_object_lifetime_seconds_sum{{{labels}}}")];
    assert!((sum - 5.433).abs() < 1e-9, "{sum}");
    // p50 of the lifetimes is in the 25 ms..50 ms bucket (30 ms).
    let le_25ms =
        p.samples[&format!("leakscope_object_lifetime_seconds_bucket{{{labels},le=\"0.025\"}}")];
    let le_50ms =
        p.samples[&format!("leakscope_object_lifetime_seconds_bucket{{{labels},le=\"0.05\"}}")];
    assert_eq!((le_25ms, le_50ms), (2.0, 3.0));
    assert_eq!(
        p.samples[&format!("leakscope_objects_oldest_age_seconds{{{labels}}}")],
        61200.0
    );
}

#[test]
fn series_stay_bounded_with_thousands_of_sites() {
    let mut snap = Snapshot::default();
    for i in 0..2000 {
        let mut o = site(&format!("src/gen{i}.rs"), i, 1, &[5]);
        for v in 0..50 {
            let mut l = leakscope::LabelCount::default();
            l.key = "caller".into();
            l.value = format!("caller-{v}");
            l.live = 1;
            o.labels.push(l);
        }
        snap.objects.push(o);
    }
    for i in 0..2000u32 {
        let mut s = leakscope::HeapSite::default();
        s.frames = vec![leakscope::Frame::new(
            format!("f{i}"),
            Some("src/h.rs".into()),
            Some(i),
        )];
        s.live_bytes = u64::from(i) * 10;
        snap.heap.sites.push(s);
    }
    let limits = Limits::default();
    let p = parse(&prometheus::render_with(&snap, &limits));
    let count = |prefix: &str| p.samples.keys().filter(|k| k.starts_with(prefix)).count();
    assert_eq!(
        count("leakscope_heap_site_live_bytes{"),
        limits.top_heap_sites + 1
    );
    // Object sites keep their series for the process's life (other tests
    // of this process may have taken some of the slots): at most the cap,
    // plus `other`.
    let sites = count("leakscope_objects_live{");
    assert!(sites <= limits.max_object_sites + 1, "{sites} object sites");
    assert!(p
        .samples
        .contains_key(r#"leakscope_objects_live{type="other",site="other",name="other"}"#));
    assert_eq!(
        count("leakscope_objects_live_by_label{"),
        sites * (limits.max_label_values + 1)
    );
    // Nothing is lost: the sums match.
    let live: f64 = p
        .samples
        .iter()
        .filter(|(k, _)| k.starts_with("leakscope_objects_live{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(live, 2000.0);
    let heap: f64 = p
        .samples
        .iter()
        .filter(|(k, _)| k.starts_with("leakscope_heap_site_live_bytes{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(heap, (0..2000u64).map(|i| i * 10).sum::<u64>() as f64);
    assert!(p.samples.len() < 10_000, "{} series", p.samples.len());
}

#[test]
fn counters_are_monotonic_across_renders() {
    let mut last: HashMap<String, f64> = HashMap::new();
    for _ in 0..5 {
        let v: Vec<Vec<u8>> = (0..100).map(|i| vec![0u8; i * 10]).collect();
        drop(v);
        let p = parse(&prometheus::render(&leakscope::snapshot()));
        for (k, v) in &p.samples {
            if k.starts_with("leakscope_heap_") && k.contains("_total") {
                if let Some(prev) = last.get(k) {
                    assert!(v >= prev, "{k} went down: {prev} -> {v}");
                }
                last.insert(k.clone(), *v);
            }
        }
    }
    assert!(last["leakscope_heap_allocations_total"] >= 500.0);
}
