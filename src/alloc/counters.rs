//! Exact allocation totals without shared read-modify-writes on the fast path.
//!
//! Each thread owns a cache-line-aligned [`Block`] of counters taken from a
//! fixed pool. The owner updates its block with a relaxed load followed by a
//! relaxed store (no `lock`-prefixed instruction, no cache line shared with
//! another writer); readers sum every block ever handed out.
//!
//! Blocks are never zeroed: when a thread exits, its block goes back to the
//! pool *with its counts*, and the next thread that takes it keeps adding to
//! them. Sums therefore stay exact across thread churn without any folding
//! step that could race with a reader, and the pool bounds the memory a
//! service with a dynamic thread pool can make us use.
//!
//! Peak live bytes are read from the same blocks by [`check_peak`], which
//! each thread's slow path calls every [`PEAK_CHECK_BYTES`] it allocates.
//!
//! ```text
//!  thread state:  FRESH ──first alloc──► ACTIVE(block) ──TLS teardown──► EXITED
//!                   │                        ▲                              │
//!                   └── pool empty ──► ACTIVE(shared block, atomic adds) ◄──┘
//! ```
//!
//! Threads that find the pool empty, and allocations made after a thread's
//! thread-local destructors ran, count into one shared block with atomic
//! `fetch_add`: still exact, only slower.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Number of per-thread blocks (threads alive at once beyond this share one
/// atomic block).
pub(crate) const MAX_BLOCKS: usize = 1024;

/// Bytes a thread allocates between two peak checks ([`check_peak`]).
pub(crate) const PEAK_CHECK_BYTES: i64 = 256 * 1024;

/// One thread's counters.
#[repr(align(128))]
#[derive(Debug)]
pub(crate) struct Block {
    in_use: AtomicBool,
    pub(crate) allocs: AtomicU64,
    pub(crate) frees: AtomicU64,
    pub(crate) reallocs: AtomicU64,
    pub(crate) alloc_bytes: AtomicU64,
    pub(crate) freed_bytes: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_BLOCK: Block = Block {
    in_use: AtomicBool::new(false),
    allocs: AtomicU64::new(0),
    frees: AtomicU64::new(0),
    reallocs: AtomicU64::new(0),
    alloc_bytes: AtomicU64::new(0),
    freed_bytes: AtomicU64::new(0),
};

static BLOCKS: [Block; MAX_BLOCKS] = [EMPTY_BLOCK; MAX_BLOCKS];
/// One past the highest block index ever handed out: readers sum `0..HIGH`.
static HIGH: AtomicUsize = AtomicUsize::new(0);
/// The block shared (with atomic adds) by threads that own none.
pub(crate) static SHARED: Block = EMPTY_BLOCK;
/// Set once anything was counted: the allocator is installed and in use.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Highest live-bytes reading ever taken.
static PEAK: AtomicU64 = AtomicU64::new(0);

/// Adds `n` to a counter only this thread writes: load + store, no RMW.
#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl Block {
    /// Counts an allocation of `size` bytes on the owner's block: plain
    /// load + store, no `lock` prefix.
    #[inline(always)]
    pub(crate) fn on_alloc(&self, size: u64) {
        bump(&self.allocs, 1);
        bump(&self.alloc_bytes, size);
    }

    /// Counts a free of `size` bytes on the owner's block.
    #[inline(always)]
    pub(crate) fn on_free(&self, size: u64) {
        bump(&self.frees, 1);
        bump(&self.freed_bytes, size);
    }

    /// Counts a realloc from `old` to `new` bytes on the owner's block.
    #[inline(always)]
    pub(crate) fn on_realloc(&self, old: u64, new: u64) {
        bump(&self.reallocs, 1);
        bump(&self.alloc_bytes, new);
        bump(&self.freed_bytes, old);
    }

