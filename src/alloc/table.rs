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
//! # Maintained per-stack state (what a scrape reads)
//!
//! Each stack's [`Agg`] carries, besides its all-time allocated and freed
//! estimates, its *live* estimates (objects, bytes, sample count), kept
//! current on every insertion into and removal from the live table. They are
//! fixed-point integers ([`LIVE_SCALE`] units per object or byte), so a
//! sample's contribution is removed exactly as it was added: no drift, and
//! the same value whatever the order of allocations and frees. A `/metrics`
//! scrape reads them with [`Tables::read_stacks`], which copies one small
//! [`StackRow`] per interned stack (walking the dense list of interned ids,
//! `order`, not the sparse array) into a buffer the caller preallocated
//! outside the lock; it never walks the live table. A heap profile or a
//! full snapshot also copies the live samples ([`Tables::read_live`]: ages
//! are only known per sample), into a buffer of [`LIVE_CAPACITY`] entries
//! also preallocated outside the lock. Neither allocates under the lock.
//! [`last_read`] counts what the most recent read copied under it (tests).
//!
//! # Growth history (per stack, maintained)
//!
//! Each stack's [`Agg`] also keeps a [`Growth`] ring: the stack's live
//! bytes at the end of each coarse time slot ([`GROWTH_SLOT_NS`], 10 s) in
//! which they changed, for the last [`GROWTH_LEN`] (16) such slots, so
//! about 2 min 40 s of a site that changes every slot. It is written where
//! the live sums are (every insertion into and removal from the live
//! table, sampled path only: a few stores, no allocation, no clock read of
//! its own: the slot comes from the time the sampled path already read, a
//! sample's birth or a free's time, so a removal without a time, such as
//! a realloc's, is noted in the latest slot seen), so a site's growth is
//! known from the first read even if nobody looked while the leak ran.
//! Measured with `benches/heap_snapshot.rs` (sampled alloc+free at rate 1):
//! see the README's overhead notes. [`Tables::slot`] is the
//! latest slot any stack changed in: reads align every stack's history on
//! it, so two reads of unchanged tables see the same history whatever the
//! time (the `/metrics` paths render the same text). Costs 200 bytes per
//! stack slot (4,096 slots: 800 KiB of zero-initialised static) and as
//! much per row a read copies.
//!
//! # Realloc growth
//!
//! A live sample moved by a realloc keeps its birth and carries
//! [`Live::grown`] (times it grew) and [`Live::last_grown`] onto the new
//! block's sample (`path.rs`, `realloc_cold`). The entry grows from 40 to
//! 48 bytes: 1 MiB more over the 131,072 slots.
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
/// The most live samples the table holds at once (its fill limit): a
/// buffer of this many entries holds any copy of it.
pub(crate) const LIVE_CAPACITY: usize = LIVE_LIMIT;
/// Distinct stacks held at most: 3/4 of the slots (3,072).
const STACK_LIMIT: usize = MAX_STACKS / 4 * 3;
/// The most stacks interned at once: a buffer of this many rows holds any
/// copy of the stack table.
pub(crate) const STACK_CAPACITY: usize = STACK_LIMIT;
const FILTER_BITS: u32 = 18;
/// Stack id of the catch-all site used when the stack table is full.
pub(crate) const OVERFLOW_STACK: u32 = u32::MAX;
/// Length of a growth-history time slot.
pub(crate) const GROWTH_SLOT_NS: u64 = 10_000_000_000;
/// Entries of a stack's growth history.
pub(crate) const GROWTH_LEN: usize = 16;

/// The growth-history slot of a time on leakscope's clock (saturates far
/// beyond any uptime: 10 s slots in a `u32` cover 1,300 years).
pub(crate) fn growth_slot(now_ns: u64) -> u32 {
    u32::try_from(now_ns / GROWTH_SLOT_NS).unwrap_or(u32::MAX)
}

/// A stack's live bytes at the end of the last [`GROWTH_LEN`] time slots
/// in which they changed (see the module docs). Fixed size; oldest entry
/// overwritten when full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Growth {
    /// Slot of each entry ([`growth_slot`]).
    pub(crate) slots: [u32; GROWTH_LEN],
    /// Live bytes (estimate, rounded) after the entry's slot's last change.
    pub(crate) bytes: [i64; GROWTH_LEN],
    /// Where the next new entry goes.
    pub(crate) next: u8,
    /// Entries in use.
    pub(crate) len: u8,
    /// An entry was overwritten: what came before the oldest is unknown
    /// (otherwise the stack had no live bytes before its oldest entry).
    pub(crate) wrapped: bool,
}

