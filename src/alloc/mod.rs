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
//!   ([`HeapStats::dropped_samples`](crate::HeapStats::dropped_samples)), reported in
//!   [`HeapStats::metadata_bytes`](crate::HeapStats::metadata_bytes).
//! - Alignment, `realloc` and `alloc_zeroed` semantics are the inner
//!   allocator's: those calls are forwarded, never emulated.
//!
//! # Signal handlers
//!
//! A signal handler may allocate and free (crash reporters and CPU
//! profilers do) when the inner allocator allows it: leakscope's part is
//! async-signal-safe in this sense. A handler's calls are counted exactly
//! whatever instruction of its thread's allocator path they interrupt: in
//! optimised builds, the fast path's countdown updates and counts are
//! single `sub`/`inc` instructions on memory (`counters.rs`; unoptimised
//! builds split them into a load and a store, and a handler's call in
//! between can be lost from the totals); a handler that interrupts its
//! thread's fold counts into the shared block instead of folding again; a
//! handler that interrupts the entry into the re-entrancy guard counts as
//! the user, both ways (`guard.rs`); lock guards never outlive the
//! re-entrancy guard (so a handler never waits for a lock its own thread
//! holds: inside the guard, a handler's calls are metadata and take no
//! lock); a thread's exit parks it before its block goes back to the pool.
//! `tests/alloc_signal_storm.rs` holds it to that.
//!
//! Not supported: a handler that allocates or frees while its thread is
//! inside the *inner* allocator (glibc's malloc is not async-signal-safe:
//! it can deadlock or corrupt its heap by itself); and a handler that
//! calls a leakscope reader (`snapshot`, exporters), which take locks.
//!
//! All tracking state is process-wide: one `TrackingAllocator` should be the
//! `#[global_allocator]`.
//!
//! # Files, bottom layer first
//!
//! Each file depends only on files above it in this list (and on the
//! crate's `histogram`, `clock` and `snapshot` types); the `GlobalAlloc`
//! impl below is the top.
//!
//! - `counters.rs`: per-thread counter blocks; the countdowns that are the
//!   byte counters; the sequence lock readers use.
//! - `guard.rs`: the thread's allocator state, the re-entrancy guard, and
//!   the thread state machine's one diagram.
//! - `sampler.rs`: the sampling rate and the Poisson draws.
//! - `unwind/`: the caching unwinder (reads only the stack and the loaded
//!   objects).
//! - `stack.rs`: stack capture into a `MAX_FRAMES` buffer, and
//!   symbolization.
//! - `table.rs`: interned stacks, live samples, the sample filter.
//! - `fork.rs`: the `fork()` protocol and the lock order, in one place.
//! - `thread.rs`: a thread's first allocation and its exit.
//! - `path.rs`: alloc, free and realloc: entry, fast path, cold paths.
//! - `heap_snapshot.rs`: reading: totals and the heap snapshot.
//!
//! Why no concurrent hash map (e.g. `dashmap`) on the allocator path: it
//! allocates (through this allocator) and locks on every operation; the
//! fixed tables behind one mutex are taken only on the sampled path.

use core::alloc::{GlobalAlloc, Layout};
use std::alloc::System;

mod counters;
mod fork;
mod growth;
pub(crate) mod guard;
mod heap_snapshot;
mod path;
mod resident;
mod sampler;
mod stack;
mod table;
mod thread;
mod unwind;

pub use self::sampler::{sample_rate, set_sample_rate, DEFAULT_SAMPLE_RATE};

pub(crate) use self::fork::ForkGuard;
pub(crate) use self::growth::GrowthSeries;
pub(crate) use self::heap_snapshot::as_metadata;
pub(crate) use self::heap_snapshot::{
    heap_metrics, heap_profile_view, heap_snapshot, heap_stats, last_table_read, metadata_live_raw,
    overflow_frames, thread_blocks_high_water,
};
pub(crate) use self::resident::fixed_tables;
pub(crate) use self::sampler::set_sample_seed;
pub(crate) use self::stack::{stack_cache_stats, CachedStack};

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
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which
        // is `alloc_entry`'s for the layout's fields.
        unsafe { path::alloc_entry::<A, false>(layout.size(), layout.align(), &self.inner) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract,
        // which is `alloc_entry`'s for the layout's fields.
        unsafe { path::alloc_entry::<A, true>(layout.size(), layout.align(), &self.inner) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract, which
        // is `free_entry`'s.
        unsafe { path::free_entry(&self.inner, ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract, which
        // is `realloc_entry`'s.
        unsafe { path::realloc_entry(&self.inner, ptr, layout, new_size) }
    }
}
