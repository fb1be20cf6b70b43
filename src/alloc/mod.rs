//! The tracking global allocator.
//!
//! [`TrackingAllocator`] wraps any [`GlobalAlloc`] (the system allocator by
//! default) and, on every call:
//!
//! 1. forwards to the inner allocator first for allocations (so a null
//!    return passes through with nothing recorded) and last for frees (so a
//!    sampled block is forgotten before its address can be reused);
//! 2. takes the size from a countdown in the calling thread's counter block
//!    and counts the call there (exact totals, no shared read-modify-write:
//!    the countdowns double as the byte counters, see `counters.rs`);
//! 3. when the allocation countdown has not enough left, the slow path
//!    decides whether the allocation is *sampled* (the countdown runs to the
//!    next sample, at most 256 KiB): its stack is captured into a fixed
//!    buffer, interned, and the block enters the live-sample table with its
//!    birth time and Go's scale factor;
//! 4. on free, one relaxed load of a counting filter tells whether the block
//!    may be a live sample; only then is the table consulted and the
//!    sample's lifetime recorded in its stack's histogram.
//!
//! # Hard rules
//!
//! - No panic and no unwinding out of the `GlobalAlloc` methods.
//! - Re-entrancy: leakscope's own allocations (while recording, symbolizing
//!   or snapshotting) go straight to the inner allocator, uncounted, decided
//!   by a const-initialised thread-local flag (the re-entrancy guard).
//! - Thread exit: allocations during and after thread-local teardown are
//!   counted (into a shared atomic block) and may still be sampled.
//! - The unsampled path takes no lock, does no hash lookup and no atomic
//!   read-modify-write on a cache line shared between threads.
//! - Metadata is bounded: fixed tables with counted overflow
//!   ([`HeapStats::dropped_samples`]), reported in
//!   [`HeapStats::metadata_bytes`].
//! - Alignment, `realloc` and `alloc_zeroed` semantics are the inner
//!   allocator's: those calls are forwarded, never emulated.
//!
//! All tracking state is process-wide: one `TrackingAllocator` should be the
//! `#[global_allocator]`.

pub(crate) mod counters;
pub(crate) mod guard;
mod sampler;
pub(crate) mod table;

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicI64, Ordering};
use core::time::Duration;
use std::alloc::System;
use std::collections::HashMap;

pub use self::sampler::{sample_rate, set_sample_rate, set_sample_seed, DEFAULT_SAMPLE_RATE};

use self::counters::{Block, PARKED, SHARED};
use self::guard::Guard;
use self::guard::{ThreadState, BUSY, EXITED, FRESH, SLOW, STATE};
use self::sampler::{current_rate, weight, EPOCH};

/// Makes the calling thread take the slow path on its next allocation, so a
/// rate or seed change applies to it at once (other threads pick it up
/// within their next `PEAK_CHECK_BYTES` of allocation).
pub(crate) fn rearm_current_thread() {
    let _ = STATE.try_with(|t| {
        // A thread off the fast path (see `guard.rs`) meets the new rate on
        // its next slow path anyway.
        if t.flags.get() == 0 {
            // What the countdown consumed is folded into the totals; armed
            // with 0, it runs out on the next allocation.
            t.block.get().fold(0, 0, Some(0), false);
        }
    });
}
use self::table::{Live, MAX_FRAMES, OVERFLOW_STACK};
use crate::histogram::{bucket_index, Histogram, BUCKETS};
use crate::snapshot::{Frame, HeapSite, HeapSnapshot, HeapStats};

/// A [`GlobalAlloc`] that counts every allocation exactly and samples some
/// with their stacks, birth times and lifetimes.
///
/// # Examples
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();
///
/// fn main() {
///     let v = vec![0u8; 4096];
///     assert!(leakscope::heap_stats().live_bytes >= 4096);
///     drop(v);
/// }
/// ```
///
/// Over another allocator (anything implementing `GlobalAlloc`):
///
/// ```
/// use std::alloc::System;
/// static ALLOC: leakscope::TrackingAllocator<System> = leakscope::TrackingAllocator::new(System);
/// ```
#[derive(Debug, Default)]
pub struct TrackingAllocator<A = System> {
    inner: A,
}

impl TrackingAllocator<System> {
    /// Wraps the system allocator.
    pub const fn system() -> Self {
        TrackingAllocator { inner: System }
    }
}

