//! What a scrape costs on a service-sized state: `/metrics` and
//! `/debug/pprof/heap` through the debug server's handler
//! ([`leakscope::server::route`]), with ~3000 distinct sampled stacks and
//! ~100k live samples in the tables (sample rate 1, real allocations made
//! by this process through the tracking allocator).
//!
//! Every stack is symbolized once before measuring (the steady state of a
//! service scraped every second: the first scrape of a new stack pays its
//! symbolization, later ones do not): the first `/debug/pprof/heap` is
//! timed apart, the measured ones read the per-stack frame cache.
//!
//! `cargo bench --bench scrape -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use leakscope::TrackingAllocator;

#[path = "common/many_stacks.rs"]
mod many_stacks;

#[global_allocator]
static GLOBAL: TrackingAllocator = TrackingAllocator::system();

fn bench(c: &mut Criterion) {
    let live = many_stacks::build();
    let st = leakscope::heap_stats();
    let t = Instant::now();
    let first = leakscope::server::route("/metrics", "");
    eprintln!(
        "state: {} live samples, {} samples, {} dropped; first /metrics {:?} ({} bytes)",
        st.live_samples,
        st.samples,
        st.dropped_samples,
        t.elapsed(),
        first.body.len()
    );
    let t = Instant::now();
    let heap = leakscope::server::route("/debug/pprof/heap", "");
    eprintln!(
        "first /debug/pprof/heap {:?} ({} bytes)",
        t.elapsed(),
        heap.body.len()
    );
    c.bench_function("route /metrics (3000 stacks, 100k live samples)", |b| {
        b.iter(|| black_box(leakscope::server::route("/metrics", "")))
    });
    c.bench_function(
        "route /debug/pprof/heap (3000 stacks, 100k live samples)",
        |b| b.iter(|| black_box(leakscope::server::route("/debug/pprof/heap", ""))),
    );
    eprintln!("after: {:?}", leakscope::heap_stats());
    let (stacks, bytes) = leakscope::testing::stack_cache();
    eprintln!("per-stack frame cache: {stacks} stacks, {bytes} bytes");
    drop(live);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