const EMPTY_GROWTH: Growth = Growth {
    slots: [0; GROWTH_LEN],
    bytes: [0; GROWTH_LEN],
    next: 0,
    len: 0,
    wrapped: false,
};

impl Default for Growth {
    fn default() -> Self {
        EMPTY_GROWTH
    }
}

impl Growth {
    /// Notes `bytes` live at `slot`: overwrites the newest entry if it is
    /// of the same slot, else appends one. Slots never go back (a slot older
    /// than the newest entry's, from a thread that read the clock before
    /// another, is counted in the newest).
    pub(crate) fn note(&mut self, slot: u32, bytes: i64) {
        let n = GROWTH_LEN as u8;
        if self.len > 0 {
            let last = usize::from((self.next + n - 1) % n);
            if slot <= self.slots[last] {
                self.bytes[last] = bytes;
                return;
            }
        }
        let i = usize::from(self.next % n);
        self.slots[i] = slot;
        self.bytes[i] = bytes;
        self.next = (self.next + 1) % n;
        if self.len < n {
            self.len += 1;
        } else {
            self.wrapped = true;
        }
    }

    /// The entries, oldest first.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u32, i64)> + '_ {
        let n = GROWTH_LEN;
        let start = (usize::from(self.next) + n - usize::from(self.len)) % n;
        (0..usize::from(self.len)).map(move |k| {
            let i = (start + k) % n;
            (self.slots[i], self.bytes[i])
        })
    }
}

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
    /// Live estimates now, maintained (see the module docs).
    pub(crate) live: LiveSum,
    /// Live bytes over the last time slots (see the module docs).
    pub(crate) growth: Growth,
}

/// A stack's live samples, summed as they come and go: fixed-point
/// ([`LIVE_SCALE`] units per object or byte) so that removing a sample
/// subtracts exactly what adding it added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LiveSum {
    pub(crate) objects_q: i128,
    pub(crate) bytes_q: i128,
    pub(crate) samples: u64,
}

/// Fixed-point units per object or byte of [`LiveSum`].
pub(crate) const LIVE_SCALE: f64 = 65536.0;
/// `LIVE_SCALE` as a power of two.
const LIVE_SHIFT: u32 = 16;

impl LiveSum {
    fn contribution(e: &Live) -> (i128, i128) {
        // `as` saturates (and maps NaN to 0): never a panic.
        let q = |x: f64| (x * LIVE_SCALE).round() as i128;
        (q(e.weight), q(e.weight * e.size as f64))
    }

    fn add(&mut self, e: &Live) {
        let (o, b) = Self::contribution(e);
        self.objects_q += o;
        self.bytes_q += b;
        self.samples += 1;
    }

    fn sub(&mut self, e: &Live) {
        let (o, b) = Self::contribution(e);
        self.objects_q -= o;
        self.bytes_q -= b;
        self.samples = self.samples.saturating_sub(1);
    }

    /// Estimated live objects.
    pub(crate) fn objects(&self) -> f64 {
        self.objects_q as f64 / LIVE_SCALE
    }

    /// Estimated live bytes.
    pub(crate) fn bytes(&self) -> f64 {
        self.bytes_q as f64 / LIVE_SCALE
    }

    /// Estimated live bytes, rounded to the nearest byte (as the sites
    /// round them), saturating.
    pub(crate) fn bytes_i64(&self) -> i64 {
        // LIVE_SCALE is 2^16: an arithmetic shift is the floor division,
        // without a 128-bit division call on the sampled path.
        const _: () = assert!(LIVE_SCALE == (1u64 << LIVE_SHIFT) as f64);
        let q = self.bytes_q.saturating_add(1 << (LIVE_SHIFT - 1)) >> LIVE_SHIFT;
        i64::try_from(q).unwrap_or(i64::MAX)
    }
}

const EMPTY_AGG: Agg = Agg {
    alloc_objects: 0.0,
    alloc_bytes: 0.0,
    freed_objects: 0.0,
    freed_bytes: 0.0,
    lifetimes: [0.0; BUCKETS],
    lifetime_sum_secs: 0.0,
    live: LiveSum {
        objects_q: 0,
        bytes_q: 0,
        samples: 0,
    },
    growth: EMPTY_GROWTH,
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
    /// Times the block grew by realloc since it was first sampled
    /// (saturating).
    pub(crate) grown: u32,
    /// When it last grew (leakscope's clock; meaningless if `grown` is 0).
    pub(crate) last_grown: u64,
}

const EMPTY_LIVE: Live = Live {
    addr: 0,
    size: 0,
    birth: 0,
    weight: 0.0,
    stack: 0,
    grown: 0,
    last_grown: 0,
};