impl<A> TrackingAllocator<A> {
    /// Wraps `inner` (System, mimalloc, jemalloc, a test allocator...).
    pub const fn new(inner: A) -> Self {
        TrackingAllocator { inner }
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

// SAFETY: every method forwards to the inner allocator with the caller's
// arguments unchanged and returns its result unchanged, so the inner
// allocator's guarantees (alignment, size, zeroing, realloc copying) are the
// ones the caller gets. The bookkeeping around the calls never touches the
// block's memory, never panics and never allocates through `self`.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackingAllocator<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { alloc_entry::<A, false>(layout.size(), layout.align(), &self.inner) }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { alloc_entry::<A, true>(layout.size(), layout.align(), &self.inner) }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let counted = STATE.try_with(|t| t.fast.get().fast_free(layout.size())) == Ok(true);
        if !counted {
            // SAFETY: the caller guarantees `ptr` was allocated by this
            // allocator (hence by `inner`) with `layout`; the cold path
            // forwards to `inner.dealloc`.
            unsafe { free_slow(ptr, layout.size(), layout.align(), &self.inner, false) }
        } else if table::maybe_sampled(ptr as usize) {
            // SAFETY: as above.
            unsafe { free_slow(ptr, layout.size(), layout.align(), &self.inner, true) }
        } else {
            // SAFETY: as above.
            unsafe { self.inner.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        debug_assert!(new_size != 0);
        // Fast path: a thread on the fast path (its fast block is its own,
        // so not inside leakscope) and a block that cannot be a sample.
        let b = STATE.try_with(|t| t.fast.get()).unwrap_or(&PARKED);
        if b.is_owned() && !table::maybe_sampled(ptr as usize) {
            // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
            let q = unsafe { self.inner.realloc(ptr, layout, new_size) };
            // The block read once above is still this thread's own: only
            // this thread's exit or guard could change that, and neither
            // runs inside an inner allocator's call.
            if !q.is_null()
                && !b.fast_realloc(layout.size(), new_size)
                && realloc_slow(layout.size(), new_size)
            {
                record_sample(q as usize, new_size as u64, None);
            }
            return q;
        }
        // SAFETY: forwarded from the caller's contract.
        unsafe { realloc_slow_path(&self.inner, ptr, layout, new_size) }
    }
}

/// `realloc` off the fast path: under the guard (uncounted, metadata), off
/// the fast path, or of a block that may be a live sample.
///
/// # Safety
/// `GlobalAlloc::realloc`'s contract for `inner`, `ptr`, `layout` and
/// `new_size`.
#[cold]
#[inline(never)]
unsafe fn realloc_slow_path<A: GlobalAlloc>(
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
    on_realloc(q, layout.size(), new_size, taken);
    q
}

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
unsafe fn alloc_entry<A: GlobalAlloc, const ZEROED: bool>(
    size: usize,
    align: usize,
    inner: &A,
) -> *mut u8 {
    if align <= 16 && align <= size {
        // SAFETY: forwarded from the caller's contract.
        unsafe { alloc_body::<A, ZEROED>(size, align, inner) }
    } else {
        // SAFETY: forwarded from the caller's contract.
        unsafe { alloc_other::<A, ZEROED>(size, align, inner) }
    }
}

/// [`alloc_entry`] for large alignments (see there).
///
/// # Safety
/// As for [`alloc_entry`].
#[cold]
#[inline(never)]
unsafe fn alloc_other<A: GlobalAlloc, const ZEROED: bool>(
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
        on_alloc(p, size);
    }
    p
}

// ---------------------------------------------------------------------------
// Per-thread state (see `guard.rs` for the flags' state machine).

thread_local! {
    /// Returns the thread's counter block to the pool when the thread exits.
    static EXIT_HOOK: ExitHook = const { ExitHook };
}

struct ExitHook;

impl Drop for ExitHook {
    fn drop(&mut self) {
        let _ = STATE.try_with(|t| {
            let f = t.flags.get();
            if f & SLOW == 0 {
                let b = t.block.get();
                // Countdowns folded into the totals: the block's next owner
                // starts from clean countdowns.
                b.fold(0, 0, Some(0), true);
                counters::release(b);
            }
            t.block.set(&SHARED);
            t.fast.set(&PARKED);
            t.flags.set((f & BUSY) | SLOW | EXITED);
        });
    }
}

/// Takes a counter block for a thread's first allocation.
#[cold]
#[inline(never)]
fn init_thread(t: &ThreadState) {
    let taken = {
        // Registering the exit hook may allocate (thread-local destructor list).
        let _g = Guard::enter();
        counters::mark_active();
        table::register_fork_handlers();
        if EXIT_HOOK.try_with(|_| ()).is_err() {
            // Thread-local teardown has begun: count into the shared block.
            None
        } else {
            Some(counters::acquire())
        }
    };
    // After the guard is gone, so that it cannot restore a stale state. The
    // allocation countdown is armed by the slow path that follows.
    let keep = t.flags.get() & BUSY;
    match taken {
        None => t.flags.set(keep | SLOW | EXITED),
        Some(Some(b)) => {
            b.fold(0, 0, Some(0), true);
            t.block.set(b);
            t.flags.set(keep);
            if keep == 0 {
                t.fast.set(b);
            }
        }
        Some(None) => t.flags.set(keep | SLOW),
    }
}

/// leakscope's own live bytes allocated under the guard (metadata).
static META_LIVE: AtomicI64 = AtomicI64::new(0);

/// The slow path's sampling decision for an allocation of `size` bytes:
/// whether it is sampled. Checks the peak every `PEAK_CHECK_BYTES` and, for a
/// thread on the fast path, folds its countdown (and the `size` bytes at
/// hand, which the fast path did not take) and re-arms it; other threads
/// stay parked (see `guard.rs`).
#[cold]
#[inline(never)]
fn sample_decision_slow(t: &ThreadState, size: usize) -> bool {
    let size = size as i64;
    let owner = t.flags.get() == 0;
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
        b.fold(size as u64, 0, Some(arm), b.free_low());
    }
    sampled
}

