//! Coexistence with panics under `RUST_BACKTRACE=1`: each panic captures
//! and prints a backtrace (the default hook, to stderr), unwinds through
//! frames that allocated, and is caught with `catch_unwind`, in a loop on
//! application threads at sample rate 1 while another thread snapshots.
//! Everything finishes, the totals reconcile and a snapshot after the storm
//! works.
//!
//! `harness = false`: `RUST_BACKTRACE` is set at the start of `main`,
//! before any thread exists.

#[path = "coexist_support/mod.rs"]
mod support;

use std::hint::black_box;
use std::panic::catch_unwind;
use std::time::Duration;

use support::{churn, on_threads, reconcile, watchdog, Snapshotter};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

const NAME: &str = "coexist_panic";

#[inline(never)]
fn deep(n: u32, r: u64) -> usize {
    let held = vec![n as u8; 100 + n as usize]; // freed by the unwinding
    if n == 0 {
        churn(r);
        panic!("planned panic {r}");
    }
    deep(n - 1, r) + black_box(held.len())
}

fn panics(_t: usize, r: u64) {
    let caught = catch_unwind(|| deep(8, r));
    let payload = caught.expect_err("it panics");
    let msg = payload
        .downcast_ref::<String>()
        .expect("a formatted message");
    assert!(msg.starts_with("planned panic"), "{msg}");
}

/// After the first panics (printed by the default hook), a hook that does
/// what the default one does, capture the backtrace (`RUST_BACKTRACE=1`
/// says capture) and format it with the message, into a string instead of
/// stderr: the same work, without thousands of lines in the CI log.
fn quiet_hook() {
    std::panic::set_hook(Box::new(|info| {
        let bt = std::backtrace::Backtrace::capture();
        assert_eq!(bt.status(), std::backtrace::BacktraceStatus::Captured);
        let text = format!("{info}\nstack backtrace:\n{bt}");
        assert!(text.contains("deep"), "{text}");
        black_box(text);
    }));
}

fn main() {
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RUST_BACKTRACE", "1") };
    watchdog(NAME, 180);
    leakscope::set_sample_rate(1);
    // Warm up: the panic machinery's and std's symbolizer's state.
    on_threads(1, 2, Duration::from_secs(60), panics);
    quiet_hook();
    on_threads(1, 2, Duration::from_secs(60), panics);
    drop(leakscope::snapshot());
    let base = leakscope::heap_stats();

    let snaps = Snapshotter::start();
    let rounds = on_threads(2, 150, Duration::from_secs(20), panics);
    let snapshots = snaps.stop();
    eprintln!("{NAME}: {rounds} caught panics with backtraces on 2 threads, {snapshots} snapshots");
    assert!(snapshots > 0);
    reconcile(NAME, &base, 4 << 20);
    eprintln!("{NAME}: ok");
}
