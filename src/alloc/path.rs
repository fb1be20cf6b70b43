//! The allocator's paths: for each of alloc, free and realloc, an entry (the
//! inner allocator's call and the fast path, inlined into the caller), and
//! `#[cold]` functions for everything else.
//!
//! ```text
//!  alloc    alloc_entry ─► inner.alloc ─► fast: countdown has `size` left?
//!                              no ─► count_alloc_slow ─► sampled? record_sample
//!  free     free_entry ─► fast: countdown has `size` left, filter says "not
//!                         sampled"? ─► inner.dealloc
//!                              no ─► free_cold ─► forget_sample ─► inner.dealloc
//!  realloc  realloc_entry ─► fast: owner and filter says "not sampled"?
//!                              ─► inner.realloc ─► countdowns have both sizes?
//!                                   no ─► count_realloc_slow ─► record_sample
//!                              no ─► realloc_cold (guarded, not an owner, or
//!                                    a block that may be a sample)
//! ```
//!
//! Names: `*_entry` is what the `GlobalAlloc` method runs; `count_*_slow`
//! counts a call the fast path's countdown could not (and takes the
//! sampling decision); `*_cold` is a whole call off the fast path, the
//! inner allocator's call included.
//!
//! Orders that matter: allocations go to the inner allocator first (a null
//! return passes through with nothing recorded), frees last (a sampled
//! block is forgotten before its address can be reused).
//!
//! The fast path reads one thread-local pointer (`fast`, see `guard.rs`)
//! and takes the size from a countdown in the block it points to (the
//! countdowns are the byte counters, see `counters.rs`); a free also reads
//! one byte of the sample filter (`table.rs`). No lock, no hash lookup, no
//! read-modify-write on a shared cache line.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::Ordering;

use super::counters::{self, Block, META_LIVE, PARKED, SHARED};
use super::guard::{self, Guard, ThreadState, STATE};
use super::sampler::{self, current_rate, weight, EPOCH};
use super::stack::{self, MAX_FRAMES};
use super::table::{self, Live};
use super::thread::init_thread;

// ---------------------------------------------------------------------------
// alloc and alloc_zeroed

/// `alloc` and `alloc_zeroed`: the inner allocator, then the fast path.
///
/// The arguments are in the allocator shim's order (size, align), so where
/// LLVM does not inline this the shim is a bare jump. Inlining is left to
/// LLVM: the body is small enough that inlining it into the binary's
/// allocating functions costs fewer instructions than the call (callgrind on
/// the criterion binaries: churn 234 vs 239 instructions per operation,
/// request mix 668 vs 685 per allocation). A larger body did the opposite:
/// it pushed std's `RawVecInner::try_allocate_in` past LLVM's inlining
/// threshold.
///
/// Alignments above 16 or above the size take an outlined copy of the same
/// code: only code layout differs. For `System` that keeps the
/// `posix_memalign` branch, which needs a stack slot, out of this function,
/// so the common path has no frame beyond one saved register.
///
/// # Safety
/// `size` and `align` form a valid `Layout` and the caller upholds
/// `GlobalAlloc::alloc`'s (or `alloc_zeroed`'s) contract.
#[inline]
pub(crate) unsafe fn alloc_entry<A: GlobalAlloc, const ZEROED: bool>(
    size: usize,
    align: usize,
    inner: &A,
) -> *mut u8 {
    if align <= 16 && align <= size {
        // SAFETY: forwarded from the caller's contract.
        unsafe { alloc_body::<A, ZEROED>(size, align, inner) }
    } else {
        // SAFETY: forwarded from the caller's contract.
        unsafe { alloc_large_align::<A, ZEROED>(size, align, inner) }
    }
}

/// [`alloc_entry`] for large alignments (see there).
///
/// # Safety
/// As for [`alloc_entry`].
#[cold]
#[inline(never)]
unsafe fn alloc_large_align<A: GlobalAlloc, const ZEROED: bool>(
    size: usize,
    align: usize,
    inner: &A,
) -> *mut u8 {
    // SAFETY: forwarded from the caller's contract.
    unsafe { alloc_body::<A, ZEROED>(size, align, inner) }
}

/// Forwards to the inner allocator first (a null return passes through with
/// nothing recorded), then counts.
///
/// # Safety
/// As for [`alloc_entry`].
#[inline(always)]
unsafe fn alloc_body<A: GlobalAlloc, const ZEROED: bool>(
    size: usize,
    align: usize,
    inner: &A,
) -> *mut u8 {
    debug_assert!(size != 0);
    // SAFETY: the caller passes the fields of a valid `Layout`.
    let layout = unsafe { Layout::from_size_align_unchecked(size, align) };
    let p = if ZEROED {
        // SAFETY: the caller upholds `alloc_zeroed`'s contract; zeroing is
        // the inner allocator's (calloc).
        unsafe { inner.alloc_zeroed(layout) }
    } else {
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size).
        unsafe { inner.alloc(layout) }
    };
    if !p.is_null() {
        alloc_fast(p, size);
    }
    p
}

