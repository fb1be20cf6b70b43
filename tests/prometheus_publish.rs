//! `publish` through the `metrics` facade into an application's own
//! recorder (here metrics-exporter-prometheus, installed globally by the
//! "application"), and `install` refusing politely when a recorder exists.

#![cfg(feature = "prometheus")]

use std::time::Duration;

use leakscope::histogram::Histogram;
use leakscope::prometheus;
use leakscope::{Frame, HeapSite, Holder, ObjectSite, Snapshot};
use metrics_exporter_prometheus::PrometheusBuilder;

fn snapshot(allocs: u64, heap_sites: &[(&str, u32, u64)], holders: &[(u32, u64)]) -> Snapshot {
    let mut s = Snapshot::default();
    s.heap.allocations = allocs;
    s.heap.frees = allocs / 2;
    s.heap.live_bytes = 4096;
    s.heap.dropped_samples = 3;
    s.heap.system_unwinds = 5;
    for &(f, line, bytes) in heap_sites {
        let mut h = HeapSite::default();
        h.frames = vec![Frame::new(f, Some("src/cache.rs".into()), Some(line))];
        h.live_bytes = bytes;
        s.heap.sites.push(h);
    }
    let mut o = ObjectSite::default();
    o.type_name = "app::Ctx".into();
    o.file = "src/server.rs".into();
    o.line = 42;
    o.created = allocs;
    o.dropped = allocs - 2;
    o.live = 2;
    o.oldest_age = Some(Duration::from_secs(90));
    o.lifetimes = Histogram::empty();
    o.lifetimes.record_n(Duration::from_millis(20), allocs - 2);
    o.live_ages = Histogram::empty();
    o.live_ages.record_n(Duration::from_secs(90), 2);
    for &(line, live) in holders {
        let mut h = Holder::default();
        h.file = "src/timer.rs".into();
        h.line = line;
        h.live = live;
        o.holders.push(h);
    }
    s.objects.push(o);
    s
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn publish_lands_in_the_applications_recorder() {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .expect("the application installs its recorder");
    metrics::counter!("app_requests_total").increment(7);

    prometheus::publish(&snapshot(100, &[("cache::fill", 10, 5000)], &[(7, 2)]));
    let t = handle.render();
    assert_eq!(value(&t, "app_requests_total"), Some(7.0), "{t}");
    assert_eq!(
        value(&t, "leakscope_heap_allocations_total"),
        Some(100.0),
        "{t}"
    );
    assert_eq!(value(&t, "leakscope_heap_frees_total"), Some(50.0));
    assert_eq!(value(&t, "leakscope_heap_live_bytes"), Some(4096.0));
    assert_eq!(value(&t, "leakscope_dropped_samples_total"), Some(3.0));
    assert_eq!(value(&t, "leakscope_system_unwinds_total"), Some(5.0));
    assert!(
        t.contains("# HELP leakscope_heap_allocations_total "),
        "{t}"
    );
    let site = r#"leakscope_heap_site_live_bytes{function="cache::fill",site="src/cache.rs:10"}"#;
    assert_eq!(value(&t, site), Some(5000.0), "{t}");
    let ctx = r#"type="app::Ctx",site="src/server.rs:42",name="""#;
    assert_eq!(
        value(&t, &format!("leakscope_objects_live{{{ctx}}}")),
        Some(2.0)
    );
    assert_eq!(
        value(
            &t,
            &format!("leakscope_objects_oldest_age_seconds{{{ctx}}}")
        ),
        Some(90.0)
    );
    // Histograms as bucket series: exact counts, cumulative.
    assert_eq!(
        value(
            &t,
            &format!("leakscope_object_lifetime_seconds_bucket{{{ctx},le=\"0.025\"}}")
        ),
        Some(98.0),
        "{t}"
    );
    assert_eq!(
        value(
            &t,
            &format!("leakscope_object_lifetime_seconds_bucket{{{ctx},le=\"0.01\"}}")
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &t,
            &format!("leakscope_object_lifetime_seconds_count{{{ctx}}}")
        ),
        Some(98.0)
    );
    let holder = r#"leakscope_object_holders_live{type="app::Ctx",site="src/server.rs:42",holder="src/timer.rs:7"}"#;
    assert_eq!(value(&t, holder), Some(2.0));

    // Next publish: counters go up, the old heap site left the top and the
    // holder is gone: their gauges read 0, not their stale values.
    prometheus::publish(&snapshot(200, &[("cache::other", 11, 10)], &[]));
    let t = handle.render();
    assert_eq!(value(&t, "leakscope_heap_allocations_total"), Some(200.0));
    assert_eq!(value(&t, site), Some(0.0), "{t}");
    assert_eq!(value(&t, holder), Some(0.0), "{t}");
    assert_eq!(
        value(
            &t,
            &format!("leakscope_object_lifetime_seconds_count{{{ctx}}}")
        ),
        Some(198.0)
    );

    // The live-age distribution is of what is live now: when the live
    // objects go, its buckets and count go down with them (lifetimes, a
    // count since start, do not).
    let age_count = format!("leakscope_objects_live_age_seconds_count{{{ctx}}}");
    let age_bucket = format!("leakscope_objects_live_age_seconds_bucket{{{ctx},le=\"+Inf\"}}");
    assert_eq!(value(&t, &age_count), Some(2.0), "{t}");
    assert_eq!(value(&t, &age_bucket), Some(2.0), "{t}");
    let mut gone = snapshot(200, &[], &[]);
    gone.objects[0].live = 0;
    gone.objects[0].live_ages = Histogram::empty();
    prometheus::publish(&gone);
    let t = handle.render();
    assert_eq!(value(&t, &age_count), Some(0.0), "{t}");
    assert_eq!(value(&t, &age_bucket), Some(0.0), "{t}");
    assert_eq!(
        value(
            &t,
            &format!("leakscope_object_lifetime_seconds_count{{{ctx}}}")
        ),
        Some(198.0)
    );

    // A lower total (a racing per-thread sum) does not move a counter back.
    prometheus::publish(&snapshot(150, &[], &[]));
    let t = handle.render();
    assert_eq!(value(&t, "leakscope_heap_allocations_total"), Some(200.0));

    // install() with a recorder present: an error, not a panic, and nothing
    // left listening.
    #[cfg(feature = "http")]
    {
        let e = prometheus::install("127.0.0.1:0").unwrap_err();
        assert!(e.is_recorder_installed(), "{e}");
        assert_eq!(
            e.to_string(),
            "a global metrics recorder is already installed"
        );
    }
}
