//! The sampled path's tables: interned stacks with their per-stack
//! aggregates, and the live-sample table (address → stack, size, birth).
//!
//! Both are fixed-size arrays in one `static`, so recording a sample never
//! allocates. They sit behind one `std::sync::Mutex`, taken only on the
//! sampled path (about once per `rate` bytes), on frees that the filter says
//! may be sampled, and by snapshots for a short copy. That mutex is a futex
//! on Linux: locking it never allocates, and nothing allocates while holding
//! it (the caller holds the re-entrancy guard, and the tables are
//! preallocated), so it cannot deadlock through the allocator.
//!
//! Frees must find out cheaply whether their block was sampled. A counting
//! filter (`FILTER`, one byte per slot, indexed by a hash of the address) is
//! read with one relaxed load: zero means "certainly not sampled". Only
//! non-zero slots (sampled blocks, or the rare collision) take the mutex.
//! Counters saturate at 255 and then stay there (a permanent, harmless false
//! positive for that slot).
//!
//! Capacities are fixed and overflow is counted, never silent (one count
//! per sample, whichever tables it did not fit):
//! - 3,072 distinct stacks (`MAX_STACKS` = 4,096 slots, filled to 3/4);
//!   samples of further stacks are attributed to one "stack table full"
//!   site and counted in `dropped_samples`;
//! - 114,688 live samples (`MAX_LIVE` = 131,072 slots, filled to 7/8);
//!   further samples are not recorded as live and counted in
//!   `dropped_samples`.
//!
//! The live table's slot is the top bits of a multiplicative hash of the
//! address: its low bits are the address's low bits times an odd number,
//! so addresses that differ only above them (large blocks 2 MiB apart:
//! glibc's mmap chunks, jemalloc's and mimalloc's huge allocations, which
//! are sampled with p ≈ 1) would share one probe run.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::stack::MAX_FRAMES;
use crate::histogram::{bucket_index, BUCKETS};

/// Distinct sampled stacks kept (power of two).
pub(crate) const MAX_STACKS: usize = 4096;
/// Live-sample table slots (power of two).
pub(crate) const MAX_LIVE: usize = 1 << LIVE_BITS;
const LIVE_BITS: u32 = 17;
/// Live samples held at most: 7/8 of the slots (114,688).
const LIVE_LIMIT: usize = MAX_LIVE / 8 * 7;
/// Distinct stacks held at most: 3/4 of the slots (3,072).
const STACK_LIMIT: usize = MAX_STACKS / 4 * 3;
const FILTER_BITS: u32 = 18;
/// Stack id of the catch-all site used when the stack table is full.
pub(crate) const OVERFLOW_STACK: u32 = u32::MAX;

/// One interned stack and what its samples add up to (estimates).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stack {
    /// FxHash of the frames; 0 marks an empty slot.
    pub(crate) hash: u64,
    pub(crate) depth: u16,
    pub(crate) ips: [usize; MAX_FRAMES],
    pub(crate) agg: Agg,
}

/// Per-stack aggregates, weighted by each sample's scale factor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Agg {
    pub(crate) alloc_objects: f64,
    pub(crate) alloc_bytes: f64,
    pub(crate) freed_objects: f64,
    pub(crate) freed_bytes: f64,
    /// Estimated freed objects per lifetime bucket.
    pub(crate) lifetimes: [f64; BUCKETS],
    pub(crate) lifetime_sum_secs: f64,
}

const EMPTY_AGG: Agg = Agg {
    alloc_objects: 0.0,
    alloc_bytes: 0.0,
    freed_objects: 0.0,
    freed_bytes: 0.0,
    lifetimes: [0.0; BUCKETS],
    lifetime_sum_secs: 0.0,
};

const EMPTY_STACK: Stack = Stack {
    hash: 0,
    depth: 0,
    ips: [0; MAX_FRAMES],
    agg: EMPTY_AGG,
};

/// One live sampled allocation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Live {
    /// Block address; 0 marks an empty slot.
    pub(crate) addr: usize,
    pub(crate) size: u64,
    pub(crate) birth: u64,
    pub(crate) weight: f64,
    pub(crate) stack: u32,
}

const EMPTY_LIVE: Live = Live {
    addr: 0,
    size: 0,
    birth: 0,
    weight: 0.0,
    stack: 0,
};

