//! Exact allocation totals without shared read-modify-writes on the fast path.
//!
//! Each thread owns a cache-line-aligned [`Block`] of counters taken from a
//! fixed pool. The owner updates its block with a relaxed load followed by a
//! relaxed store (no `lock`-prefixed instruction, no cache line shared with
//! another writer); readers sum every block ever handed out.
//!
//! The fast path does not add bytes at all: the sampling countdown it must
//! subtract from anyway *is* the byte counter (see [`Block`]); the owner
//! folds it into the totals under a sequence lock on its slow path.
//!
//! Blocks are never zeroed: when a thread exits, its block goes back to the
//! pool *with its counts*, and the next thread that takes it keeps adding to
//! them. Sums therefore stay exact across thread churn, and the pool bounds
//! the memory a service with a dynamic thread pool can make us use.
//!
//! Peak live bytes are read from the same blocks by [`check_peak`], which
//! each thread's slow path calls every [`PEAK_CHECK_BYTES`] it allocates.
//!
//! Threads that find the pool empty, and allocations made after a thread's
//! thread-local destructors ran, count into one shared block ([`SHARED`])
//! with atomic `fetch_add`: still exact, only slower. Which thread counts
//! where is the thread state machine of `guard.rs`.
//!
//! Also here: [`META_LIVE`], leakscope's own live bytes (memory allocated
//! under the re-entrancy guard), counted apart from the user's.

use core::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// leakscope's own live bytes allocated under the guard (metadata), added
/// and subtracted by the allocator's cold paths.
pub(crate) static META_LIVE: AtomicI64 = AtomicI64::new(0);

/// Number of per-thread blocks (threads alive at once beyond this share one
/// atomic block).
pub(crate) const MAX_BLOCKS: usize = 1024;

/// Bytes a thread allocates between two peak checks ([`check_peak`]).
pub(crate) const PEAK_CHECK_BYTES: i64 = 256 * 1024;

/// What a free countdown is armed with: it runs out (and is folded into the
/// totals) after 4 EiB of frees, i.e. never in practice, but the path exists.
pub(crate) const FREE_ARM: i64 = 1 << 62;

/// The countdowns of [`PARKED`].
const PARKED_LEFT: i64 = -1;

