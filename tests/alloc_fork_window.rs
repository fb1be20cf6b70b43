//! Samples taken while another thread forks (between its prepare and
//! parent handlers) must not walk through the loader: the system unwinder
//! (the fallback while the caching unwinder's loader gate is closed) calls
//! `dl_iterate_phdr` on older libgcc (GCC < 12), whose lock a child would
//! inherit held. Such samples get an empty stack, counted in
//! `dropped_samples`. The fork window is held open for 200 ms with the
//! `test-hooks` pause in the prepare handler, while a thread samples at
//! rate 1.
//!
//! `harness = false`: forks from the main thread, no test-runner state.

mod fork_util;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

fn main() {
    leakscope::set_sample_rate(1);
    // Warm up: module list built, rule caches filled.
    for i in 0..1000 {
        black_box(vec![i as u8; 64]);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let allocs = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, allocs) = (stop.clone(), allocs.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                black_box(vec![0u8; 32]);
                allocs.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while allocs.load(Ordering::Relaxed) < 1000 {
        std::thread::yield_now();
    }
    let dropped = leakscope::heap_stats().dropped_samples;
    leakscope::__hooks::arm(leakscope::__hooks::Point::ForkPrepared, 200_000);
    let pid = fork_util::spawn(|| 0);
    leakscope::__hooks::arm(leakscope::__hooks::Point::ForkPrepared, 0);
    let in_window = leakscope::heap_stats().dropped_samples - dropped;
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(fork_util::wait(pid, Duration::from_secs(10)), Ok(0));
    assert!(
        in_window > 0,
        "no sample during the 200 ms fork window went unwalked: they walked through the loader"
    );
    // Outside the window, stacks are walked again.
    let before = leakscope::heap_stats();
    for i in 0..100 {
        black_box(vec![i as u8; 64]);
    }
    let after = leakscope::heap_stats();
    assert!(after.samples - before.samples >= 100);
    assert_eq!(after.dropped_samples, before.dropped_samples);
    println!("test samples_in_fork_window_are_not_walked ... ok ({in_window} unwalked)");
    println!("test result: ok. 1 passed; 0 failed");
}
