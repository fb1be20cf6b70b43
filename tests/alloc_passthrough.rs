//! The inner allocator's semantics pass through unchanged: sizes, alignments
//! (including huge ones), `alloc_zeroed` reaching the inner `alloc_zeroed`,
//! `realloc` reaching the inner `realloc` with contents kept, and a null
//! from the inner allocator passing through with nothing recorded.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A test inner allocator: forwards to System, counts each kind of call and
/// remembers the last layout, and can be told to fail the next allocation.
struct Ledger;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static ZEROED: AtomicUsize = AtomicUsize::new(0);
static REALLOCS: AtomicUsize = AtomicUsize::new(0);
static DEALLOCS: AtomicUsize = AtomicUsize::new(0);
static LAST_SIZE: AtomicUsize = AtomicUsize::new(0);
static LAST_ALIGN: AtomicUsize = AtomicUsize::new(0);
static FAIL_NEXT: AtomicBool = AtomicBool::new(false);

// SAFETY: forwards every call to `System` unchanged (or returns null, which
// `GlobalAlloc` allows to signal failure).
unsafe impl GlobalAlloc for Ledger {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if FAIL_NEXT.swap(false, Ordering::SeqCst) {
            return std::ptr::null_mut();
        }
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        LAST_SIZE.store(l.size(), Ordering::SeqCst);
        LAST_ALIGN.store(l.align(), Ordering::SeqCst);
        // SAFETY: caller's contract, forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if FAIL_NEXT.swap(false, Ordering::SeqCst) {
            return std::ptr::null_mut();
        }
        ZEROED.fetch_add(1, Ordering::SeqCst);
        LAST_SIZE.store(l.size(), Ordering::SeqCst);
        LAST_ALIGN.store(l.align(), Ordering::SeqCst);
        // SAFETY: caller's contract, forwarded.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        DEALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: caller's contract, forwarded.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if FAIL_NEXT.swap(false, Ordering::SeqCst) {
            return std::ptr::null_mut();
        }
        REALLOCS.fetch_add(1, Ordering::SeqCst);
        LAST_SIZE.store(n, Ordering::SeqCst);
        // SAFETY: caller's contract, forwarded.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator<Ledger> = leakscope::TrackingAllocator::new(Ledger);

fn inner_semantics_pass_through() {
    leakscope::set_sample_rate(1);
    // The first sample builds the unwinder's module list, as metadata
    // allocated from the inner allocator: do it before watching `LAST_SIZE`.
    drop(std::hint::black_box(vec![0u8; 10]));

    // Plain and huge alignments reach the inner allocator unchanged.
    for align in [8usize, 64, 4096, 1 << 21] {
        let l = Layout::from_size_align(100, align).unwrap();
        let before = leakscope::heap_stats();
        // SAFETY: valid non-zero layout; freed below with the same layout.
        let p = unsafe { ALLOC.alloc(l) };
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0, "alignment {align}");
        assert_eq!(LAST_SIZE.load(Ordering::SeqCst), 100);
        assert_eq!(LAST_ALIGN.load(Ordering::SeqCst), align);
        assert_eq!(leakscope::heap_stats().allocations, before.allocations + 1);
        // SAFETY: allocated above with `l`.
        unsafe { ALLOC.dealloc(p, l) };
    }

    // alloc_zeroed reaches the inner alloc_zeroed (its calloc fast path).
    let zeroed = ZEROED.load(Ordering::SeqCst);
    let l = Layout::from_size_align(1 << 16, 16).unwrap();
    // SAFETY: valid layout, freed below.
    let p = unsafe { ALLOC.alloc_zeroed(l) };
    assert!(!p.is_null());
    assert_eq!(ZEROED.load(Ordering::SeqCst), zeroed + 1);
    // SAFETY: `p` is valid for `l.size()` bytes.
    assert!(unsafe { std::slice::from_raw_parts(p, l.size()) }
        .iter()
        .all(|&b| b == 0));

    // realloc reaches the inner realloc and keeps the contents; the sampled
    // block stays live exactly once, at its new size.
    // SAFETY: `p` is valid for writes of `l.size()` bytes.
    unsafe { std::ptr::write_bytes(p, 0xAB, 1024) };
    let reallocs = REALLOCS.load(Ordering::SeqCst);
    let live_samples = leakscope::heap_stats().live_samples;
    // SAFETY: `p` was allocated with `l`; new size non-zero.
    let q = unsafe { ALLOC.realloc(p, l, 1 << 20) };
    assert!(!q.is_null());
    assert_eq!(REALLOCS.load(Ordering::SeqCst), reallocs + 1);
    // SAFETY: `q` is valid for 1 MiB, of which the first 1024 bytes were kept.
    assert!(unsafe { std::slice::from_raw_parts(q, 1024) }
        .iter()
        .all(|&b| b == 0xAB));
    assert_eq!(leakscope::heap_stats().live_samples, live_samples);
    let l2 = Layout::from_size_align(1 << 20, 16).unwrap();
    // SAFETY: allocated (by realloc) with size 1 MiB, align 16.
    unsafe { ALLOC.dealloc(q, l2) };
    assert_eq!(leakscope::heap_stats().live_samples, live_samples - 1);

    // A null from the inner allocator passes through: nothing counted,
    // nothing recorded as live.
    let before = leakscope::heap_stats();
    FAIL_NEXT.store(true, Ordering::SeqCst);
    // SAFETY: valid layout; a null result is allowed.
    let p = unsafe { ALLOC.alloc(Layout::from_size_align(4096, 8).unwrap()) };
    assert!(p.is_null());
    FAIL_NEXT.store(true, Ordering::SeqCst);
    // SAFETY: as above.
    let z = unsafe { ALLOC.alloc_zeroed(Layout::from_size_align(4096, 8).unwrap()) };
    assert!(z.is_null());
    let after = leakscope::heap_stats();
    assert_eq!(after.allocations, before.allocations);
    assert_eq!(after.allocated_bytes, before.allocated_bytes);
    assert_eq!(after.live_samples, before.live_samples);

    // A failed realloc leaves the old block valid, sampled and counted once.
    let l = Layout::from_size_align(256, 8).unwrap();
    // SAFETY: valid layout.
    let p = unsafe { ALLOC.alloc(l) };
    assert!(!p.is_null());
    let before = leakscope::heap_stats();
    FAIL_NEXT.store(true, Ordering::SeqCst);
    // SAFETY: `p` allocated with `l`; a null result leaves `p` valid.
    let q = unsafe { ALLOC.realloc(p, l, 1 << 16) };
    assert!(q.is_null());
    let after = leakscope::heap_stats();
    assert_eq!(after.reallocs, before.reallocs);
    assert_eq!(after.live_bytes, before.live_bytes);
    assert_eq!(after.live_samples, before.live_samples);
    let deallocs = DEALLOCS.load(Ordering::SeqCst);
    // SAFETY: `p` is still the live block allocated with `l`.
    unsafe { ALLOC.dealloc(p, l) };
    assert_eq!(DEALLOCS.load(Ordering::SeqCst), deallocs + 1);
    assert_eq!(
        leakscope::heap_stats().live_samples,
        before.live_samples - 1
    );
}

/// `harness = false` (see Cargo.toml): the test runner's own threads would
/// otherwise allocate at unpredictable moments (blocking on its result
/// channel allocates), and this file asserts exact process-wide deltas.
fn main() {
    inner_semantics_pass_through();
    println!("test inner_semantics_pass_through ... ok");
    println!("test result: ok. 1 passed; 0 failed");
}
