//! Taking profiles while two threads allocate hard does not stop them, and
//! each profile holds the sample tables' lock only to copy them: counted
//! work, not time (wall-clock stalls are measured by
//! `scripts/bench-service.sh` and the `scrape` bench, not asserted here,
//! where a loaded CI machine would decide the result).
//!
//! - every worker keeps allocating while profiles are taken back to back
//!   (thousands of calls in the phase; a profiler holding the tables'
//!   lock through its symbolization or its aggregation would block them
//!   for most of it at this sample rate);
//! - each profile copied under the lock at most one row per interned stack
//!   and one entry per live sample it saw, never more (`last_table_read`);
//! - the profiles decode and hold samples.
//!
//! Own process: the tracking allocator is this binary's global allocator.

#[path = "common/pprof.rs"]
mod pprof_common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leakscope::pprof::{self, ProfileOptions};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

const WARMUP: u8 = 0;
/// The main thread takes profiles back to back.
const PROFILING: u8 = 1;
const STOP: u8 = 2;

/// Allocates and frees hard (sizes 16 B..16 KiB, a window of 4096 live
/// buffers), counting its allocation calls made while profiling.
#[inline(never)]
fn worker(phase: &AtomicU8, during: &AtomicU64, seed: u64) {
    let mut live: VecDeque<Vec<u8>> = VecDeque::with_capacity(4096);
    let mut x = seed | 1;
    loop {
        let p = phase.load(Ordering::Relaxed);
        if p == STOP {
            break;
        }
        // xorshift: cheap, allocation-free sizes.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = 16 + (x % (16 * 1024)) as usize;
        let v: Vec<u8> = Vec::with_capacity(size);
        live.push_back(std::hint::black_box(v));
        if live.len() == 4096 {
            live.pop_front();
        }
        if p == PROFILING {
            during.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn profiling_does_not_stop_allocating_threads() {
    // A small rate: the workers hit the sampled path (stack capture, live
    // table) thousands of times a second, where contention would show.
    leakscope::set_sample_rate(16 * 1024);
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let counts: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let workers: Vec<_> = (0..2u64)
        .map(|i| {
            let phase = Arc::clone(&phase);
            let during = Arc::clone(&counts[i as usize]);
            std::thread::spawn(move || worker(&phase, &during, 0x9e37_79b9_7f4a_7c15 ^ i))
        })
        .collect();

    std::thread::sleep(Duration::from_millis(300));
    phase.store(PROFILING, Ordering::Relaxed);
    let mut last = Vec::new();
    let started = std::time::Instant::now();
    let mut taken = 0;
    // At least ten profiles and half a second of them (the phase's length
    // only: nothing below is timed).
    while taken < 10 || started.elapsed() < Duration::from_millis(500) {
        taken += 1;
        let live_before = leakscope::heap_stats().live_samples;
        last = pprof::profile_now(&ProfileOptions::heap());
        let live_after = leakscope::heap_stats().live_samples;
        let (rows, copied) = leakscope::testing::last_table_read();
        // One row per interned stack (3072 at most, plus the catch-all),
        // one entry per live sample present while it copied.
        assert!(rows <= 3072 + 1, "{rows} stack rows copied");
        assert!(
            copied <= live_before.max(live_after) + 4096,
            "copied {copied} live samples, {live_before}..{live_after} were live"
        );
    }
    phase.store(STOP, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker panicked");
    }

    let stats = leakscope::heap_stats();
    assert!(stats.samples > 100, "the allocator sampled: {stats:?}");
    let p = pprof_common::decode(&last);
    assert!(!p.sample.is_empty(), "the profiles taken have samples");
    for (i, c) in counts.iter().enumerate() {
        let n = c.load(Ordering::Relaxed);
        assert!(
            n > 1000,
            "worker {i} made only {n} allocation calls while {taken} profiles were taken"
        );
    }
}
