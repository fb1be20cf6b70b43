//! Two threads fork at once, in a loop, while two others sample at rate 1
//! and one snapshots. glibc >= 2.36 runs the atfork handlers without its
//! own lock, so the prepare and parent handlers of the two forks
//! interleave: the first fork's parent handler must not reopen the
//! unwinder's loader gate while the second fork is inside its window (its
//! child would inherit the loader's lock held and hang at its first
//! sample). Every child samples and snapshots and must exit within 10 s.
//!
//! With `test-hooks`, each prepare handler pauses after closing the gate,
//! so the two forks' windows overlap more often, and walks stay longer
//! inside `dl_iterate_phdr`, so a fork outside the gate's protection lands
//! while the loader's lock is held.
//!
//! `harness = false`: no test-runner threads or state in the children.

mod fork_util;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

fn child() -> i32 {
    let before = leakscope::heap_stats().samples;
    for i in 0..100 {
        black_box(vec![i as u8; 64]);
    }
    if leakscope::heap_stats().samples == before {
        return 3;
    }
    black_box(leakscope::snapshot());
    0
}

fn main() {
    leakscope::__hooks::arm(leakscope::__hooks::Point::ForkPrepared, 200);
    leakscope::__hooks::arm(leakscope::__hooks::Point::LoaderInside, 50);
    leakscope::set_sample_rate(1);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = fork_util::load_threads(&stop);
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let forkers: Vec<_> = (0..2)
        .map(|f| {
            let failures = failures.clone();
            std::thread::spawn(move || {
                for round in 0..100 {
                    let pid = fork_util::spawn(child);
                    let r = fork_util::wait(pid, Duration::from_secs(10));
                    let mut fl = failures.lock().unwrap();
                    match r {
                        Ok(0) => {}
                        Ok(3) => fl.push(format!("forker {f} round {round}: no samples")),
                        Ok(c) => fl.push(format!("forker {f} round {round}: exit {c}")),
                        Err(e) => fl.push(format!("forker {f} round {round}: child {e}")),
                    }
                    if fl.len() >= 3 {
                        break;
                    }
                }
            })
        })
        .collect();
    for f in forkers {
        f.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    leakscope::__hooks::arm(leakscope::__hooks::Point::ForkPrepared, 0);
    leakscope::__hooks::arm(leakscope::__hooks::Point::LoaderInside, 0);
    for t in threads {
        t.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
    println!("test two_threads_fork_at_once ... ok");
    println!("test result: ok. 1 passed; 0 failed");
}