/// One thread's counters.
///
/// The byte totals are not added to on the fast path: they are *derived*
/// from the two countdowns the fast path subtracts from anyway. Allocated
/// bytes are `alloc_bytes + alloc_armed - alloc_left` (what was folded in,
/// plus what the current countdown has consumed), and the same for frees.
/// Only the owner writes; it folds and re-arms on its slow path inside a
/// sequence lock (`seq` odd while it writes), so a reader never sees a
/// countdown re-armed but its consumption not yet folded. Everything the
/// fast path writes is one word at a time, and every value a reader can see
/// between two of its stores is a valid count.
#[repr(align(128))]
#[derive(Debug)]
pub(crate) struct Block {
    /// Bytes the owner may still allocate before its next slow path.
    pub(crate) alloc_left: AtomicI64,
    /// Bytes the owner may still free before its free countdown is folded.
    pub(crate) free_left: AtomicI64,
    pub(crate) allocs: AtomicU64,
    pub(crate) frees: AtomicU64,
    pub(crate) reallocs: AtomicU64,
    /// Sequence lock over the next four words (odd while the owner writes).
    seq: AtomicU64,
    alloc_armed: AtomicI64,
    free_armed: AtomicI64,
    /// Folded allocated bytes (plus atomic adds on [`SHARED`]).
    alloc_bytes: AtomicU64,
    /// Folded freed bytes.
    freed_bytes: AtomicU64,
    in_use: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_BLOCK: Block = Block {
    alloc_left: AtomicI64::new(0),
    free_left: AtomicI64::new(0),
    allocs: AtomicU64::new(0),
    frees: AtomicU64::new(0),
    reallocs: AtomicU64::new(0),
    seq: AtomicU64::new(0),
    alloc_armed: AtomicI64::new(0),
    free_armed: AtomicI64::new(0),
    alloc_bytes: AtomicU64::new(0),
    freed_bytes: AtomicU64::new(0),
    in_use: AtomicBool::new(false),
};

pub(super) static BLOCKS: [Block; MAX_BLOCKS] = [EMPTY_BLOCK; MAX_BLOCKS];
/// One past the highest block index ever handed out: readers sum `0..HIGH`.
static HIGH: AtomicUsize = AtomicUsize::new(0);
/// The block shared (with atomic adds, countdowns unused) by threads that
/// own none.
pub(crate) static SHARED: Block = EMPTY_BLOCK;
/// The block every thread that is *not* on the fast path points its fast
/// path at: its countdowns are below zero, so every allocation and free goes
/// to the slow path, which reads the thread's flags. Never written, never
/// summed.
pub(crate) static PARKED: Block = Block {
    alloc_left: AtomicI64::new(PARKED_LEFT),
    free_left: AtomicI64::new(PARKED_LEFT),
    ..EMPTY_BLOCK
};
/// Set once anything was counted: the allocator is installed and in use.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Highest live-bytes reading ever taken.
static PEAK: AtomicU64 = AtomicU64::new(0);

/// Adds `n` to a counter only this thread writes: load + store, no RMW.
#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Takes `n` from a countdown only this thread writes if it has `n` left:
/// whether it had. A countdown below zero ([`PARKED`]) never has.
#[inline(always)]
fn take(c: &AtomicI64, n: usize) -> bool {
    // `n` is a size, at most `isize::MAX`: no wrap.
    let ok = c.load(Ordering::Relaxed) >= n as i64;
    if ok {
        // Loaded afresh and stored minus `n`, which LLVM emits as one
        // `sub [mem], reg` (fewer instructions than reusing the first load,
        // and the x86 memory-operand form of `bump`'s `inc`): a signal
        // handler on this thread that allocates or frees runs before or
        // after it, and its own take is never overwritten. The check may
        // then be stale by what a handler took in between, which can only
        // take the countdown below zero: the consumption it counts is
        // still exact, and the next call takes the slow path.
        c.store(c.load(Ordering::Relaxed) - n as i64, Ordering::Relaxed);
    }
    ok
}

/// The arguments of [`Block::fold`], each named by a public operation.
struct Fold {
    /// Bytes allocated that did not go through the allocation countdown.
    alloc_extra: u64,
    /// Bytes freed that did not go through the free countdown.
    free_extra: u64,
    /// Fold the allocation countdown and arm it with this (`None`: left as
    /// it is).
    arm_alloc: Option<i64>,
    /// Fold the free countdown and re-arm it with [`FREE_ARM`].
    rearm_free: bool,
}

impl Block {
    /// The fast path of an allocation of `size` bytes: if the countdown has
    /// `size` left, takes it (which counts the bytes) and counts the call.
    /// `false`: nothing was written; the slow path counts the call.
    #[inline(always)]
    pub(crate) fn fast_alloc(&self, size: usize) -> bool {
        let ok = take(&self.alloc_left, size);
        if ok {
            bump(&self.allocs, 1);
        }
        ok
    }

    /// The fast path of a free, as [`Block::fast_alloc`].
    #[inline(always)]
    pub(crate) fn fast_free(&self, size: usize) -> bool {
        let ok = take(&self.free_left, size);
        if ok {
            bump(&self.frees, 1);
        }
        ok
    }

    /// The fast path of a realloc, as [`Block::fast_alloc`] for both sizes.
    #[inline(always)]
    pub(crate) fn fast_realloc(&self, old: usize, new: usize) -> bool {
        let ok = self.alloc_left.load(Ordering::Relaxed) >= new as i64
            && self.free_left.load(Ordering::Relaxed) >= old as i64;
        if ok {
            take(&self.alloc_left, new);
            take(&self.free_left, old);
            bump(&self.reallocs, 1);
        }
        ok
    }