/// The fast path: the size taken from the countdown of the thread's fast
/// block (which counts the bytes too), and one count. Everything else is
/// [`count_alloc_slow`].
#[inline(always)]
fn alloc_fast(p: *mut u8, size: usize) {
    let fast = STATE.try_with(|t| t.fast.get().fast_alloc(size));
    if fast != Ok(true) {
        count_alloc_slow(p, size);
    }
}

/// Guarded, first, shared-block or exiting allocations, and the allocation
/// that runs an owner's countdown out.
#[cold]
#[inline(never)]
fn count_alloc_slow(p: *mut u8, size: usize) {
    let sampled = STATE.try_with(|t| {
        if t.is_busy() {
            META_LIVE.fetch_add(size as i64, Ordering::Relaxed);
            return false;
        }
        if t.is_fresh() {
            init_thread(t);
        }
        if t.is_owner() {
            // The bytes are folded in by the sampling decision.
            t.block.get().count_alloc();
        } else {
            SHARED.on_alloc_shared(size as u64);
        }
        sample_decision(t, size)
    });
    if let Ok(true) = sampled {
        record_sample(p as usize, size as u64, None);
    }
}

// ---------------------------------------------------------------------------
// dealloc

/// `dealloc`: the fast path, then the inner allocator.
///
/// # Safety
/// `GlobalAlloc::dealloc`'s contract for `inner`, `ptr` and `layout`.
#[inline(always)]
pub(crate) unsafe fn free_entry<A: GlobalAlloc>(inner: &A, ptr: *mut u8, layout: Layout) {
    let counted = STATE.try_with(|t| t.fast.get().fast_free(layout.size())) == Ok(true);
    if !counted {
        // SAFETY: the caller guarantees `ptr` was allocated by this
        // allocator (hence by `inner`) with `layout`; the cold path
        // forwards to `inner.dealloc`.
        unsafe { free_cold(ptr, layout.size(), layout.align(), inner, false) }
    } else if table::maybe_sampled(ptr as usize) {
        // SAFETY: the caller's `dealloc` contract for `ptr` and `layout`,
        // passed on unchanged; the cold path forwards to `inner.dealloc`.
        unsafe { free_cold(ptr, layout.size(), layout.align(), inner, true) }
    } else {
        // SAFETY: the caller's `dealloc` contract for `ptr` and `layout`:
        // the block came from `inner` with this layout.
        unsafe { inner.dealloc(ptr, layout) }
    }
}

/// A free off the fast path, or of a block that may be a live sample:
/// counted unless the fast path did (`fast_counted`: it did, and only the
/// filter hit), leakscope's own memory as metadata (never sampled), the
/// sample forgotten, then the block handed to the inner allocator (after:
/// its address cannot be reused before the sample is forgotten).
///
/// # Safety
/// `GlobalAlloc::dealloc`'s contract for `inner`, `p` and the layout of
/// `size` and `align`.
#[cold]
#[inline(never)]
pub(crate) unsafe fn free_cold<A: GlobalAlloc>(
    p: *mut u8,
    size: usize,
    align: usize,
    inner: &A,
    fast_counted: bool,
) {
    // SAFETY: the caller passes the fields of the block's valid `Layout`
    // (in the order that leaves the fast path's registers where they are).
    let layout = unsafe { Layout::from_size_align_unchecked(size, align) };
    let counted = fast_counted
        || STATE
            .try_with(|t| {
                if t.is_owner() {
                    // An owner whose free countdown was short: nothing counted.
                    let b = t.block.get();
                    b.count_free();
                    b.rearm_free(size as u64);
                    return true;
                }
                if t.is_busy() {
                    META_LIVE.fetch_sub(size as i64, Ordering::Relaxed);
                    false
                } else {
                    SHARED.on_free_shared(size as u64);
                    true
                }
            })
            .unwrap_or(true);
    if counted && table::maybe_sampled(p as usize) {
        forget_sample(p as usize);
    }
    // SAFETY: forwarded from the caller's contract.
    unsafe { inner.dealloc(p, layout) }
}

// ---------------------------------------------------------------------------
// realloc

