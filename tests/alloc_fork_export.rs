//! A child forked while the parent's threads snapshot and export (the
//! per-site history, the Prometheus exporter's state, the pprof build-id
//! cache, the marks table, the symbol cache, the sample tables) must be able to snapshot
//! and render on its own: none of those locks may stay held in it (a child
//! that keeps serving `/metrics` after a fork taken mid-snapshot would
//! hang). Each child snapshots, renders Prometheus text and a pprof heap
//! profile, and must exit within 10 s.
//!
//! `harness = false`: forks from the main thread, no test-runner state.

mod fork_util;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

struct Conn(#[allow(dead_code)] u64);

fn export() {
    // The marks table is one of the locks a fork must not leave held.
    leakscope::mark("fork-export").expect("a valid mark name");
    black_box(leakscope::marks::marks());
    let snap = leakscope::snapshot();
    black_box(leakscope::prometheus::render(&snap));
    black_box(leakscope::pprof::heap_profile());
}

fn child() -> i32 {
    let before = leakscope::heap_stats().samples;
    for i in 0..50 {
        black_box(vec![i as u8; 64]);
    }
    if leakscope::heap_stats().samples == before {
        return 3;
    }
    export();
    0
}

fn main() {
    leakscope::set_sample_rate(1);
    let stop = Arc::new(AtomicBool::new(false));
    // Tracked objects give the snapshots object sites (and their history).
    let kept: Vec<_> = (0..200)
        .map(|i| {
            if i % 2 == 0 {
                leakscope::track!(Conn(i))
            } else {
                leakscope::track!(Conn(i + 1))
            }
        })
        .collect();
    let mut threads: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    export();
                }
            })
        })
        .collect();
    threads.push({
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                black_box(leakscope::track!(Conn(7)));
                black_box(vec![0u8; 32]);
            }
        })
    });
    let mut failures = Vec::new();
    for round in 0..100 {
        let pid = fork_util::spawn(child);
        match fork_util::wait(pid, Duration::from_secs(10)) {
            Ok(0) => {}
            Ok(c) => failures.push(format!("round {round}: exit {c}")),
            Err(e) => failures.push(format!("round {round}: child {e}")),
        }
        if failures.len() >= 3 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    drop(kept);
    assert!(failures.is_empty(), "{failures:#?}");
    println!("test child_exports_after_fork_under_export_load ... ok");
    println!("test result: ok. 1 passed; 0 failed");
}