    /// Whether this is a thread's own block, not [`PARKED`] (an owned
    /// block's free countdown never goes below zero: it only ever takes
    /// what it has).
    #[inline(always)]
    pub(crate) fn is_owned(&self) -> bool {
        self.free_left.load(Ordering::Relaxed) >= 0
    }

    /// Owner: counts an allocation the fast path did not count.
    #[inline]
    pub(crate) fn count_alloc(&self) {
        bump(&self.allocs, 1);
    }

    /// Owner: counts a free the fast path did not count.
    #[inline]
    pub(crate) fn count_free(&self) {
        bump(&self.frees, 1);
    }

    /// Owner: counts a realloc the fast path did not count.
    #[inline]
    pub(crate) fn count_realloc(&self) {
        bump(&self.reallocs, 1);
    }

    /// Owner: bytes the allocation countdown consumed since it was armed.
    #[inline]
    pub(crate) fn alloc_consumed(&self) -> i64 {
        self.alloc_armed
            .load(Ordering::Relaxed)
            .wrapping_sub(self.alloc_left.load(Ordering::Relaxed))
    }

    /// Owner: whether the free countdown is below half its arming (a fold
    /// re-arms it).
    #[inline]
    fn free_low(&self) -> bool {
        self.free_left.load(Ordering::Relaxed) < FREE_ARM / 2
    }

    /// Owner: starts both countdowns afresh, their consumption folded into
    /// the totals: the allocation countdown armed with 0 (it runs out at the
    /// next allocation, whose slow path arms it), the free countdown with
    /// [`FREE_ARM`]. For a block just taken from the pool or about to go
    /// back to it.
    pub(crate) fn restart(&self) {
        self.fold(Fold {
            alloc_extra: 0,
            free_extra: 0,
            arm_alloc: Some(0),
            rearm_free: true,
        });
    }

    /// Owner: folds the allocation countdown's consumption into the totals
    /// and arms it with 0, so that the next allocation takes the slow path
    /// (which applies a new sampling rate or seed).
    pub(crate) fn expire_alloc(&self) {
        self.fold(Fold {
            alloc_extra: 0,
            free_extra: 0,
            arm_alloc: Some(0),
            rearm_free: false,
        });
    }

    /// Owner, on the allocation slow path: folds the allocation countdown's
    /// consumption and `extra` bytes that did not go through it (the
    /// allocation at hand) into the totals and arms it with `arm`; re-arms
    /// the free countdown too if it is below half.
    pub(crate) fn rearm_alloc(&self, extra: u64, arm: i64) {
        let rearm_free = self.free_low();
        self.fold(Fold {
            alloc_extra: extra,
            free_extra: 0,
            arm_alloc: Some(arm),
            rearm_free,
        });
    }

    /// Owner: adds `bytes` freed that did not go through the free countdown
    /// (a realloc's old size) to the totals, folding and re-arming the free
    /// countdown if it is below half.
    pub(crate) fn add_freed(&self, bytes: u64) {
        let rearm_free = self.free_low();
        self.fold(Fold {
            alloc_extra: 0,
            free_extra: bytes,
            arm_alloc: None,
            rearm_free,
        });
    }

    /// Owner, on the free slow path (the free countdown had less than the
    /// size left): folds the free countdown's consumption and the `bytes`
    /// at hand into the totals and re-arms it.
    pub(crate) fn rearm_free(&self, bytes: u64) {
        self.fold(Fold {
            alloc_extra: 0,
            free_extra: bytes,
            arm_alloc: None,
            rearm_free: true,
        });
    }