/// The fast path: the size taken from the countdown of the thread's fast
/// block (which counts the bytes too), and one count. Everything else is
/// `alloc_slow`.
#[inline(always)]
fn on_alloc(p: *mut u8, size: usize) {
    let fast = STATE.try_with(|t| t.fast.get().fast_alloc(size));
    if fast != Ok(true) {
        alloc_slow(p, size);
    }
}

/// Guarded, first, shared-block or exiting allocations, and the allocation
/// that runs a fast-path thread's countdown out.
#[cold]
#[inline(never)]
fn alloc_slow(p: *mut u8, size: usize) {
    let sampled = STATE.try_with(|t| {
        let f = t.flags.get();
        if f & BUSY != 0 {
            META_LIVE.fetch_add(size as i64, Ordering::Relaxed);
            return false;
        }
        if f & FRESH != 0 {
            init_thread(t);
        }
        if t.flags.get() == 0 {
            // The bytes are folded in by the sampling decision.
            t.block.get().count(1, 0, 0);
        } else {
            SHARED.on_alloc_shared(size as u64);
        }
        sample_decision_slow(t, size)
    });
    if let Ok(true) = sampled {
        record_sample(p as usize, size as u64, None);
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
unsafe fn free_slow<A: GlobalAlloc>(
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
                let f = t.flags.get();
                if f == 0 {
                    // An owner whose free countdown was short: nothing counted.
                    let b = t.block.get();
                    b.count(0, 1, 0);
                    b.fold(0, size as u64, None, true);
                    return true;
                }
                if f & BUSY != 0 {
                    META_LIVE.fetch_sub(size as i64, Ordering::Relaxed);
                    false
                } else {
                    SHARED.on_free_shared(size as u64);
                    true
                }
            })
            .unwrap_or(true);
    if counted && table::maybe_sampled(p as usize) {
        free_sample(p as usize);
    }
    // SAFETY: forwarded from the caller's contract.
    unsafe { inner.dealloc(p, layout) }
}

#[inline(always)]
fn on_realloc(q: *mut u8, old: usize, new: usize, taken: Option<Live>) {
    let fast = STATE.try_with(|t| t.fast.get().fast_realloc(old, new));
    let sampled = fast != Ok(true) && realloc_slow(old, new);
    match (taken, sampled) {
        (None, false) => {}
        (None, true) => record_sample(q as usize, new as u64, None),
        (Some(e), true) => {
            moved_sample(&e);
            // Keep the age: the data is the same allocation, grown or shrunk.
            record_sample(q as usize, new as u64, Some(e.birth));
        }
        (Some(e), false) => moved_sample(&e),
    }
}

/// Counts a realloc off the fast path (never under the guard: `realloc`
/// checks that first); whether the new block is sampled.
#[cold]
#[inline(never)]
fn realloc_slow(old: usize, new: usize) -> bool {
    STATE
        .try_with(|t| {
            if t.flags.get() & FRESH != 0 {
                init_thread(t);
            }
            if t.flags.get() == 0 {
                // The new size is folded in by the sampling decision.
                let b = t.block.get();
                b.count(0, 0, 1);
                b.fold(0, old as u64, None, b.free_low());
            } else {
                SHARED.on_realloc_shared(old as u64, new as u64);
            }
            sample_decision_slow(t, new)
        })
        .unwrap_or(false)
}

