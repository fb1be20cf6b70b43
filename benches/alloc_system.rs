//! Baseline: the workloads of `common/workloads.rs` under `System`.
//! Run with `scripts/bench-alloc.sh`, which prints the ratios.

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "common/workloads.rs"]
mod workloads;

#[global_allocator]
static ALLOC: std::alloc::System = std::alloc::System;

fn benches(c: &mut Criterion) {
    workloads::register(c, "system");
}

criterion_group! { name = g; config = workloads::config(); targets = benches }
criterion_main!(g);
