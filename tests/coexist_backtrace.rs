//! Coexistence with backtraces taken by the application:
//! `std::backtrace::Backtrace::force_capture()` formatted (which
//! symbolizes with std's own copy of the `backtrace` code) and
//! `backtrace::Backtrace::new()` (which resolves through the `backtrace`
//! crate's process-wide cache, the same crate leakscope uses) on
//! application threads, while they allocate at sample rate 1 and another
//! thread snapshots in a loop. Everything finishes, the totals reconcile
//! and a snapshot after the storm works.
//!
//! `harness = false`: one process whose live bytes only this test moves.

#[path = "coexist_support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Duration;

use support::{churn, on_threads, reconcile, watchdog, Snapshotter};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

const NAME: &str = "coexist_backtrace";

#[inline(never)]
fn traces(t: usize, r: u64) {
    churn(r);
    if (t + r as usize).is_multiple_of(2) {
        let bt = std::backtrace::Backtrace::force_capture();
        let text = format!("{bt}");
        assert!(text.contains("traces"), "{text}");
    } else {
        let bt = backtrace::Backtrace::new();
        let text = format!("{bt:?}");
        assert!(!bt.frames().is_empty(), "{text}");
        black_box(text);
    }
}

fn main() {
    watchdog(NAME, 180);
    leakscope::set_sample_rate(1);
    // Warm up: each symbolizer's process-wide state (parsed debug info).
    on_threads(1, 4, Duration::from_secs(60), traces);
    drop(leakscope::snapshot());
    let base = leakscope::heap_stats();

    let snaps = Snapshotter::start();
    let rounds = on_threads(2, 300, Duration::from_secs(20), traces);
    let snapshots = snaps.stop();
    eprintln!("{NAME}: {rounds} rounds of backtraces on 2 threads, {snapshots} snapshots");
    assert!(snapshots > 0);
    // The symbolizers' caches keep what they parsed for the process.
    reconcile(NAME, &base, 4 << 20);
    eprintln!("{NAME}: ok");
}
