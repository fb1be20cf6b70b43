//! Helpers of the fork tests: fork a child that runs a closure and
//! `_exit`s with its result, and wait for it with a deadline.
#![allow(dead_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The load the fork tests fork under: two threads allocating small
/// blocks (sampled at the tests' rate 1) and one taking snapshots, until
/// `stop` is set.
pub fn load_threads(stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    let mut threads: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    black_box(vec![0u8; 32]);
                }
            })
        })
        .collect();
    threads.push({
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                black_box(leakscope::snapshot());
            }
        })
    });
    threads
}

/// Forks; the child runs `f` and `_exit`s with its return value (a panic
/// in the child exits with 101).
pub fn spawn(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the child only runs `f` (allocation-safe code: leakscope's
    // fork handlers leave its locks usable) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: ends the child at once, without running the parent's
        // atexit handlers or destructors a second time.
        unsafe { libc::_exit(code) }
    }
    pid
}

/// Waits for `pid` at most `limit`; kills it then. `Ok(exit code)`, or
/// `Err` saying how it ended.
pub fn wait(pid: libc::pid_t, limit: Duration) -> Result<i32, String> {
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child without blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if r < 0 {
            return Err(format!(
                "waitpid failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        if start.elapsed() > limit {
            // SAFETY: kills our own hung child, then reaps it.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(format!("hung for {limit:?} (killed)"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Err(format!("died: status {status:#x}"))
    }
}
