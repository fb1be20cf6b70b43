//! A forked child forks again (a daemon's double fork, a pre-fork worker
//! spawning): the child must not inherit the parent's in-flight unwinder
//! state (loader users, module build, rule cache try-locks) and spin in its
//! own `fork()`'s prepare handler. Parent threads sample at rate 1 (every
//! walk passes the loader gate) and snapshot; each child samples, forks a
//! grandchild that samples and snapshots, and waits for it. Children and
//! grandchildren are killed (and the test fails) after 10 s.
//!
//! With `test-hooks`, the window between a walk announcing itself at the
//! loader gate and checking for a fork is widened, so forks land in it.
//!
//! `harness = false`: forks from the main thread, no test-runner state.

mod fork_util;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

fn sample_some() -> bool {
    let before = leakscope::heap_stats().samples;
    for i in 0..100 {
        black_box(vec![i as u8; 64]);
    }
    leakscope::heap_stats().samples > before
}

fn grandchild() -> i32 {
    if !sample_some() {
        return 3;
    }
    black_box(leakscope::snapshot());
    0
}

fn child() -> i32 {
    if !sample_some() {
        return 3;
    }
    let pid = fork_util::spawn(grandchild);
    match fork_util::wait(pid, Duration::from_secs(10)) {
        Ok(0) => 0,
        Ok(c) => 10 + c,
        Err(_) => 4,
    }
}

fn main() {
    leakscope::__hooks::arm(leakscope::__hooks::Point::LoaderEnter, 20);
    leakscope::set_sample_rate(1);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = fork_util::load_threads(&stop);
    let mut failures = Vec::new();
    for round in 0..100 {
        let pid = fork_util::spawn(child);
        match fork_util::wait(pid, Duration::from_secs(15)) {
            Ok(0) => {}
            Ok(3) => failures.push(format!("round {round}: child saw no samples")),
            Ok(4) => failures.push(format!("round {round}: grandchild hung")),
            Ok(c) => failures.push(format!("round {round}: exit {c}")),
            Err(e) => failures.push(format!("round {round}: child {e}")),
        }
        if failures.len() >= 3 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    leakscope::__hooks::arm(leakscope::__hooks::Point::LoaderEnter, 0);
    for t in threads {
        t.join().unwrap();
    }
    assert!(failures.is_empty(), "{failures:#?}");
    println!("test children_fork_grandchildren ... ok");
    println!("test result: ok. 1 passed; 0 failed");
}