/// The sampled path: capture the stack (before taking the lock), then
/// record the sample.
#[cold]
#[inline(never)]
fn record_sample(addr: usize, size: u64, birth: Option<u64>) {
    let _g = Guard::enter();
    table::SAMPLES.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0usize; MAX_FRAMES];
    let n = crate::stack::capture(&mut buf);
    let w = weight(size, current_rate());
    let birth = birth.unwrap_or_else(crate::clock::now_ns);
    let mut t = table::lock();
    t.record_alloc(addr, size, w, &buf[..n], birth);
}

#[cold]
#[inline(never)]
fn free_sample(addr: usize) {
    let _g = Guard::enter();
    let now = crate::clock::now_ns();
    let mut t = table::lock();
    if let Some(e) = t.take_live(addr) {
        t.record_free(&e, now);
    }
}

#[cold]
#[inline(never)]
fn take_sample(addr: usize) -> Option<Live> {
    let _g = Guard::enter();
    table::lock().take_live(addr)
}

#[cold]
#[inline(never)]
fn restore_sample(e: Live) {
    let _g = Guard::enter();
    table::lock().restore_live(e);
}

#[cold]
#[inline(never)]
fn moved_sample(e: &Live) {
    let _g = Guard::enter();
    table::lock().record_moved(e);
}

// ---------------------------------------------------------------------------
// Reading.

/// How many per-thread counter blocks have ever been in use at once (the
/// pool's high-water mark, at most 1024). Threads that exit return their
/// block, so a service that creates threads forever stays at its peak
/// thread count. Diagnostics for tests and dashboards.
pub fn thread_blocks_high_water() -> usize {
    counters::high_water()
}

pub(crate) fn heap_stats() -> HeapStats {
    let t = counters::totals();
    let live_samples = {
        let _g = Guard::enter();
        table::lock().live_count as u64
    };
    HeapStats {
        allocations: t.allocs,
        frees: t.frees,
        reallocs: t.reallocs,
        allocated_bytes: t.alloc_bytes,
        freed_bytes: t.freed_bytes,
        live_bytes: t.alloc_bytes.saturating_sub(t.freed_bytes),
        live_allocations: t.allocs.saturating_sub(t.frees),
        peak_live_bytes: t.peak,
        sample_rate: current_rate(),
        samples: table::SAMPLES.load(Ordering::Relaxed),
        live_samples,
        dropped_samples: table::DROPPED.load(Ordering::Relaxed),
        system_unwinds: crate::unwind::counts().1,
        metadata_bytes: metadata_bytes(),
    }
}

fn metadata_bytes() -> u64 {
    let dynamic = META_LIVE.load(Ordering::Relaxed).max(0) as u64;
    (table::TABLE_BYTES + counters::POOL_BYTES) as u64 + dynamic + crate::unwind::mapped_bytes()
}

/// Builds the heap part of a snapshot. The work (copying the tables,
/// grouping, symbolizing) runs under the guard, in leakscope's metadata
/// memory; the result is then cloned out into the caller's memory.
pub(crate) fn heap_snapshot(now: u64, min_age: Option<Duration>) -> HeapSnapshot {
    let guarded = {
        let _g = Guard::enter();
        build_heap_snapshot(now, min_age)
    };
    let out = guarded.clone();
    {
        let _g = Guard::enter();
        drop(guarded);
    }
    out
}

/// Live samples of one stack, summed.
#[derive(Default)]
struct LiveAgg {
    objects: f64,
    bytes: f64,
    samples: u64,
    oldest: u64,
    ages: [f64; BUCKETS],
    age_bytes: [f64; BUCKETS],
    age_sum_secs: f64,
}

