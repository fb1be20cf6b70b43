//! What a full snapshot costs (`leakscope::snapshot()`: the copy of the
//! tables, the walk of the live samples, symbolization from the per-stack
//! cache, and since issue 14 the merge of identical symbolized stacks and
//! the growth rule), with ~3000 distinct sampled stacks and ~100k live
//! samples (sample rate 1, real allocations through the tracking
//! allocator). The first snapshot (which symbolizes every stack) is timed
//! apart. Then the sampled path's cost per sampled allocation and free.
//!
//! `cargo bench --bench heap_snapshot -- --warm-up-time 1 --measurement-time 5`

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
    let first = leakscope::snapshot();
    eprintln!(
        "state: {} live samples, {} samples, {} dropped; first snapshot {:?} ({} sites)",
        st.live_samples,
        st.samples,
        st.dropped_samples,
        t.elapsed(),
        first.heap.sites.len()
    );
    drop(first);
    c.bench_function("snapshot (3000 stacks, 100k live samples)", |b| {
        b.iter(|| black_box(leakscope::snapshot()))
    });
    // The sampled path itself (rate 1: every allocation and free is
    // sampled, with ~100k live samples in the table): stack capture,
    // interning, the live table, and since issue 14 the growth history
    // (one clock read and a ring update per change).
    leakscope::set_sample_rate(1);
    c.bench_function("sampled alloc+free (rate 1)", |b| {
        b.iter(sampled_alloc_free)
    });
    leakscope::set_sample_rate(0);
    drop(live);
}

#[inline(never)]
fn sampled_alloc_free() {
    drop(black_box(Box::new([0u8; 64])));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