/// Everything behind the mutex.
#[derive(Debug)]
pub(crate) struct Tables {
    pub(crate) stacks: [Stack; MAX_STACKS],
    pub(crate) stack_count: usize,
    /// Ids of the interned stacks, in interning order (the first
    /// `stack_count` entries): what a read walks instead of the sparse array.
    pub(crate) order: [u16; MAX_STACKS],
    pub(crate) overflow: Agg,
    pub(crate) live: [Live; MAX_LIVE],
    pub(crate) live_count: usize,
    /// The latest growth slot any stack's live bytes changed in: what
    /// reads align the growth histories on (see the module docs).
    pub(crate) slot: u32,
}

pub(super) static TABLES: Mutex<Tables> = Mutex::new(Tables {
    stacks: [EMPTY_STACK; MAX_STACKS],
    stack_count: 0,
    order: [0; MAX_STACKS],
    overflow: EMPTY_AGG,
    live: [EMPTY_LIVE; MAX_LIVE],
    live_count: 0,
    slot: 0,
});

#[allow(clippy::declare_interior_mutable_const)]
const ZERO_U8: AtomicU8 = AtomicU8::new(0);
pub(super) static FILTER: [AtomicU8; 1 << FILTER_BITS] = [ZERO_U8; 1 << FILTER_BITS];

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
                self.order[self.stack_count] = i as u16;
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
    ///
    /// `birth` is the current time (a fresh sample): it also dates the
    /// change in the stack's growth history.
    pub(crate) fn record_alloc(
        &mut self,
        addr: usize,
        size: u64,
        weight: f64,
        ips: &[usize],
        birth: u64,
    ) -> bool {
        self.record_alloc_grown(addr, size, weight, ips, birth, (0, 0), birth)
    }

    /// Moves the growth slot on to `now`'s (never back).
    fn tick(&mut self, now: u64) {
        self.slot = growth_slot(now).max(self.slot);
    }

    /// [`Tables::record_alloc`] of a block that a realloc moved or resized:
    /// `grown` is (times grown, when last grown) carried over from the
    /// block's previous sample, `birth` its birth, `now` the current time.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_alloc_grown(
        &mut self,
        addr: usize,
        size: u64,
        weight: f64,
        ips: &[usize],
        birth: u64,
        grown: (u32, u64),
        now: u64,
    ) -> bool {
        self.tick(now);
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
            grown: grown.0,
            last_grown: grown.1,
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
                let replaced = (slot.addr != 0).then_some(*slot);
                if slot.addr == 0 {
                    self.live_count += 1;
                }
                *slot = e;
                filter_add(e.addr);
                self.live_changed(replaced.as_ref(), Some(&e));
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
        self.live_changed(Some(&found), None);
        Some(found)
    }

    /// Records the death of a live sample (a free): lifetime and freed
    /// estimates for its stack.
    ///
    /// Also notes the stack's live bytes in its growth history at `now`'s
    /// slot ([`Tables::take_live`], which removed the sample, noted them at
    /// the latest slot known then).
    pub(crate) fn record_free(&mut self, e: &Live, now: u64) {
        let age = now.saturating_sub(e.birth);
        self.tick(now);
        let slot = self.slot;
        let agg = self.agg_mut(e.stack);
        agg.growth.note(slot, agg.live.bytes_i64());
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

    /// Keeps the per-stack live sums current: `gone` left the live table,
    /// `new` entered it.
    /// Also notes each changed stack's live bytes in its growth history.
    fn live_changed(&mut self, gone: Option<&Live>, new: Option<&Live>) {
        // No clock read here: the slot is the latest the timed entry points
        // (`record_alloc*`, `record_free`) saw; `record_free` notes again
        // once it knows the time of a free.
        let slot = self.slot;
        if let Some(g) = gone {
            let agg = self.agg_mut(g.stack);
            agg.live.sub(g);
            agg.growth.note(slot, agg.live.bytes_i64());
        }
        if let Some(n) = new {
            let agg = self.agg_mut(n.stack);
            agg.live.add(n);
            agg.growth.note(slot, agg.live.bytes_i64());
        }
    }

    /// Copies one [`StackRow`] per interned stack, then the overflow
    /// site's, into `out` (cleared first), with each stack's frames for the
    /// stacks `want_ips` selects while `ips_out` has spare capacity. Never
    /// allocates: rows past `out`'s capacity are left out (give it
    /// [`STACK_CAPACITY`] + 1), as are frames past `ips_out`'s.
    pub(crate) fn read_stacks(
        &self,
        out: &mut Vec<StackRow>,
        mut want_ips: impl FnMut(u32) -> bool,
        ips_out: &mut Vec<StackIps>,
    ) {
        out.clear();
        ips_out.clear();
        for &i in &self.order[..self.stack_count] {
            if out.len() == out.capacity() {
                break;
            }
            let s = &self.stacks[usize::from(i)];
            let id = u32::from(i);
            out.push(StackRow {
                id,
                hash: s.hash,
                agg: s.agg,
            });
            if ips_out.len() < ips_out.capacity() && want_ips(id) {
                ips_out.push(StackIps {
                    id,
                    depth: s.depth,
                    ips: s.ips,
                });
            }
        }
        if out.len() < out.capacity() {
            out.push(StackRow {
                id: OVERFLOW_STACK,
                hash: 0,
                agg: self.overflow,
            });
        }
        LAST_READ[0].store(out.len() as u64, Ordering::Relaxed);
        LAST_READ[1].store(0, Ordering::Relaxed);
    }

    /// Copies the live samples into `out` (cleared first) up to its
    /// capacity (give it [`LIVE_CAPACITY`]); never allocates. Call after
    /// [`Tables::read_stacks`] in the same critical section.
    pub(crate) fn read_live(&self, out: &mut Vec<Live>) {
        out.clear();
        let room = out.capacity();
        out.extend(self.live.iter().filter(|e| e.addr != 0).take(room).copied());
        LAST_READ[1].store(out.len() as u64, Ordering::Relaxed);
    }
}