/// Everything behind the mutex.
#[derive(Debug)]
pub(crate) struct Tables {
    pub(crate) stacks: [Stack; MAX_STACKS],
    pub(crate) stack_count: usize,
    pub(crate) overflow: Agg,
    pub(crate) live: [Live; MAX_LIVE],
    pub(crate) live_count: usize,
}

static TABLES: Mutex<Tables> = Mutex::new(Tables {
    stacks: [EMPTY_STACK; MAX_STACKS],
    stack_count: 0,
    overflow: EMPTY_AGG,
    live: [EMPTY_LIVE; MAX_LIVE],
    live_count: 0,
});

#[allow(clippy::declare_interior_mutable_const)]
const ZERO_U8: AtomicU8 = AtomicU8::new(0);
static FILTER: [AtomicU8; 1 << FILTER_BITS] = [ZERO_U8; 1 << FILTER_BITS];

/// Samples taken (recorded or not).
pub(crate) static SAMPLES: AtomicU64 = AtomicU64::new(0);
/// Samples that could not be fully recorded (a table was full).
pub(crate) static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Bytes of the tables and filter (fixed).
pub(crate) const TABLE_BYTES: usize =
    core::mem::size_of::<Tables>() + core::mem::size_of::<[AtomicU8; 1 << FILTER_BITS]>();

/// The live table's home slot of `addr`: the top `LIVE_BITS` of a
/// Fibonacci hash (the well-mixed ones; see the module doc).
#[inline(always)]
fn home(addr: usize) -> usize {
    (((addr as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - LIVE_BITS)) as usize
}

/// The filter's slot for `addr`: a 32-bit multiplicative hash of the
/// address's low 32 bits (two instructions on the free fast path: `imul`
/// with an immediate, `shr`; 64-bit Fibonacci hashing costs three more).
/// The multiplier is 2^32/φ negated (`0x61C8_8647 = 2^32 - 0x9E37_79B9`),
/// which spreads addresses as well (the product is negated, so its top
/// bits are, but for a carry, the complement of the usual ones) and,
/// unlike the prime `0x9E37_79B1` used before,
/// fits an `imul`'s sign-extended 32-bit immediate: callgrind, 2 fewer
/// instructions per alloc+free on the churn benchmark. Blocks whose
/// addresses differ only above bit 31 share slots, which costs a table
/// lookup on a false hit, never a wrong answer.
#[inline(always)]
fn filter_slot(addr: usize) -> &'static AtomicU8 {
    let h = (addr as u32).wrapping_mul(0x61C8_8647) >> (32 - FILTER_BITS);
    &FILTER[h as usize]
}

/// One relaxed load: `false` means the block at `addr` is certainly not a
/// live sample.
#[inline(always)]
pub(crate) fn maybe_sampled(addr: usize) -> bool {
    filter_slot(addr).load(Ordering::Relaxed) != 0
}

fn filter_add(addr: usize) {
    let s = filter_slot(addr);
    let v = s.load(Ordering::Relaxed);
    if v < u8::MAX {
        // Writers hold the tables mutex, so load + store cannot lose updates.
        s.store(v + 1, Ordering::Relaxed);
    }
}

fn filter_remove(addr: usize) {
    let s = filter_slot(addr);
    let v = s.load(Ordering::Relaxed);
    if v > 0 && v < u8::MAX {
        s.store(v - 1, Ordering::Relaxed);
    }
}

/// Locks the tables. Never panics: a poisoned lock (impossible, nothing
/// panics while holding it) is used as is. Also held by the forking thread
/// across `fork()` (`alloc/fork.rs`).
pub(crate) fn lock() -> MutexGuard<'static, Tables> {
    TABLES.lock().unwrap_or_else(|e| e.into_inner())
}

