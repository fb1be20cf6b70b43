//! What one Prometheus export costs, off the allocation path: rendering the
//! text format, publishing through the `metrics` facade into
//! metrics-exporter-prometheus, and a whole `/metrics` request through the
//! debug server's handler. Input: a synthetic snapshot with 500 heap sites
//! (8 frames each) and 50 object sites (5 label values, 3 holders each),
//! so the default limits (top 50 heap sites, 50 object sites) are reached.
//!
//! `cargo bench --bench export_prometheus -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use leakscope::histogram::Histogram;
use leakscope::{Frame, HeapSite, Holder, LabelCount, ObjectSite, Snapshot};

fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.heap.allocations = 1_000_000;
    s.heap.frees = 990_000;
    for i in 0..500u32 {
        let mut h = HeapSite::default();
        h.frames = (0..8)
            .map(|d| {
                Frame::new(
                    format!("app::module{d}::function_{i}"),
                    Some(format!("src/module{d}.rs")),
                    Some(i + d),
                )
            })
            .collect();
        h.live_bytes = u64::from(i) * 1024;
        s.heap.sites.push(h);
    }
    for i in 0..50u32 {
        let mut o = ObjectSite::default();
        o.type_name = format!("app::Type{i}");
        o.file = "src/server.rs".into();
        o.line = i;
        o.created = 10_000;
        o.dropped = 9_990;
        o.live = 10;
        o.oldest_age = Some(Duration::from_secs(3600));
        o.lifetimes = Histogram::empty();
        o.lifetimes.record_n(Duration::from_millis(20), 9_990);
        o.live_ages = Histogram::empty();
        o.live_ages.record_n(Duration::from_secs(60), 10);
        for v in 0..5 {
            let mut l = LabelCount::default();
            l.key = "caller".into();
            l.value = format!("caller{v}");
            l.live = 2;
            o.labels.push(l);
        }
        for h in 0..3 {
            let mut hd = Holder::default();
            hd.file = "src/timer.rs".into();
            hd.line = h;
            hd.live = 3;
            o.holders.push(hd);
        }
        s.objects.push(o);
    }
    s
}

fn bench(c: &mut Criterion) {
    let snap = snapshot();
    let text = leakscope::prometheus::render(&snap);
    eprintln!(
        "render output: {} bytes, {} series",
        text.len(),
        text.lines().filter(|l| !l.starts_with('#')).count()
    );
    c.bench_function("prometheus::render (500 heap, 50 object sites)", |b| {
        b.iter(|| black_box(leakscope::prometheus::render(black_box(&snap))))
    });

    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("first recorder");
    c.bench_function(
        "prometheus::publish into metrics-exporter-prometheus",
        |b| b.iter(|| leakscope::prometheus::publish(black_box(&snap))),
    );
    c.bench_function("metrics-exporter-prometheus render after publish", |b| {
        b.iter(|| black_box(handle.render()))
    });
    c.bench_function(
        "server::route(\"/metrics\") (live snapshot + render)",
        |b| b.iter(|| black_box(leakscope::server::route("/metrics", ""))),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