/// One stack's aggregates as a read copies them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StackRow {
    /// Stack id ([`OVERFLOW_STACK`] for the catch-all site).
    pub(crate) id: u32,
    /// The stack's hash (0 for the catch-all site).
    pub(crate) hash: u64,
    pub(crate) agg: Agg,
}

/// One stack's frames as a read copies them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StackIps {
    pub(crate) id: u32,
    pub(crate) depth: u16,
    pub(crate) ips: [usize; MAX_FRAMES],
}

impl StackIps {
    /// The captured return addresses, innermost first.
    pub(crate) fn ips(&self) -> &[usize] {
        &self.ips[..usize::from(self.depth)]
    }
}

/// Entries the most recent read copied under the lock: stack rows, live
/// samples.
static LAST_READ: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// (stack rows, live samples) the most recent [`Tables::read_stacks`] /
/// [`Tables::read_live`] copied while holding the lock.
pub(crate) fn last_read() -> (u64, u64) {
    (
        LAST_READ[0].load(Ordering::Relaxed),
        LAST_READ[1].load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Box<Tables> {
        let layout = std::alloc::Layout::new::<Tables>();
        // SAFETY: `Tables` is not zero-sized.
        let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut Tables;
        assert!(!p.is_null());
        // Every field of `Tables` is an integer, float or array of them:
        // all-zero bytes are a valid value (and the empty state).
        // SAFETY: `p` came from the global allocator with `Tables`'s layout,
        // as `Box` requires, and holds a valid (zeroed) `Tables`.
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
    fn live_sums_follow_the_live_table_exactly() {
        let mut t = tables();
        let addrs: Vec<usize> = (1..3000).map(|i| 0x10_0000 + i * 48).collect();
        for (k, &a) in addrs.iter().enumerate() {
            let w = 1.0 + (k % 13) as f64 / 7.0;
            t.record_alloc(a, 24 + k as u64 % 100, w, &[1, 2, k % 5], 10);
        }
        // Same address again: the old sample is replaced, not double counted.
        t.record_alloc(addrs[0], 8, 1.0, &[1, 2, 0], 11);
        let check = |t: &Tables| {
            let mut want = [LiveSum::default(); 5];
            for e in t.live.iter().filter(|e| e.addr != 0) {
                let w = &mut want[t.order[..t.stack_count]
                    .iter()
                    .position(|&i| u32::from(i) == e.stack)
                    .unwrap()];
                w.add(e);
            }
            for (k, &i) in t.order[..t.stack_count].iter().enumerate() {
                assert_eq!(t.stacks[usize::from(i)].agg.live, want[k], "stack {k}");
            }
        };
        check(&t);
        for &a in addrs.iter().step_by(3) {
            let e = t.take_live(a).unwrap();
            t.record_free(&e, 20);
        }
        check(&t);
        for &a in &addrs {
            t.take_live(a);
        }
        for &i in &t.order[..t.stack_count] {
            assert_eq!(t.stacks[usize::from(i)].agg.live, LiveSum::default());
        }
        let mut rows = Vec::with_capacity(STACK_CAPACITY + 1);
        let mut ips = Vec::with_capacity(2);
        t.read_stacks(&mut rows, |_| true, &mut ips);
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[5].id, OVERFLOW_STACK);
        assert_eq!(ips.len(), 2);
        assert_eq!(ips[0].ips(), &[1, 2, 0]);
        assert_eq!(last_read(), (6, 0));
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