    /// Owner: the one writer of the folded totals and the armings, inside
    /// the sequence lock (see [`Block`]).
    fn fold(&self, f: Fold) {
        let Fold {
            alloc_extra,
            free_extra,
            arm_alloc: arm,
            rearm_free,
        } = f;
        if self.seq.load(Ordering::Relaxed) & 1 == 1 {
            // A fold inside the owner's fold: a signal handler's allocation
            // or free interrupted it (only the owner's thread writes).
            // Folding here would hand the interrupted fold stale values and
            // make the sequence go back; the handler's bytes go to the
            // shared block instead (its countdowns stay as they are).
            SHARED.alloc_bytes.fetch_add(alloc_extra, Ordering::Relaxed);
            SHARED.freed_bytes.fetch_add(free_extra, Ordering::Relaxed);
            return;
        }
        // One instruction (a read-modify-write, on the slow path only): a
        // handler runs either before it, and folds whole, or after it, and
        // sees the sequence odd. A load and a store could be split by a
        // handler's whole fold, and the store would take the sequence back.
        self.seq.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        if let Some(arm) = arm {
            let used = self.alloc_consumed() as u64;
            bump(&self.alloc_bytes, used.wrapping_add(alloc_extra));
            self.alloc_armed.store(arm, Ordering::Relaxed);
            self.alloc_left.store(arm, Ordering::Relaxed);
        } else {
            bump(&self.alloc_bytes, alloc_extra);
        }
        if rearm_free {
            let used = self
                .free_armed
                .load(Ordering::Relaxed)
                .wrapping_sub(self.free_left.load(Ordering::Relaxed)) as u64;
            bump(&self.freed_bytes, used.wrapping_add(free_extra));
            self.free_armed.store(FREE_ARM, Ordering::Relaxed);
            self.free_left.store(FREE_ARM, Ordering::Relaxed);
        } else {
            bump(&self.freed_bytes, free_extra);
        }
        self.seq.fetch_add(1, Ordering::Release);
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

    /// Ends a fold whose owner will never finish it ([`fork_child`]).
    fn even_out(&self) {
        let s = self.seq.load(Ordering::Relaxed);
        if s & 1 == 1 {
            self.seq.store(s.wrapping_add(1), Ordering::Release);
        }
    }

    /// Reads the block's counts.
    ///
    /// Retries while the owner is folding, at most `tries` times (the fold
    /// is a few stores, so a retry is rare); past that (the owner was
    /// preempted mid-fold, or stopped forever by a `fork()` that copied only
    /// another thread) it returns a reading that may be off by the one
    /// countdown interval being folded (at most [`PEAK_CHECK_BYTES`] of
    /// allocation). Never blocks.
    pub(crate) fn read(&self, tries: u32) -> Totals {
        let mut n = 0;
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            let a_armed = self.alloc_armed.load(Ordering::Relaxed);
            let a_left = self.alloc_left.load(Ordering::Relaxed);
            let f_armed = self.free_armed.load(Ordering::Relaxed);
            let f_left = self.free_left.load(Ordering::Relaxed);
            let a_bytes = self.alloc_bytes.load(Ordering::Relaxed);
            let f_bytes = self.freed_bytes.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            let s2 = self.seq.load(Ordering::Relaxed);
            n += 1;
            if (s1 == s2 && s1 & 1 == 0) || n >= tries {
                return Totals {
                    allocs: self.allocs.load(Ordering::Relaxed),
                    frees: self.frees.load(Ordering::Relaxed),
                    reallocs: self.reallocs.load(Ordering::Relaxed),
                    alloc_bytes: a_bytes.wrapping_add(a_armed.wrapping_sub(a_left) as u64),
                    freed_bytes: f_bytes.wrapping_add(f_armed.wrapping_sub(f_left) as u64),
                };
            }
            core::hint::spin_loop();
        }
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
        // On the allocator's slow path: few retries, never a wait.
        let r = b.read(4);
        a = a.wrapping_add(r.alloc_bytes);
        f = f.wrapping_add(r.freed_bytes);
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

/// In a `fork()` child, where only the forking thread was copied: a block
/// whose owner was folding at that instant would keep an odd sequence
/// forever, and every reader would spend its retries on it. Evens them out
/// (that block's byte totals may then be off by the one countdown interval
/// being folded, at most [`PEAK_CHECK_BYTES`]; nothing in the child writes
/// the block again).
pub(crate) fn fork_child() {
    let high = HIGH.load(Ordering::Acquire).min(MAX_BLOCKS);
    for b in &BLOCKS[..high] {
        b.even_out();
    }
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

/// What a block, or all of them summed, has counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    pub(crate) reallocs: u64,
    pub(crate) alloc_bytes: u64,
    pub(crate) freed_bytes: u64,
}

impl Totals {
    /// Adds another reading (wrapping, as the counters do).
    fn add(&mut self, r: &Totals) {
        self.allocs = self.allocs.wrapping_add(r.allocs);
        self.frees = self.frees.wrapping_add(r.frees);
        self.reallocs = self.reallocs.wrapping_add(r.reallocs);
        self.alloc_bytes = self.alloc_bytes.wrapping_add(r.alloc_bytes);
        self.freed_bytes = self.freed_bytes.wrapping_add(r.freed_bytes);
    }
}

/// Sums every block and raises the peak to the sum's live bytes. Exact at a
/// quiet point.
pub(crate) fn totals() -> Totals {
    let high = HIGH.load(Ordering::Acquire).min(MAX_BLOCKS);
    let mut t = Totals::default();
    for b in BLOCKS[..high].iter().chain(core::iter::once(&SHARED)) {
        t.add(&b.read(1 << 16));
    }
    let live = t.alloc_bytes.saturating_sub(t.freed_bytes);
    // An exact reading can exceed the published approximation: keep it.
    PEAK.fetch_max(live, Ordering::Relaxed);
    t
}

/// The highest live-bytes reading so far (see [`check_peak`]).
pub(crate) fn peak_live_bytes() -> u64 {
    PEAK.load(Ordering::Relaxed)
}

/// Bytes of the counter pool itself (metadata).
pub(crate) const POOL_BYTES: usize = core::mem::size_of::<[Block; MAX_BLOCKS]>();

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, PoisonError};