fn build_heap_snapshot(now: u64, min_age: Option<Duration>) -> HeapSnapshot {
    let stats = heap_stats();
    let min_age_ns = min_age.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    // Copy under the lock, work without it.
    let (stacks, overflow, live) = {
        let t = table::lock();
        let stacks: Vec<(u32, Vec<usize>, table::Agg)> = t
            .stacks
            .iter()
            .enumerate()
            .filter(|(_, s)| s.hash != 0)
            .map(|(i, s)| (i as u32, s.ips[..usize::from(s.depth)].to_vec(), s.agg))
            .collect();
        let live: Vec<Live> = t.live.iter().filter(|e| e.addr != 0).copied().collect();
        (stacks, t.overflow, live)
    };
    let mut by_stack: HashMap<u32, LiveAgg> = HashMap::new();
    for e in &live {
        let age = crate::clock::age_ns(now, e.birth);
        if age < min_age_ns {
            continue;
        }
        let a = by_stack.entry(e.stack).or_default();
        let bytes = e.weight * e.size as f64;
        a.objects += e.weight;
        a.bytes += bytes;
        a.samples += 1;
        a.oldest = a.oldest.max(age);
        let b = bucket_index(age);
        a.ages[b] += e.weight;
        a.age_bytes[b] += bytes;
        a.age_sum_secs += e.weight * age as f64 / 1e9;
    }
    let mut sites = Vec::with_capacity(stacks.len() + 1);
    let overflow_frames = vec![Frame::new("[leakscope: stack table full]", None, None)];
    let all = stacks
        .into_iter()
        .map(|(id, ips, agg)| (id, Some(ips), agg))
        .chain(core::iter::once((OVERFLOW_STACK, None, overflow)));
    for (id, ips, agg) in all {
        let la = by_stack.remove(&id);
        if agg.alloc_objects == 0.0 && la.is_none() {
            continue;
        }
        let frames = match ips {
            Some(ips) => crate::stack::symbolize(&ips),
            None => overflow_frames.clone(),
        };
        sites.push(make_site(frames, &agg, la.unwrap_or_default()));
    }
    sites.sort_by(|a, b| {
        b.live_bytes
            .cmp(&a.live_bytes)
            .then(b.allocated_bytes.cmp(&a.allocated_bytes))
    });
    HeapSnapshot {
        allocations: stats.allocations,
        frees: stats.frees,
        reallocs: stats.reallocs,
        allocated_bytes: stats.allocated_bytes,
        freed_bytes: stats.freed_bytes,
        live_bytes: stats.live_bytes,
        live_allocations: stats.live_allocations,
        peak_live_bytes: stats.peak_live_bytes,
        sample_rate: stats.sample_rate,
        samples: stats.samples,
        dropped_samples: stats.dropped_samples,
        system_unwinds: stats.system_unwinds,
        metadata_bytes: stats.metadata_bytes,
        allocator_active: counters::is_active(),
        sites,
    }
}

fn round(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        x.round() as u64
    } else {
        0
    }
}

fn make_site(frames: Vec<Frame>, agg: &table::Agg, la: LiveAgg) -> HeapSite {
    let lifetimes: Vec<u64> = agg.lifetimes.iter().map(|&c| round(c)).collect();
    let ages: Vec<u64> = la.ages.iter().map(|&c| round(c)).collect();
    HeapSite {
        frames,
        live_bytes: round(la.bytes),
        live_objects: round(la.objects),
        allocated_bytes: round(agg.alloc_bytes),
        allocated_objects: round(agg.alloc_objects),
        live_samples: la.samples,
        oldest_age: (la.samples > 0).then(|| Duration::from_nanos(la.oldest)),
        lifetimes: Histogram::from_counts(&lifetimes, agg.lifetime_sum_secs),
        live_ages: Histogram::from_counts(&ages, la.age_sum_secs),
        live_bytes_by_age: la.age_bytes.iter().map(|&b| round(b)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path took a free's bytes, leaving its countdown shorter than
    /// the size, and the filter sent the free on to the cold path: the cold
    /// path must not count it a second time.
    #[test]
    fn filter_hit_free_is_counted_once_even_with_a_short_countdown() {
        let b = STATE.with(|t| {
            if t.flags.get() & FRESH != 0 {
                init_thread(t);
            }
            assert_eq!(t.flags.get(), 0, "the test thread owns a block");
            t.block.get()
        });
        b.fold(0, 0, Some(1 << 20), false);
        b.free_left.store(100, Ordering::Relaxed);
        let before = b.read(u32::MAX);
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: a valid non-zero layout; the block goes back below.
        let p = unsafe { System.alloc(layout) };
        assert!(!p.is_null());
        assert!(b.fast_free(64)); // 36 left: less than the size
                                  // SAFETY: `p` was allocated by `System` with `layout`.
        unsafe { free_slow(p, 64, 8, &System, true) };
        let after = b.read(u32::MAX);
        assert_eq!(after[1] - before[1], 1, "frees");
        assert_eq!(after[4] - before[4], 64, "freed bytes");
        // A short countdown with nothing counted yet is counted by the cold path.
        // SAFETY: as above.
        let p = unsafe { System.alloc(layout) };
        assert!(!p.is_null());
        assert!(!b.fast_free(64));
        // SAFETY: as above.
        unsafe { free_slow(p, 64, 8, &System, false) };
        let last = b.read(u32::MAX);
        assert_eq!(last[1] - after[1], 1, "frees");
        assert_eq!(last[4] - after[4], 64, "freed bytes");
        assert!(b.free_left.load(Ordering::Relaxed) > 1 << 61, "re-armed");
    }
}
