//! Exact totals: a known allocation pattern on several threads, checked to
//! the byte, at the default sampling rate and at rate 1.

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::sync::{Arc, Barrier};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

const THREADS: usize = 4;
const PER_THREAD: usize = 500;

/// Expected deltas of the pattern below, for one thread `t`.
fn expected(t: usize) -> (u64, u64, u64, u64, u64) {
    let (mut allocs, mut frees, mut reallocs, mut ab, mut fb) = (0, 0, 0, 0, 0);
    for i in 0..PER_THREAD {
        let size = 16 + t * 8 + i;
        allocs += 1;
        ab += size as u64;
        if i % 3 == 0 {
            reallocs += 1;
            ab += (size * 2) as u64;
            fb += size as u64;
            frees += 1;
            fb += (size * 2) as u64;
        } else if i % 3 == 1 {
            frees += 1;
            fb += size as u64;
        }
    }
    (allocs, frees, reallocs, ab, fb)
}

/// Allocates the pattern with raw `std::alloc` calls so every call is known.
/// Pushes the blocks it keeps live into `keep` (which has room for all, so
/// the pattern makes no allocation of its own).
fn pattern(t: usize, keep: &mut Vec<(usize, Layout)>) {
    for i in 0..PER_THREAD {
        let size = 16 + t * 8 + i;
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero size, valid layout; every pointer is checked.
        unsafe {
            let p = if i % 2 == 0 {
                alloc(layout)
            } else {
                alloc_zeroed(layout)
            };
            assert!(!p.is_null());
            match i % 3 {
                0 => {
                    let q = realloc(p, layout, size * 2);
                    assert!(!q.is_null());
                    let l2 = Layout::from_size_align(size * 2, 8).unwrap();
                    dealloc(q, l2);
                }
                1 => dealloc(p, layout),
                _ => keep.push((p as usize, layout)),
            }
        }
    }
}

fn run_pattern_on_threads() {
    // Threads start and park; the main thread reads the totals, lets them
    // run the pattern, and reads again once all are done: only the
    // pattern's allocations fall between the two readings.
    let ready = Arc::new(Barrier::new(THREADS + 1));
    let start = Arc::new(Barrier::new(THREADS + 1));
    let done = Arc::new(Barrier::new(THREADS + 1));
    let release = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (ready, start) = (ready.clone(), start.clone());
            let (done, release) = (done.clone(), release.clone());
            std::thread::spawn(move || {
                let mut kept = Vec::with_capacity(PER_THREAD);
                ready.wait();
                start.wait();
                pattern(t, &mut kept);
                done.wait();
                release.wait();
                for (p, l) in kept {
                    // SAFETY: allocated above with this layout, freed once.
                    unsafe { dealloc(p as *mut u8, l) };
                }
            })
        })
        .collect();
    ready.wait();
    let before = leakscope::heap_stats();
    start.wait();
    done.wait();
    let after = leakscope::heap_stats();
    release.wait();
    for h in handles {
        h.join().unwrap();
    }

    let mut exp = (0, 0, 0, 0, 0);
    for t in 0..THREADS {
        let e = expected(t);
        exp = (
            exp.0 + e.0,
            exp.1 + e.1,
            exp.2 + e.2,
            exp.3 + e.3,
            exp.4 + e.4,
        );
    }
    let got = (
        after.allocations - before.allocations,
        after.frees - before.frees,
        after.reallocs - before.reallocs,
        after.allocated_bytes - before.allocated_bytes,
        after.freed_bytes - before.freed_bytes,
    );
    assert_eq!(
        got,
        exp,
        "(allocations, frees, reallocs, allocated, freed) at rate {}",
        leakscope::sample_rate()
    );
    assert_eq!(after.allocations - before.allocations, exp.0, "allocations");
    assert_eq!(after.frees - before.frees, exp.1, "frees");
    assert_eq!(after.reallocs - before.reallocs, exp.2, "reallocs");
    assert_eq!(
        after.allocated_bytes - before.allocated_bytes,
        exp.3,
        "allocated bytes"
    );
    assert_eq!(after.freed_bytes - before.freed_bytes, exp.4, "freed bytes");
    assert_eq!(
        after.live_bytes as i64 - before.live_bytes as i64,
        (exp.3 - exp.4) as i64,
        "live bytes"
    );
    assert_eq!(
        after.live_allocations as i64 - before.live_allocations as i64,
        (exp.0 - exp.1) as i64,
        "live allocations"
    );
}

fn totals_are_exact_at_any_rate() {
    run_pattern_on_threads();
    leakscope::set_sample_rate(1);
    run_pattern_on_threads();
    let s = leakscope::heap_stats();
    assert!(s.samples > 0, "rate 1 samples");
    leakscope::set_sample_rate(0);
    let samples = leakscope::heap_stats().samples;
    run_pattern_on_threads();
    assert_eq!(
        leakscope::heap_stats().samples,
        samples,
        "rate 0 samples nothing"
    );
    leakscope::set_sample_rate(leakscope::alloc::DEFAULT_SAMPLE_RATE);

    // Peak: a 64 MiB block is published at once, so the peak covers it.
    let big = vec![1u8; 64 << 20];
    let s = leakscope::heap_stats();
    assert!(s.peak_live_bytes >= s.live_bytes && s.live_bytes >= 64 << 20);
    drop(big);
    assert!(leakscope::heap_stats().peak_live_bytes >= 64 << 20);
}

/// `harness = false` (see Cargo.toml): the test runner's own threads would
/// otherwise allocate at unpredictable moments (blocking on its result
/// channel allocates), and this file asserts exact process-wide deltas.
fn main() {
    totals_are_exact_at_any_rate();
    println!("test totals_are_exact_at_any_rate ... ok");
    println!("test result: ok. 1 passed; 0 failed");
}
