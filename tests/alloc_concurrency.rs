//! Many threads allocating and freeing at once while another thread takes
//! snapshots in a loop: no deadlock, and afterwards the live totals are back
//! where they started (every worker freed all it allocated).
//!
//! The file is its own process with this one test, so the only other thread
//! is libtest's main thread, which waits for the test's result without
//! allocating: the exact live totals must come back to their starting values
//! to within [`SLACK_BYTES`] / [`SLACK_ALLOCATIONS`].

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// What may legitimately stay live across the test body: nothing the test
/// itself allocates after `before` (the `stop` flag and every handle are
/// created before or freed by the end), so only one-time initialisations
/// that the warm-up did not trigger. A leaked worker buffer (16 to 4 KiB
/// each, 64 kept per worker) or a miscounted free shows as far more.
const SLACK_BYTES: u64 = 1024;
/// As [`SLACK_BYTES`], in allocations.
const SLACK_ALLOCATIONS: u64 = 16;

#[inline(never)]
fn churn(seed: usize, rounds: usize) {
    let mut keep: Vec<Vec<u8>> = Vec::new();
    for i in 0..rounds {
        let n = 16 + (seed * 31 + i * 17) % 4000;
        keep.push(black_box(vec![0u8; n]));
        if keep.len() > 64 {
            keep.swap_remove((i * 7) % keep.len());
        }
        if i % 1000 == 0 {
            let mut s = String::new();
            for k in 0..50 {
                s.push_str(&k.to_string());
            }
            keep.push(s.into_bytes());
        }
    }
}

#[test]
fn allocating_threads_and_snapshot_loop() {
    // A small rate makes the sampled path (stack capture, table lock) hot.
    leakscope::set_sample_rate(4096);
    let stop = Arc::new(AtomicBool::new(false));
    // Warm-up: a snapshot, a spawned thread and the workers' code once, so
    // that one-time lazy initialisations are not counted as a difference.
    black_box(leakscope::snapshot().to_string());
    std::thread::spawn(|| churn(99, 2_000))
        .join()
        .expect("warm-up thread");
    let before = leakscope::heap_stats();
    let snapper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let s = leakscope::snapshot();
                assert!(s.heap.live_bytes <= s.heap.allocated_bytes);
                black_box(s.to_string());
                n += 1;
            }
            n
        })
    };
    let workers: Vec<_> = (0..6)
        .map(|t| std::thread::spawn(move || churn(t, 40_000)))
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    stop.store(true, Ordering::Relaxed);
    let snapshots = snapper.join().expect("snapshot thread");
    assert!(snapshots > 0);

    let after = leakscope::heap_stats();
    assert!(after.allocations - before.allocations >= 6 * 40_000);
    assert!(after.samples > before.samples, "sampled path exercised");
    // Every worker freed all it allocated, so no live sample is left at the
    // workers' sites, and the live totals are back near where they were.
    let snap = leakscope::snapshot();
    let live_in_churn: u64 = snap
        .heap
        .sites
        .iter()
        .filter(|s| s.frames.iter().any(|f| f.function.contains("churn")))
        .map(|s| s.live_objects)
        .sum();
    assert_eq!(live_in_churn, 0, "{snap}");
    let (bytes, allocations) = (
        after.live_bytes.abs_diff(before.live_bytes),
        after.live_allocations.abs_diff(before.live_allocations),
    );
    assert!(
        bytes <= SLACK_BYTES && allocations <= SLACK_ALLOCATIONS,
        "live totals moved by {bytes} bytes, {allocations} allocations: \
         before {before:?}, after {after:?}"
    );
    leakscope::set_sample_rate(leakscope::alloc::DEFAULT_SAMPLE_RATE);
}
