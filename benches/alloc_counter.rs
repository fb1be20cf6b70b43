//! Calibration: the workloads of `common/workloads.rs` under the simplest
//! possible tracking wrapper, one shared atomic counter of live bytes
//! (`fetch_add` on alloc, `fetch_sub` on free) around `System`. It shows
//! what "one atomic per call" costs on these workloads, next to
//! `TrackingAllocator`'s per-thread counters.
//! Run with `scripts/bench-alloc.sh`, which prints the ratios.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "common/workloads.rs"]
mod workloads;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn benches(c: &mut Criterion) {
    workloads::register(c, "atomic_counter");
}

criterion_group! { name = g; config = workloads::config(); targets = benches }
criterion_main!(g);