    /// Held by the tests that count into blocks or read the global sums:
    /// a test comparing `totals()` before and after must not see another
    /// test's counts land in between (they did, on a busy machine).
    static TOTALS: Mutex<()> = Mutex::new(());

    fn lock_totals() -> std::sync::MutexGuard<'static, ()> {
        TOTALS.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An owner's allocation as the allocator makes it: fast path, and the
    /// slow path's fold when the countdown runs out.
    fn owner_alloc(b: &Block, size: usize, arm: i64) {
        if !b.fast_alloc(size) {
            b.count_alloc();
            b.rearm_alloc(size as u64, arm);
        }
    }

    #[test]
    fn owned_and_shared_counting_sum() {
        let _totals = lock_totals();
        let b = acquire().expect("pool has free blocks in a fresh test process");
        b.restart();
        let before = totals();
        owner_alloc(b, 100, 120); // the zero countdown is short: folded
        owner_alloc(b, 50, 120); // fast: 70 left
        assert!(b.fast_free(100));
        assert!(!b.fast_realloc(50, 80)); // 70 < 80: nothing taken
        assert_eq!(b.alloc_consumed(), 50);
        b.count_realloc();
        b.add_freed(50);
        b.rearm_alloc(80, 1000);
        SHARED.on_alloc_shared(7);
        b.add_freed(3); // bytes counted off the countdown
        b.rearm_alloc(5, 1000);
        let after = totals();
        assert_eq!(after.allocs - before.allocs, 3);
        assert_eq!(after.frees - before.frees, 1);
        assert_eq!(after.reallocs - before.reallocs, 1);
        assert_eq!(
            after.alloc_bytes - before.alloc_bytes,
            100 + 50 + 80 + 7 + 5
        );
        assert_eq!(after.freed_bytes - before.freed_bytes, 100 + 50 + 3);
        // A released block keeps its counts in the sum.
        release(b);
        assert_eq!(totals().allocs, after.allocs);

        // A peak check sees live growth still in a countdown.
        let b = acquire().expect("free block");
        b.restart();
        b.rearm_alloc(0, 1 << 40);
        assert!(b.is_owned());
        assert!(b.fast_alloc(10 << 20));
        assert!(check_peak() >= 10 << 20);
        assert!(PEAK.load(Ordering::Relaxed) >= 10 << 20);
        assert!(b.fast_free(10 << 20));
        release(b);
    }