fn hash_stack(ips: &[usize]) -> u64 {
    // FxHash-style fold; never 0 (0 marks empty slots).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &ip in ips {
        h = (h.rotate_left(5) ^ ip as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    h | 1
}

impl Tables {
    /// Finds or inserts `ips`; `OVERFLOW_STACK` when the table is full.
    fn intern(&mut self, ips: &[usize]) -> u32 {
        let depth = ips.len().min(MAX_FRAMES);
        let ips = &ips[..depth];
        let h = hash_stack(ips);
        let mask = MAX_STACKS - 1;
        let mut i = (h as usize) & mask;
        for _ in 0..MAX_STACKS {
            let s = &mut self.stacks[i];
            if s.hash == 0 {
                // Keep a quarter free so probes stay short.
                if self.stack_count >= STACK_LIMIT {
                    return OVERFLOW_STACK;
                }
                s.hash = h;
                s.depth = depth as u16;
                s.ips[..depth].copy_from_slice(ips);
                self.stack_count += 1;
                return i as u32;
            }
            if s.hash == h && usize::from(s.depth) == depth && &s.ips[..depth] == ips {
                return i as u32;
            }
            i = (i + 1) & mask;
        }
        OVERFLOW_STACK
    }

    fn agg_mut(&mut self, stack: u32) -> &mut Agg {
        if stack == OVERFLOW_STACK {
            &mut self.overflow
        } else {
            &mut self.stacks[stack as usize & (MAX_STACKS - 1)].agg
        }
    }

    /// Records a sampled allocation. Counts one dropped sample if its stack
    /// did not fit, or it could not be recorded as live, or both. Returns
    /// `false` if it could not be recorded as live.
    pub(crate) fn record_alloc(
        &mut self,
        addr: usize,
        size: u64,
        weight: f64,
        ips: &[usize],
        birth: u64,
    ) -> bool {
        let stack = if ips.is_empty() {
            OVERFLOW_STACK
        } else {
            self.intern(ips)
        };
        let agg = self.agg_mut(stack);
        agg.alloc_objects += weight;
        agg.alloc_bytes += weight * size as f64;
        let live = self.insert_live(Live {
            addr,
            size,
            birth,
            weight,
            stack,
        });
        if stack == OVERFLOW_STACK || !live {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        live
    }

    /// Inserts a live sample; `false` (counting nothing) when the table is
    /// full.
    fn insert_live(&mut self, e: Live) -> bool {
        if self.live_count >= LIVE_LIMIT || e.addr == 0 {
            // Not live-tracked: count it as freed now so the per-stack
            // live estimate (allocated - freed) is not inflated forever.
            self.record_moved(&e);
            return false;
        }
        let mask = MAX_LIVE - 1;
        let mut i = home(e.addr);
        loop {
            let slot = &mut self.live[i];
            if slot.addr == 0 || slot.addr == e.addr {
                if slot.addr == 0 {
                    self.live_count += 1;
                }
                *slot = e;
                filter_add(e.addr);
                return true;
            }
            i = (i + 1) & mask;
        }
    }

    /// Removes the live sample at `addr`, if any (backward-shift deletion,
    /// so no tombstones accumulate).
    pub(crate) fn take_live(&mut self, addr: usize) -> Option<Live> {
        if addr == 0 {
            return None;
        }
        let mask = MAX_LIVE - 1;
        let mut i = home(addr);
        loop {
            let slot = self.live[i];
            if slot.addr == 0 {
                return None;
            }
            if slot.addr == addr {
                break;
            }
            i = (i + 1) & mask;
        }
        let found = self.live[i];
        // Backward shift: pull later entries of the probe run into the hole.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let e = self.live[j];
            if e.addr == 0 {
                break;
            }
            let home = home(e.addr);
            // Move `e` if its home is not in the (hole, j] cyclic range.
            let dist_home = j.wrapping_sub(home) & mask;
            let dist_hole = j.wrapping_sub(hole) & mask;
            if dist_home >= dist_hole {
                self.live[hole] = e;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.live[hole] = EMPTY_LIVE;
        self.live_count -= 1;
        filter_remove(addr);
        Some(found)
    }

    /// Records the death of a live sample (a free): lifetime and freed
    /// estimates for its stack.
    pub(crate) fn record_free(&mut self, e: &Live, now: u64) {
        let age = now.saturating_sub(e.birth);
        let agg = self.agg_mut(e.stack);
        agg.freed_objects += e.weight;
        agg.freed_bytes += e.weight * e.size as f64;
        agg.lifetimes[bucket_index(age)] += e.weight;
        agg.lifetime_sum_secs += e.weight * age as f64 / 1e9;
    }

    /// Forgets a live sample without counting a death (the block moved in a
    /// realloc and the new block will be sampled afresh).
    pub(crate) fn record_moved(&mut self, e: &Live) {
        let agg = self.agg_mut(e.stack);
        agg.freed_objects += e.weight;
        agg.freed_bytes += e.weight * e.size as f64;
    }

    /// Puts back a sample taken out before a realloc that failed (counted
    /// as dropped if the table filled up meanwhile).
    pub(crate) fn restore_live(&mut self, e: Live) -> bool {
        let live = self.insert_live(e);
        if !live {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Box<Tables> {
        let layout = std::alloc::Layout::new::<Tables>();
        // SAFETY: `Tables` is not zero-sized.
        let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut Tables;
        assert!(!p.is_null());
        // SAFETY: `p` was allocated by the global allocator with `Tables`'s
        // layout, as `Box` requires, and every field of `Tables` is an
        // integer, float or array of them, for which all-zero bytes are a
        // valid value (and the empty state).
        unsafe { Box::from_raw(p) }
    }

    #[test]
    fn live_insert_take_with_collisions() {
        let mut t = tables();
        // Addresses that share low bits to force probing runs.
        let addrs: Vec<usize> = (1..2000).map(|i| i * 4096 * 16).collect();
        for (k, &a) in addrs.iter().enumerate() {
            assert!(t.record_alloc(a, 64, 1.0, &[1, 2, k % 7], 10));
            assert!(maybe_sampled(a));
        }
        assert_eq!(t.live_count, addrs.len());
        for &a in addrs.iter().step_by(2) {
            let e = t.take_live(a).expect("inserted");
            assert_eq!(e.addr, a);
            t.record_free(&e, 1_000_010);
        }
        for (k, &a) in addrs.iter().enumerate() {
            assert_eq!(t.take_live(a).is_some(), k % 2 == 1, "addr #{k}");
        }
        assert_eq!(t.live_count, 0);
        assert_eq!(t.stack_count, 7);
        let total_freed: f64 = t
            .stacks
            .iter()
            .map(|s| s.agg.lifetimes[bucket_index(1_000_000)])
            .sum();
        assert_eq!(total_freed, 1000.0);
    }

    /// How far each live sample sits from its home slot.
    fn probe_lengths(t: &Tables) -> Vec<usize> {
        let mask = MAX_LIVE - 1;
        (0..MAX_LIVE)
            .filter(|&i| t.live[i].addr != 0)
            .map(|i| i.wrapping_sub(home(t.live[i].addr)) & mask)
            .collect()
    }

    /// Large blocks 2 MiB apart (mmap chunks, huge allocations) spread
    /// over the table: short probe runs.
    #[test]
    fn blocks_2_mib_apart_probe_short() {
        let mut t = tables();
        for k in 1..=20_000usize {
            assert!(t.record_alloc(k << 21, 4 << 20, 1.0, &[1], 0));
        }
        let p = probe_lengths(&t);
        let max = p.iter().max().copied().unwrap_or(0);
        let mean = p.iter().sum::<usize>() as f64 / p.len() as f64;
        assert!(max < 64 && mean < 2.0, "max probe {max}, mean {mean}");
        for k in 1..=20_000usize {
            assert!(t.take_live(k << 21).is_some());
        }
        assert_eq!(t.live_count, 0);
    }

    /// A sample that fits neither table counts one dropped sample, not two.
    /// (Runs on its own tables; `DROPPED` is global, so the count is
    /// checked in a band other tests' drops cannot reach: this test alone
    /// drops thousands.)
    #[test]
    fn a_sample_fitting_neither_table_is_dropped_once() {
        let mut t = tables();
        for k in 0..STACK_LIMIT {
            t.record_alloc(0x10_0000 + k * 16, 8, 1.0, &[k + 1], 0);
        }
        let mut a = 0x1000_0000usize;
        while t.live_count < LIVE_LIMIT {
            t.record_alloc(a, 8, 1.0, &[1], 0);
            a += 16;
        }
        let before = DROPPED.load(Ordering::Relaxed);
        const N: u64 = 5000;
        for k in 0..N as usize {
            // A new stack (table full) and no room for a live sample.
            assert!(!t.record_alloc(a + k * 16, 8, 1.0, &[1_000_000 + k], 0));
        }
        let dropped = DROPPED.load(Ordering::Relaxed) - before;
        assert!(
            (N..N + N / 2).contains(&dropped),
            "{dropped} dropped for {N} samples"
        );
    }

    #[test]
    fn stack_table_overflows_into_catch_all() {
        let mut t = tables();
        let before = DROPPED.load(Ordering::Relaxed);
        for k in 0..MAX_STACKS {
            t.record_alloc(0x1000 + k * 16, 8, 1.0, &[k + 1], 0);
        }
        assert_eq!(t.stack_count, 3072);
        assert!(t.overflow.alloc_objects >= (MAX_STACKS / 4) as f64);
        assert!(DROPPED.load(Ordering::Relaxed) - before >= (MAX_STACKS / 4) as u64);
    }
}
