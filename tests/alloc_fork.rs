//! `fork()` while other threads are inside the sampled path: the child's
//! copy of leakscope's tables must not stay locked. Each child samples,
//! frees a sampled block and takes a snapshot, then exits; the parent fails
//! the test if a child does not exit within 10 s.
//!
//! `harness = false`: the child must not inherit test-runner state, and the
//! parent forks from the main thread.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

fn child(round: usize) -> ! {
    // Every allocation and free of a sampled block takes the tables' lock.
    for i in 0..200 {
        black_box(vec![i as u8; 64]);
    }
    // A snapshot takes the symbol cache's lock too (a parent thread is
    // symbolizing in a loop).
    if round.is_multiple_of(20) {
        black_box(leakscope::snapshot());
    }
    let s = leakscope::heap_stats();
    let code = if s.samples > 0 { 0 } else { 3 };
    // SAFETY: `_exit` ends the child at once, without running the parent's
    // atexit handlers or destructors twice.
    unsafe { libc::_exit(code) }
}

fn fork_while_sampling() {
    leakscope::set_sample_rate(1);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                leakscope::set_sample_rate(1);
                while !stop.load(Ordering::Relaxed) {
                    black_box(vec![0u8; 32]);
                }
            })
        })
        .collect();
    let snapper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                black_box(leakscope::snapshot());
            }
        })
    };
    for round in 0..200 {
        // SAFETY: the child only allocates, reads totals and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            child(round);
        }
        let start = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child without blocking.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                // SAFETY: kills our own hung child before failing.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("child of round {round} hung: leakscope's tables stayed locked after fork");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            libc::WIFEXITED(status),
            "child of round {round} died: {status}"
        );
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "child of round {round} saw no samples"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    snapper.join().unwrap();
}

fn main() {
    fork_while_sampling();
    println!("test fork_while_sampling ... ok");
    println!("test result: ok. 1 passed; 0 failed");
}
