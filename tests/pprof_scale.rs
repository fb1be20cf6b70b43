//! A profile of a 100k-sample heap (synthetic snapshot: 100 000 sites, two
//! live age buckets and a freed part each, so 300 000 pprof samples) is
//! produced in bounded time and memory, and decodes to the same totals.
//!
//! Memory is measured with a counting global allocator (own process). The
//! bounds are generous (a debug build on a loaded 2-core machine); the
//! measured numbers are in the README.

#[path = "common/pprof.rs"]
mod pprof_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use leakscope::histogram::{bucket_index, Histogram, BUCKETS};
use leakscope::pprof::{self, ProfileOptions};
use leakscope::{Frame, HeapSite, Snapshot};
use pprof_common::decode;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged; the counters are plain
// atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = CURRENT.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SITES: usize = 100_000;

/// 100k sites over 5 000 leaf functions, 500 inlined helpers, 50 callers
/// and a common 5-frame base; every site has its own leaf address.
fn big_snapshot() -> Snapshot {
    let mut snap = Snapshot::default();
    snap.heap.sample_rate = 512 * 1024;
    let file = |n: &str| Some(format!("src/{n}.rs"));
    let base: Vec<Frame> = ["handler", "router", "serve", "runtime_worker", "main"]
        .iter()
        .enumerate()
        .map(|(k, n)| {
            Frame::new(*n, file(n), Some(10 + k as u32)).with_address(0x9000 + k as u64 * 8, false)
        })
        .collect();
    for i in 0..SITES {
        let leaf = format!("app::module_{}::alloc_{}", i % 50, i % 5000);
        let helper = format!("app::helpers::inline_{}", i % 500);
        let caller = format!("app::caller_{}", i % 50);
        let leaf_addr = 0x10_0000 + i as u64 * 16;
        let mut frames = vec![
            Frame::new(leaf, file("leaf"), Some((i % 900) as u32 + 1))
                .with_address(leaf_addr, false),
            Frame::new(helper, file("helpers"), Some(5))
                .with_address(0x8000 + (i % 500) as u64 * 8, true),
            Frame::new(caller, file("callers"), Some(7))
                .with_address(0x8000 + (i % 500) as u64 * 8, false),
        ];
        frames.extend(base.iter().cloned());
        let mut s = HeapSite::default();
        s.frames = frames;
        s.live_ages = Histogram::empty();
        s.live_bytes_by_age = vec![0; BUCKETS];
        for (age, objs, bytes) in [
            (Duration::from_millis(40), 2u64, 4096u64),
            (Duration::from_secs(7200), 1, 1024),
        ] {
            s.live_ages.record_n(age, objs);
            s.live_bytes_by_age[bucket_index(age.as_nanos() as u64)] += bytes;
            s.live_objects += objs;
            s.live_bytes += bytes;
        }
        s.allocated_objects = 10;
        s.allocated_bytes = 20_000;
        s.oldest_age = Some(Duration::from_secs(7200));
        snap.heap.sites.push(s);
    }
    snap
}

#[test]
fn hundred_thousand_sites_in_bounded_time_and_memory() {
    let snap = big_snapshot();
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let t0 = Instant::now();
    let gz = pprof::profile(&snap, &ProfileOptions::heap());
    let took = t0.elapsed();
    let extra = PEAK.load(Ordering::Relaxed) - before;
    eprintln!(
        "100k sites: profile {:?}, {} bytes gzipped, peak extra heap {} MiB",
        took,
        gz.len(),
        extra >> 20
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(extra < 512 << 20, "peak extra heap {} MiB", extra >> 20);
    assert!(gz.len() < 32 << 20, "profile is {} bytes", gz.len());

    let p = decode(&gz);
    assert_eq!(p.sample.len(), 3 * SITES);
    // Distinct leaf addresses + 500 helper-in-caller locations + 5 base frames.
    assert_eq!(p.location.len(), SITES + 500 + 5);
    assert_eq!(p.function.len(), 5000 + 500 + 50 + 5);
    let mut total = [0i64; 4];
    for s in &p.sample {
        for (t, v) in total.iter_mut().zip(&s.value) {
            *t += v;
        }
    }
    let n = SITES as i64;
    assert_eq!(total, [10 * n, 20_000 * n, 3 * n, 5120 * n]);

    // The text form of the same heap is bounded too.
    let t1 = Instant::now();
    let text = pprof::text(&snap, &ProfileOptions::heap());
    eprintln!("100k sites: text {:?}, {} bytes", t1.elapsed(), text.len());
    assert!(text.starts_with(&format!("heap profile: {}: {} [", 3 * n, 5120 * n)));
}
