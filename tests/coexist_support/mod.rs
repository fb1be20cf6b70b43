//! Shared by the `coexist_*` tests: a watchdog, a snapshot storm on its own
//! thread, an allocating workload, and the final reconciliation.
#![allow(dead_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use leakscope::HeapStats;

/// Fails the process (exit 124, as `timeout` does) if it is still running
/// after `secs`: a hang fails CI instead of stalling it.
pub fn watchdog(name: &'static str, secs: u64) {
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            eprintln!("{name}: FAILED: still running after {secs} s (hang)");
            // SAFETY: ends the process at once; nothing to clean up.
            unsafe { libc::_exit(124) }
        })
        .expect("watchdog thread");
}

/// Snapshots in a loop on another thread until stopped.
pub struct Snapshotter {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl Snapshotter {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let snap = leakscope::snapshot();
                black_box(snap.heap.sites.len());
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            n
        });
        Snapshotter {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the loop; the number of snapshots taken.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().expect("snapshot thread")
    }
}

/// Allocations of mixed sizes and kinds (boxes, vectors that grow by
/// realloc, strings, a map), all freed before it returns.
#[inline(never)]
pub fn churn(round: u64) {
    let mut v: Vec<Box<[u8]>> = Vec::new();
    for i in 0..64u64 {
        let size = 8 + ((round * 31 + i * 17) % 2048) as usize;
        v.push(vec![i as u8; size].into_boxed_slice());
    }
    let mut s = String::new();
    for i in 0..32 {
        s.push_str(&format!("{round}:{i};"));
    }
    let mut m = std::collections::HashMap::new();
    for i in 0..32u64 {
        m.insert(i, vec![0u32; (i as usize) + 1]);
    }
    black_box((&v, &s, &m));
}

/// Runs `work(thread, round)` on `threads` threads for at most `rounds`
/// rounds each or until `for_at_most` has passed; returns the rounds done.
pub fn on_threads(
    threads: usize,
    rounds: u64,
    for_at_most: Duration,
    work: impl Fn(usize, u64) + Send + Sync + 'static,
) -> u64 {
    let work = Arc::new(work);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + for_at_most;
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (work, done) = (work.clone(), done.clone());
            std::thread::spawn(move || {
                for r in 0..rounds {
                    if Instant::now() >= deadline {
                        break;
                    }
                    work(t, r);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().expect("worker thread");
    }
    done.load(Ordering::Relaxed)
}

/// The totals after everything the test made is freed, against `base`
/// (read before): live bytes back within `slack` (what the test can
/// explain: caches other libraries keep for the process), the counters
/// consistent with each other, leakscope's metadata sane, and a snapshot
/// after the storm that agrees with the totals.
pub fn reconcile(name: &str, base: &HeapStats, slack: u64) {
    let s = leakscope::heap_stats();
    let snap = leakscope::snapshot();
    let after = leakscope::heap_stats();
    eprintln!(
        "{name}: live bytes {} -> {} ({:+}), live allocations {} -> {}, samples {} (live {}, dropped {}, system unwinds {}), metadata {} -> {} bytes, snapshot: {} sites",
        base.live_bytes,
        s.live_bytes,
        s.live_bytes as i64 - base.live_bytes as i64,
        base.live_allocations,
        s.live_allocations,
        s.samples,
        s.live_samples,
        s.dropped_samples,
        s.system_unwinds,
        base.metadata_bytes,
        s.metadata_bytes,
        snap.heap.sites.len(),
    );
    // No negative counter (u64 wrapped round) anywhere.
    const SANE: u64 = 1 << 40;
    for (what, v) in [
        ("live_bytes", s.live_bytes),
        ("live_allocations", s.live_allocations),
        ("metadata_bytes", s.metadata_bytes),
        ("live_samples", s.live_samples),
    ] {
        assert!(v < SANE, "{name}: {what} = {v}: negative (wrapped)");
    }
    assert!(s.frees <= s.allocations, "{name}: {s:?}");
    assert_eq!(s.live_allocations, s.allocations - s.frees, "{name}");
    assert!(s.freed_bytes <= s.allocated_bytes, "{name}: {s:?}");
    assert_eq!(s.live_bytes, s.allocated_bytes - s.freed_bytes, "{name}");
    assert!(s.peak_live_bytes >= s.live_bytes, "{name}: {s:?}");
    assert!(s.live_samples <= s.samples, "{name}: {s:?}");
    assert!(s.samples > base.samples, "{name}: nothing was sampled");
    assert!(s.metadata_bytes > 0, "{name}: {s:?}");
    assert!(
        s.live_bytes <= base.live_bytes + slack,
        "{name}: live bytes {} vs {} before: {} more than the {slack} the test can explain",
        s.live_bytes,
        base.live_bytes,
        s.live_bytes - base.live_bytes
    );
    // The snapshot after the storm: taken, and its totals agree with the
    // readings on either side of it (nothing else runs now).
    assert!(snap.heap.allocator_active, "{name}");
    assert!(!snap.heap.sites.is_empty(), "{name}: no sampled sites");
    let lo = s.live_bytes.min(after.live_bytes);
    let hi = s.live_bytes.max(after.live_bytes);
    assert!(
        (lo..=hi).contains(&snap.heap.live_bytes),
        "{name}: snapshot live bytes {} outside [{lo}, {hi}]",
        snap.heap.live_bytes
    );
    assert_eq!(snap.heap.stats().dropped_samples, snap.heap.dropped_samples);
}
