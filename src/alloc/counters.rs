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
//! ```text
//!  thread state:  FRESH ──first alloc──► ACTIVE(block) ──TLS teardown──► EXITED
//!                   │                        ▲                              │
//!                   └── pool empty ──► ACTIVE(shared block, atomic adds) ◄──┘
//! ```
//!
//! Threads that find the pool empty, and allocations made after a thread's
//! thread-local destructors ran, count into one shared block with atomic
//! `fetch_add`: still exact, only slower.

use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Number of per-thread blocks (threads alive at once beyond this share one
/// atomic block).
pub(crate) const MAX_BLOCKS: usize = 1024;

/// Net live bytes a thread may accumulate before publishing them to the
/// global live counter used for the peak (see [`Block::add_live`]).
pub(crate) const PEAK_FLUSH_BYTES: i64 = 256 * 1024;

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
    /// Net bytes not yet published to [`GLOBAL_LIVE`] (owner-only).
    unflushed: AtomicI64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_BLOCK: Block = Block {
    in_use: AtomicBool::new(false),
    allocs: AtomicU64::new(0),
    frees: AtomicU64::new(0),
    reallocs: AtomicU64::new(0),
    alloc_bytes: AtomicU64::new(0),
    freed_bytes: AtomicU64::new(0),
    unflushed: AtomicI64::new(0),
};

static BLOCKS: [Block; MAX_BLOCKS] = [EMPTY_BLOCK; MAX_BLOCKS];
/// One past the highest block index ever handed out: readers sum `0..HIGH`.
static HIGH: AtomicUsize = AtomicUsize::new(0);
/// The block shared (with atomic adds) by threads that own none.
pub(crate) static SHARED: Block = EMPTY_BLOCK;
/// Set once anything was counted: the allocator is installed and in use.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Sum of published net live bytes (approximate live bytes, for the peak).
static GLOBAL_LIVE: AtomicI64 = AtomicI64::new(0);
/// Highest value [`GLOBAL_LIVE`] (or an exact reading) ever reached.
static PEAK: AtomicU64 = AtomicU64::new(0);

/// Adds `n` to a counter only this thread writes: load + store, no RMW.
#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl Block {
    /// Counts an allocation of `size` bytes. `owned` says whether the caller
    /// is this block's only writer (else atomic adds are used).
    #[inline(always)]
    pub(crate) fn on_alloc(&self, size: u64, owned: bool) {
        if owned {
            bump(&self.allocs, 1);
            bump(&self.alloc_bytes, size);
        } else {
            self.allocs.fetch_add(1, Ordering::Relaxed);
            self.alloc_bytes.fetch_add(size, Ordering::Relaxed);
        }
        self.add_live(size as i64, owned);
    }

    /// Counts a free of `size` bytes.
    #[inline(always)]
    pub(crate) fn on_free(&self, size: u64, owned: bool) {
        if owned {
            bump(&self.frees, 1);
            bump(&self.freed_bytes, size);
        } else {
            self.frees.fetch_add(1, Ordering::Relaxed);
            self.freed_bytes.fetch_add(size, Ordering::Relaxed);
        }
        self.add_live(-(size as i64), owned);
    }

    /// Counts a realloc from `old` to `new` bytes.
    #[inline(always)]
    pub(crate) fn on_realloc(&self, old: u64, new: u64, owned: bool) {
        if owned {
            bump(&self.reallocs, 1);
            bump(&self.alloc_bytes, new);
            bump(&self.freed_bytes, old);
        } else {
            self.reallocs.fetch_add(1, Ordering::Relaxed);
            self.alloc_bytes.fetch_add(new, Ordering::Relaxed);
            self.freed_bytes.fetch_add(old, Ordering::Relaxed);
        }
        self.add_live(new as i64 - old as i64, owned);
    }

    /// Tracks net live bytes for the peak: accumulated privately and
    /// published to the shared counter only once they exceed
    /// ±[`PEAK_FLUSH_BYTES`], so small alloc/free churn never touches a shared
    /// cache line.
    #[inline(always)]
    fn add_live(&self, delta: i64, owned: bool) {
        if !owned {
            publish_live(delta);
            return;
        }
        let u = self.unflushed.load(Ordering::Relaxed).wrapping_add(delta);
        if (-PEAK_FLUSH_BYTES..=PEAK_FLUSH_BYTES).contains(&u) {
            self.unflushed.store(u, Ordering::Relaxed);
        } else {
            self.unflushed.store(0, Ordering::Relaxed);
            publish_live(u);
        }
    }

    /// Publishes whatever net live bytes this block holds (thread exit).
    pub(crate) fn flush(&self) {
        let u = self.unflushed.swap(0, Ordering::Relaxed);
        if u != 0 {
            publish_live(u);
        }
    }
}

#[cold]
fn publish_live(delta: i64) {
    let now = GLOBAL_LIVE.fetch_add(delta, Ordering::Relaxed) + delta;
    if now > 0 {
        PEAK.fetch_max(now as u64, Ordering::Relaxed);
    }
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
    b.flush();
    b.in_use.store(false, Ordering::Release);
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
    pub(crate) active: bool,
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
    t.active = ACTIVE.load(Ordering::Relaxed);
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
        b.on_alloc(100, true);
        b.on_alloc(50, true);
        b.on_free(100, true);
        b.on_realloc(50, 80, true);
        SHARED.on_alloc(7, false);
        let after = totals();
        assert_eq!(after.allocs - before.allocs, 3);
        assert_eq!(after.frees - before.frees, 1);
        assert_eq!(after.reallocs - before.reallocs, 1);
        assert_eq!(after.alloc_bytes - before.alloc_bytes, 100 + 50 + 80 + 7);
        assert_eq!(after.freed_bytes - before.freed_bytes, 100 + 50);
        // A released block keeps its counts in the sum.
        release(b);
        assert_eq!(totals().allocs, after.allocs);

        // Large growth is published at once, so the peak sees it.
        let b = acquire().expect("free block");
        b.on_alloc(10 << 20, true);
        assert!(PEAK.load(Ordering::Relaxed) >= 10 << 20);
        b.on_free(10 << 20, true);
        release(b);
    }
}