/// `realloc`: for an owner and a block that cannot be a sample, the inner
/// allocator and the countdowns; everything else is [`realloc_cold`].
///
/// # Safety
/// `GlobalAlloc::realloc`'s contract for `inner`, `ptr`, `layout` and
/// `new_size`.
#[inline]
pub(crate) unsafe fn realloc_entry<A: GlobalAlloc>(
    inner: &A,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    debug_assert!(new_size != 0);
    // Fast path: a thread on the fast path (its fast block is its own,
    // so not inside leakscope) and a block that cannot be a sample.
    let b = STATE.try_with(|t| t.fast.get()).unwrap_or(&PARKED);
    if b.is_owned() && !table::maybe_sampled(ptr as usize) {
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        let q = unsafe { inner.realloc(ptr, layout, new_size) };
        // The block read once above is still this thread's own: only
        // this thread's exit or guard could change that, and neither
        // runs inside an inner allocator's call.
        if !q.is_null()
            && !b.fast_realloc(layout.size(), new_size)
            && count_realloc_slow(layout.size(), new_size)
        {
            record_sample(q as usize, new_size as u64, None);
        }
        return q;
    }
    // SAFETY: forwarded from the caller's contract.
    unsafe { realloc_cold(inner, ptr, layout, new_size) }
}

/// `realloc` off the fast path: under the guard (uncounted, metadata), not
/// an owner, or of a block that may be a live sample (taken out of the
/// table before the call, put back if it fails, moved if it succeeds).
///
/// # Safety
/// `GlobalAlloc::realloc`'s contract for `inner`, `ptr`, `layout` and
/// `new_size`.
#[cold]
#[inline(never)]
unsafe fn realloc_cold<A: GlobalAlloc>(
    inner: &A,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    if guard::is_entered() {
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        let q = unsafe { inner.realloc(ptr, layout, new_size) };
        if !q.is_null() {
            META_LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        return q;
    }
    let taken = if table::maybe_sampled(ptr as usize) {
        take_sample(ptr as usize)
    } else {
        None
    };
    // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
    let q = unsafe { inner.realloc(ptr, layout, new_size) };
    if q.is_null() {
        // The old block is still valid and still the user's.
        if let Some(e) = taken {
            restore_sample(e);
        }
        return q;
    }
    let fast = STATE.try_with(|t| t.fast.get().fast_realloc(layout.size(), new_size));
    let sampled = fast != Ok(true) && count_realloc_slow(layout.size(), new_size);
    match (taken, sampled) {
        (None, false) => {}
        (None, true) => record_sample(q as usize, new_size as u64, None),
        (Some(e), true) => {
            moved_sample(&e);
            // Keep the age: the data is the same allocation, grown or shrunk.
            record_resized_sample(q as usize, new_size as u64, &e);
        }
        (Some(e), false) => moved_sample(&e),
    }
    q
}

/// The sampled path for a sample's block that a realloc resized (`old`:
/// its previous sample): like [`record_sample`], keeping the birth and
/// carrying the growth count and time (one more, now, if it grew).
#[cold]
#[inline(never)]
fn record_resized_sample(addr: usize, size: u64, old: &Live) {
    let _g = Guard::enter();
    table::SAMPLES.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0usize; MAX_FRAMES];
    let n = stack::capture(&mut buf);
    let w = weight(size, current_rate());
    let now = crate::clock::now_ns();
    let grown = if size > old.size {
        (old.grown.saturating_add(1), now)
    } else {
        (old.grown, old.last_grown)
    };
    let mut t = table::lock();
    t.record_alloc_grown(addr, size, w, &buf[..n], old.birth, grown, now);
}

