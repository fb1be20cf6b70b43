//! Coexistence with a CPU profiler: `pprof` (the `pprof` crate) takes a
//! `SIGPROF`-driven stack walk (`backtrace::trace_unsynchronized` in the
//! signal handler) about 1,000 times a second of CPU time, interrupting
//! threads anywhere, including inside leakscope's sampled path and its own
//! unwinder, while they allocate at sample rate 1 and another thread
//! snapshots in a loop. Everything finishes, the totals reconcile, the
//! profiler's report has samples, and a snapshot after the storm works.
//!
//! `harness = false`: one process, the profiler's timer set up once.

#[path = "coexist_support/mod.rs"]
mod support;

use std::time::Duration;

use support::{churn, on_threads, reconcile, watchdog, Snapshotter};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

const NAME: &str = "coexist_profiler";

fn profiled(threads: usize, rounds: u64, secs: u64, symbolize: bool) -> (u64, usize) {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(1000)
        .build()
        .expect("start the profiler");
    let done = on_threads(threads, rounds, Duration::from_secs(secs), |_, r| churn(r));
    // Unresolved: symbolizing fills the profiler's symbol cache, which
    // keeps growing with each new address (the application's memory, which
    // leakscope counts, but no measure of leakscope). The warm-up round
    // symbolizes.
    let stacks = if symbolize {
        let report = guard.report().build().expect("profiler report");
        report.data.values().sum::<isize>() as usize
    } else {
        let report = guard.report().build_unresolved().expect("profiler report");
        report.data.values().sum::<isize>() as usize
    };
    drop(guard);
    (done, stacks)
}

fn main() {
    watchdog(NAME, 120);
    leakscope::set_sample_rate(1);
    // Warm up: the profiler's and the symbolizers' process-wide state.
    profiled(1, 20, 5, true);
    drop(leakscope::snapshot());
    let base = leakscope::heap_stats();

    let snaps = Snapshotter::start();
    let (rounds, stacks) = profiled(2, 4_000, 6, false);
    let snapshots = snaps.stop();
    eprintln!("{NAME}: {rounds} rounds on 2 threads, {stacks} profiler stack samples, {snapshots} snapshots");
    assert!(stacks > 0, "the profiler took no samples");
    assert!(snapshots > 0);
    // What may remain: the profiler's and std's lazily grown state.
    reconcile(NAME, &base, 1 << 20);
    eprintln!("{NAME}: ok");
}