    /// Counts an allocation on a block shared between threads.
    pub(crate) fn on_alloc_shared(&self, size: u64) {
        self.allocs.fetch_add(1, Ordering::Relaxed);
        self.alloc_bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// Counts a free on a block shared between threads.
    pub(crate) fn on_free_shared(&self, size: u64) {
        self.frees.fetch_add(1, Ordering::Relaxed);
        self.freed_bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// Counts a realloc on a block shared between threads.
    pub(crate) fn on_realloc_shared(&self, old: u64, new: u64) {
        self.reallocs.fetch_add(1, Ordering::Relaxed);
        self.alloc_bytes.fetch_add(new, Ordering::Relaxed);
        self.freed_bytes.fetch_add(old, Ordering::Relaxed);
    }
}

/// Reads the live bytes (a racy sum of all blocks) and raises the peak.
/// Called from the slow path every [`PEAK_CHECK_BYTES`] a thread allocates,
/// so the reported peak misses the true one by at most
/// `threads × PEAK_CHECK_BYTES`, and never overstates it by more than the
/// racy sum's skew.
#[cold]
pub(crate) fn check_peak() -> u64 {
    let high = HIGH.load(Ordering::Acquire).min(MAX_BLOCKS);
    let (mut a, mut f) = (0u64, 0u64);
    for b in BLOCKS[..high].iter().chain(core::iter::once(&SHARED)) {
        a = a.wrapping_add(b.alloc_bytes.load(Ordering::Relaxed));
        f = f.wrapping_add(b.freed_bytes.load(Ordering::Relaxed));
    }
    let live = a.saturating_sub(f);
    PEAK.fetch_max(live, Ordering::Relaxed);
    live
}

/// Takes a free block from the pool, or `None` when all are in use.
pub(crate) fn acquire() -> Option<&'static Block> {
    ACTIVE.store(true, Ordering::Relaxed);
    for (i, b) in BLOCKS.iter().enumerate() {
        if !b.in_use.load(Ordering::Relaxed)
            && b.in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            HIGH.fetch_max(i + 1, Ordering::Release);
            return Some(b);
        }
    }
    None
}

/// One past the highest block index ever handed out.
pub(crate) fn high_water() -> usize {
    HIGH.load(Ordering::Acquire)
}

/// Returns a block to the pool (its counts stay in the sums).
pub(crate) fn release(b: &'static Block) {
    b.in_use.store(false, Ordering::Release);
}

/// Whether the allocator is installed and has counted anything.
pub(crate) fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Marks the allocator as in use (for threads counting into [`SHARED`]).
pub(crate) fn mark_active() {
    ACTIVE.store(true, Ordering::Relaxed);
}

/// Summed totals.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    pub(crate) reallocs: u64,
    pub(crate) alloc_bytes: u64,
    pub(crate) freed_bytes: u64,
    pub(crate) peak: u64,
}

/// Sums every block. Exact at a quiet point.
pub(crate) fn totals() -> Totals {
    let high = HIGH.load(Ordering::Acquire).min(MAX_BLOCKS);
    let mut t = Totals::default();
    for b in BLOCKS[..high].iter().chain(core::iter::once(&SHARED)) {
        t.allocs = t.allocs.wrapping_add(b.allocs.load(Ordering::Relaxed));
        t.frees = t.frees.wrapping_add(b.frees.load(Ordering::Relaxed));
        t.reallocs = t.reallocs.wrapping_add(b.reallocs.load(Ordering::Relaxed));
        t.alloc_bytes = t
            .alloc_bytes
            .wrapping_add(b.alloc_bytes.load(Ordering::Relaxed));
        t.freed_bytes = t
            .freed_bytes
            .wrapping_add(b.freed_bytes.load(Ordering::Relaxed));
    }
    let live = t.alloc_bytes.saturating_sub(t.freed_bytes);
    // An exact reading can exceed the published approximation: keep it.
    PEAK.fetch_max(live, Ordering::Relaxed);
    t.peak = PEAK.load(Ordering::Relaxed);
    t
}

/// Bytes of the counter pool itself (metadata).
pub(crate) const POOL_BYTES: usize = core::mem::size_of::<[Block; MAX_BLOCKS]>();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_and_shared_counting_sum() {
        let b = acquire().expect("pool has free blocks in a fresh test process");
        let before = totals();
        b.on_alloc(100);
        b.on_alloc(50);
        b.on_free(100);
        b.on_realloc(50, 80);
        SHARED.on_alloc_shared(7);
        let after = totals();
        assert_eq!(after.allocs - before.allocs, 3);
        assert_eq!(after.frees - before.frees, 1);
        assert_eq!(after.reallocs - before.reallocs, 1);
        assert_eq!(after.alloc_bytes - before.alloc_bytes, 100 + 50 + 80 + 7);
        assert_eq!(after.freed_bytes - before.freed_bytes, 100 + 50);
        // A released block keeps its counts in the sum.
        release(b);
        assert_eq!(totals().allocs, after.allocs);

        // A peak check sees live growth.
        let b = acquire().expect("free block");
        b.on_alloc(10 << 20);
        assert!(check_peak() >= 10 << 20);
        assert!(PEAK.load(Ordering::Relaxed) >= 10 << 20);
        b.on_free(10 << 20);
        release(b);
    }
}