    #[test]
    fn parked_block_never_goes_fast() {
        for size in [0, 1, 16, 1 << 40, isize::MAX as usize] {
            assert!(!PARKED.fast_alloc(size));
            assert!(!PARKED.fast_free(size));
            assert!(!PARKED.fast_realloc(size, size));
        }
        assert!(!PARKED.is_owned());
        // Never written: no count, countdowns as they were.
        let r = PARKED.read(1);
        assert_eq!((r.allocs, r.frees, r.reallocs), (0, 0, 0));
        assert_eq!(PARKED.alloc_left.load(Ordering::Relaxed), PARKED_LEFT);
        assert_eq!(PARKED.free_left.load(Ordering::Relaxed), PARKED_LEFT);
    }

    /// A fold cut off by `fork()` (odd sequence forever in the child) is
    /// evened out by the child's handler, so readers stop retrying on it.
    #[test]
    fn fork_child_evens_a_stuck_sequence() {
        // `fork_child` evens out every block, another test's mid-fold too.
        let _totals = lock_totals();
        let b = acquire().expect("free block");
        let s = b.seq.load(Ordering::Relaxed);
        b.seq.store(s | 1, Ordering::Relaxed); // "mid-fold"
                                               // What `fork_child` does to every block (all of them here would race
                                               // the other tests' blocks).
        b.even_out();
        assert_eq!(b.seq.load(Ordering::Relaxed) & 1, 0);
        b.restart(); // and the owner's protocol still works
        assert_eq!(b.seq.load(Ordering::Relaxed) & 1, 0);
        release(b);
    }

    /// Readers racing the owner's folds never see a count go backwards
    /// (without the sequence lock they would: a re-armed countdown read
    /// with a stale folded total counts its interval twice, then once),
    /// and the final reading is exact.
    #[test]
    fn readers_see_monotonic_bytes_during_folds() {
        let _totals = lock_totals();
        let b = acquire().expect("free block");
        b.restart();
        let start = b.read(u32::MAX);
        let stop = AtomicBool::new(false);
        const N: u64 = 400_000;
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..N {
                    // Tiny countdowns: a fold every few calls.
                    owner_alloc(b, 8, (i % 5) as i64 * 8);
                }
                stop.store(true, Ordering::Release);
            });
            let mut last = start;
            let mut reads = 0u64;
            while !stop.load(Ordering::Acquire) || reads == 0 {
                let r = b.read(u32::MAX);
                assert!(
                    r.alloc_bytes >= last.alloc_bytes,
                    "allocated bytes went back: {} -> {}",
                    last.alloc_bytes,
                    r.alloc_bytes
                );
                assert!(
                    r.alloc_bytes - start.alloc_bytes <= 8 * N,
                    "over-counted: {}",
                    r.alloc_bytes - start.alloc_bytes
                );
                last = r;
                reads += 1;
            }
        });
        let end = b.read(u32::MAX);
        assert_eq!(end.allocs - start.allocs, N);
        assert_eq!(end.alloc_bytes - start.alloc_bytes, 8 * N);
        release(b);
    }
}
