//! The workloads of `common/workloads.rs` under `TrackingAllocator`, at the
//! default rate (512 KiB), with sampling off (rate 0), and at rate 1 (every
//! allocation sampled: the sampled path's own cost).
//! Run with `scripts/bench-alloc.sh`, which prints the ratios.

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "common/workloads.rs"]
mod workloads;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

fn benches(c: &mut Criterion) {
    leakscope::set_sample_rate(leakscope::alloc::DEFAULT_SAMPLE_RATE);
    workloads::register(c, "tracking");

    leakscope::set_sample_rate(0);
    let mut g = c.benchmark_group("churn_1t");
    g.bench_function("tracking_rate0", |b| {
        let mut ring: [Option<Vec<u8>>; 64] = std::array::from_fn(|_| None);
        let mut k = 0;
        b.iter(|| {
            k += 1;
            workloads::churn(&mut ring, workloads::CHURN_OPS, k)
        })
    });
    // Rate 1: every allocation takes the sampled path (stack capture,
    // interning, live table); the difference to rate 0 is the cost of a sample.
    leakscope::set_sample_rate(1);
    g.bench_function("tracking_rate1", |b| {
        let mut ring: [Option<Vec<u8>>; 64] = std::array::from_fn(|_| None);
        let mut k = 0;
        b.iter(|| {
            k += 1;
            workloads::churn(&mut ring, workloads::CHURN_OPS, k)
        })
    });
    g.finish();

    // The request mix with sampling off: the fast path's cost alone.
    leakscope::set_sample_rate(0);
    let mut g = c.benchmark_group("request_mix");
    g.bench_function("tracking_rate0", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            workloads::request(i)
        })
    });
    g.finish();
    leakscope::set_sample_rate(leakscope::alloc::DEFAULT_SAMPLE_RATE);
}

criterion_group! { name = g; config = workloads::config(); targets = benches }
criterion_main!(g);