/// Counts a realloc off the fast path (never under the guard: both callers
/// checked that first); whether the new block is sampled.
#[cold]
#[inline(never)]
fn count_realloc_slow(old: usize, new: usize) -> bool {
    STATE
        .try_with(|t| {
            if t.is_fresh() {
                init_thread(t);
            }
            if t.is_owner() {
                // The new size is folded in by the sampling decision.
                let b = t.block.get();
                b.count_realloc();
                b.add_freed(old as u64);
            } else {
                SHARED.on_realloc_shared(old as u64, new as u64);
            }
            sample_decision(t, new)
        })
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------
// The sampling decision and the sampled path

/// The slow path's sampling decision for an allocation of `size` bytes:
/// whether it is sampled. Checks the peak every `PEAK_CHECK_BYTES` and, for
/// an owner, folds its countdown (and the `size` bytes at hand, which the
/// fast path did not take) and re-arms it; other threads stay parked (see
/// `guard.rs`).
#[cold]
#[inline(never)]
fn sample_decision(t: &ThreadState, size: usize) -> bool {
    let size = size as i64;
    let owner = t.is_owner();
    let b = t.block.get();
    // Bytes allocated since the countdown was armed, this one included (a
    // parked thread is re-decided on every allocation).
    let consumed = if owner {
        b.alloc_consumed().wrapping_add(size)
    } else {
        size
    };
    let epoch = EPOCH.load(Ordering::Acquire);
    let rate = current_rate();
    let mut rng = t.rng.get();
    let mut left = if t.epoch.get() != epoch {
        // New rate or seed (or the thread's first allocation): start afresh.
        t.epoch.set(epoch);
        let salt = t.block.get() as *const Block as u64 ^ (t as *const ThreadState as u64);
        sampler::reseed(&mut rng, salt);
        sampler::draw(&mut rng, rate).wrapping_sub(size)
    } else {
        t.sample_left.get().wrapping_sub(consumed)
    };
    let sampled = left < 0 && rate != 0;
    if left < 0 {
        // Memoryless: after a sample the next distance is drawn afresh.
        left = sampler::draw(&mut rng, rate);
    }
    t.rng.set(rng);
    t.sample_left.set(left);
    let since = t.since_peak.get().saturating_add(consumed);
    if since >= counters::PEAK_CHECK_BYTES {
        t.since_peak.set(0);
        counters::check_peak();
    } else {
        t.since_peak.set(since);
    }
    if owner {
        let arm = left.clamp(0, counters::PEAK_CHECK_BYTES);
        b.rearm_alloc(size as u64, arm);
    }
    sampled
}

/// The sampled path: capture the stack (before taking the lock), then
/// record the sample.
#[cold]
#[inline(never)]
fn record_sample(addr: usize, size: u64, birth: Option<u64>) {
    let _g = Guard::enter();
    table::SAMPLES.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0usize; MAX_FRAMES];
    let n = stack::capture(&mut buf);
    let w = weight(size, current_rate());
    let birth = birth.unwrap_or_else(crate::clock::now_ns);
    let mut t = table::lock();
    t.record_alloc(addr, size, w, &buf[..n], birth);
}

/// A sampled block was freed: its lifetime goes into its stack's histogram.
#[cold]
#[inline(never)]
fn forget_sample(addr: usize) {
    let _g = Guard::enter();
    let now = crate::clock::now_ns();
    let mut t = table::lock();
    if let Some(e) = t.take_live(addr) {
        t.record_free(&e, now);
    }
}

/// Takes a sample out of the live table before a realloc of its block.
#[cold]
#[inline(never)]
fn take_sample(addr: usize) -> Option<Live> {
    let _g = Guard::enter();
    // A local, declared after `_g`, so dropped before it: as a tail
    // expression's temporary (edition 2021) the tables' guard would outlive
    // `_g`, and a signal handler sampling in between would wait for the
    // tables' lock on its own thread.
    let mut t = table::lock();
    t.take_live(addr)
}

/// Puts back a sample taken out before a realloc that failed.
#[cold]
#[inline(never)]
fn restore_sample(e: Live) {
    let _g = Guard::enter();
    table::lock().restore_live(e);
}

/// A sample's block moved in a realloc: forgotten without a lifetime.
#[cold]
#[inline(never)]
fn moved_sample(e: &Live) {
    let _g = Guard::enter();
    table::lock().record_moved(e);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    /// The fast path took a free's bytes, leaving its countdown shorter than
    /// the size, and the filter sent the free on to the cold path: the cold
    /// path must not count it a second time.
    #[test]
    fn filter_hit_free_is_counted_once_even_with_a_short_countdown() {
        let b = STATE.with(|t| {
            if t.is_fresh() {
                init_thread(t);
            }
            assert!(t.is_owner(), "the test thread owns a block");
            t.block.get()
        });
        b.rearm_alloc(0, 1 << 20);
        b.free_left.store(100, Ordering::Relaxed);
        let before = b.read(u32::MAX);
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: a valid non-zero layout; the block goes back below.
        let p = unsafe { System.alloc(layout) };
        assert!(!p.is_null());
        assert!(b.fast_free(64)); // 36 left: less than the size
                                  // SAFETY: `p` was allocated by `System` with `layout` and is freed
                                  // once, here.
        unsafe { free_cold(p, 64, 8, &System, true) };
        let after = b.read(u32::MAX);
        assert_eq!(after.frees - before.frees, 1, "frees");
        assert_eq!(after.freed_bytes - before.freed_bytes, 64, "freed bytes");
        // A short countdown with nothing counted yet is counted by the cold path.
        // SAFETY: a valid non-zero layout; the block goes back below.
        let p = unsafe { System.alloc(layout) };
        assert!(!p.is_null());
        assert!(!b.fast_free(64));
        // SAFETY: `p` was allocated by `System` with `layout` and is freed
        // once, here.
        unsafe { free_cold(p, 64, 8, &System, false) };
        let last = b.read(u32::MAX);
        assert_eq!(last.frees - after.frees, 1, "frees");
        assert_eq!(last.freed_bytes - after.freed_bytes, 64, "freed bytes");
        assert!(b.free_left.load(Ordering::Relaxed) > 1 << 61, "re-armed");
    }
}
