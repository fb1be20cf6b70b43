//! Model check of the cohort hand-off between a stripe's owner and remote
//! droppers (`src/objects/cohort.rs`, "Level 0: owned stripes, an overflow
//! row"), with `loom`:
//!
//! ```text
//! RUSTFLAGS="--cfg leakscope_loom" cargo test --release --test loom_cohort
//! ```
//!
//! (`scripts/loom-cohort.sh`). Without `--cfg leakscope_loom` the same
//! file checks that its copy of the code is still the real one and runs
//! each scenario once on real threads. The cfg is not the customary
//! `loom`: RUSTFLAGS reach every crate, and tokio built with `cfg(loom)`
//! has no `tokio::net`, which the `http` feature and axum (a
//! dev-dependency) need.
//!
//! # What is modelled, and why a copy
//!
//! `Cohorts::new` is a `const fn` building its rows from `const` atomics
//! (the object sites are statics), and loom's atomics have no `const`
//! constructor, so the real type cannot be built on loom atomics without
//! changing the non-loom code. The model is therefore an extracted copy:
//! every function of `impl Cohorts` but `new` (`row`, `inc`, `dec`,
//! `owner_add`, `owner_retag`, `carry`, `remote_add`, `add`, `read`) and
//! the helpers (`pack`, `unpack`, `shift`, `epoch_of`, `ANCIENT_AGE_NS`)
//! are pasted *verbatim* between the `verbatim` markers below, and
//! `copy_is_verbatim` (run in every mode) fails as soon as any of them no
//! longer appears character for character in `src/objects/cohort.rs`. Only
//! the types (same fields, same constants) and `new` are rewritten.
//!
//! # The scenarios
//!
//! Each starts from a quiet state, races the operations below, joins, and
//! checks the module's invariants at the quiet point after: the live count
//! is exact, and once every object is dropped every slot and `ancient`
//! read zero (no ghost: no +1 left on one chain with its -1 on another).
//!
//! - `remote_drop_vs_retag`: the owner of stripe 0 retags a slot (creates
//!   an object one lap later: `own` store, `remote` swap, carry up) while
//!   another thread drops an object of the old lap remotely (`remote` CAS,
//!   or up a level when it sees the new tag).
//! - `two_remote_drops_vs_retag`: the same with two remote droppers of two
//!   old-lap objects.
//! - `remote_drop_vs_two_retags`: the owner retags the slot twice (two laps)
//!   while the remote drop of the first lap's object is in flight; the
//!   carries of both retags race it up the levels.
//! - `overflow_drop_overtakes_move`: on the overflow row (every step a
//!   CAS) a creator one lap later retags the slot and carries the old
//!   count up while another thread drops the old object (whose -1 may land
//!   one level up before the +1 it cancels).
//!
//! Not modelled: a concurrent `read` (it loads all ~770 words, each a loom
//! branch point; the module promises exact counts only at quiet points,
//! which is what is checked), and laps near the 32-bit horizon.
//!
//! `harness = false`: `main` runs the guard and the scenarios.
#![allow(dead_code, clippy::all)]

#[cfg(leakscope_loom)]
use loom::sync::atomic::{AtomicI64, AtomicU64, Ordering};
#[cfg(leakscope_loom)]
use loom::sync::Arc;
#[cfg(leakscope_loom)]
use loom::thread;
#[cfg(not(leakscope_loom))]
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
#[cfg(not(leakscope_loom))]
use std::sync::Arc;
#[cfg(not(leakscope_loom))]
use std::thread;

// The types and constants, as in cohort.rs (rewritten: `new` below).
//
// Under loom, fewer levels and slots: every atomic load is a loom branch
// point, and the quiet-point reads after each scenario load every word
// (with the real sizes, ~770 of them: past loom's branch limit). The code
// takes both as parameters (a lap is `SLOTS` epochs, a carry goes one
// level up), so the hand-off is the same with 3 levels of 4 slots; the
// real sizes run without loom.

/// Levels of coarseness.
#[cfg(not(leakscope_loom))]
pub(crate) const LEVELS: usize = 10;
#[cfg(leakscope_loom)]
pub(crate) const LEVELS: usize = 3;
/// Slots per level.
#[cfg(not(leakscope_loom))]
pub(crate) const SLOTS: usize = 64;
#[cfg(leakscope_loom)]
pub(crate) const SLOTS: usize = 4;
/// log2 of the level-0 epoch width in nanoseconds.
pub(crate) const BASE_SHIFT: u32 = 20;
/// log2 of the width ratio between two levels.
const LEVEL_SHIFT: u32 = 3;

struct Row([AtomicU64; SLOTS]);

struct OwnedRow {
    own: [AtomicU64; SLOTS],
    remote: [AtomicU64; SLOTS],
}

pub(crate) struct Cohorts<const S: usize> {
    owned: [OwnedRow; S],
    overflow: Row,
    upper: [Row; LEVELS - 1],
    ancient: AtomicI64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cohort {
    pub(crate) age_ns: u64,
    pub(crate) count: u64,
}

fn row() -> Row {
    Row(core::array::from_fn(|_| AtomicU64::new(0)))
}

impl<const S: usize> Cohorts<S> {
    /// All slots empty (lap 0, count 0), as the real `const fn new`.
    fn new() -> Self {
        Cohorts {
            owned: core::array::from_fn(|_| OwnedRow {
                own: core::array::from_fn(|_| AtomicU64::new(0)),
                remote: core::array::from_fn(|_| AtomicU64::new(0)),
            }),
            overflow: row(),
            upper: core::array::from_fn(|_| row()),
            ancient: AtomicI64::new(0),
        }
    }
}

// ---- verbatim: src/objects/cohort.rs ----
#[inline]
const fn pack(lap: u32, count: i32) -> u64 {
    ((lap as u64) << 32) | (count as u32 as u64)
}

#[inline]
const fn unpack(w: u64) -> (u32, i32) {
    ((w >> 32) as u32, w as u32 as i32)
}

/// Epoch width of `level` in nanoseconds, as a shift.
#[inline]
pub(crate) const fn shift(level: usize) -> u32 {
    BASE_SHIFT + LEVEL_SHIFT * level as u32
}

// ---- end verbatim ----

// ---- verbatim: src/objects/cohort.rs ----
/// The epoch one lap-`tag` slot at `idx` stood for, given an epoch `e` at
/// the same level and slot whose lap is at or after `tag`.
#[inline]
fn epoch_of(e: u64, idx: usize, tag: u32) -> u64 {
    let behind = u64::from(((e / SLOTS as u64) as u32).wrapping_sub(tag));
    let old_lap = (e / SLOTS as u64).wrapping_sub(behind);
    old_lap.wrapping_mul(SLOTS as u64) + idx as u64
}

// ---- end verbatim ----

// ---- verbatim: src/objects/cohort.rs ----
/// The age reported for objects past the top level: one full lap of the top
/// level (≈ 104 days), a lower bound.
pub(crate) const ANCIENT_AGE_NS: u64 = (SLOTS as u64) << shift(LEVELS - 1);
// ---- end verbatim ----

impl<const S: usize> Cohorts<S> {
    // ---- verbatim: src/objects/cohort.rs ----
    #[inline]
    fn row(&self, level: usize) -> &Row {
        match level {
            0 => &self.overflow,
            l => &self.upper[l - 1],
        }
    }

    /// Counts one object born at `birth_ns`, created by the owner of
    /// `stripe` (any `stripe >= S`: the overflow row).
    #[inline]
    pub(crate) fn inc(&self, birth_ns: u64, stripe: usize) {
        let e = birth_ns >> BASE_SHIFT;
        match self.owned.get(stripe) {
            Some(row) => self.owner_add(row, e, 1),
            None => self.add(0, e, 1),
        }
    }

    /// Uncounts one object born at `birth_ns` and counted in `stripe`;
    /// `owner` says whether the calling thread owns `stripe` now.
    #[inline]
    pub(crate) fn dec(&self, birth_ns: u64, stripe: usize, owner: bool) {
        let e = birth_ns >> BASE_SHIFT;
        match self.owned.get(stripe) {
            Some(row) if owner => self.owner_add(row, e, -1),
            Some(row) => self.remote_add(row, e, -1),
            None => self.add(0, e, -1),
        }
    }

    /// The owner's path: a plain load and store when the slot is on the
    /// object's lap.
    #[inline]
    fn owner_add(&self, row: &OwnedRow, e: u64, n: i32) {
        let idx = (e % SLOTS as u64) as usize;
        let lap = (e / SLOTS as u64) as u32;
        let slot = &row.own[idx];
        let cur = slot.load(Ordering::Relaxed);
        if (cur >> 32) as u32 == lap {
            // Only the owner writes `own`: no read-modify-write needed. The
            // count is the low half; `pack` keeps a wrap out of the tag.
            let (tag, count) = unpack(cur);
            slot.store(pack(tag, count.wrapping_add(n)), Ordering::Relaxed);
        } else {
            self.owner_retag(row, e, n, cur);
        }
    }

    #[cold]
    #[inline(never)]
    fn owner_retag(&self, row: &OwnedRow, e: u64, n: i32, cur: u64) {
        let idx = (e % SLOTS as u64) as usize;
        let lap = (e / SLOTS as u64) as u32;
        let (tag, count) = unpack(cur);
        if (tag.wrapping_sub(lap) as i32) > 0 {
            // The slot moved on past our lap: our chain lives higher.
            self.add(1, e >> LEVEL_SHIFT, n);
            return;
        }
        // Older lap: take the slot over, then carry both halves of the old
        // count one level up on their chains.
        row.own[idx].store(pack(lap, n), Ordering::Relaxed);
        let (rtag, rcount) = unpack(row.remote[idx].swap(pack(lap, 0), Ordering::Relaxed));
        if rtag == tag {
            self.carry(e, idx, tag, count.wrapping_add(rcount));
        } else {
            self.carry(e, idx, tag, count);
            self.carry(e, idx, rtag, rcount);
        }
    }

    /// Adds `count` of the lap-`tag` level-0 slot `idx` one level up.
    fn carry(&self, e: u64, idx: usize, tag: u32, count: i32) {
        if count != 0 {
            self.add(1, epoch_of(e, idx, tag) >> LEVEL_SHIFT, count);
        }
    }

    /// Another thread's drop of an object counted in `row`.
    #[inline(never)]
    fn remote_add(&self, row: &OwnedRow, e: u64, n: i32) {
        let idx = (e % SLOTS as u64) as usize;
        let lap = (e / SLOTS as u64) as u32;
        let slot = &row.remote[idx];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let (tag, count) = unpack(cur);
            if tag != lap {
                // Newer: the owner moved the slot (and our +1) on. Older
                // cannot happen (module docs) short of the 32-bit lap
                // horizon; going up keeps the count exact either way.
                self.add(1, e >> LEVEL_SHIFT, n);
                return;
            }
            match slot.compare_exchange_weak(
                cur,
                pack(tag, count.wrapping_add(n)),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// Adds `n` to the chain of epoch `e` (at `level`) or its ancestors, on
    /// the overflow rows (level 0: the overflow row) with CAS.
    #[inline(never)]
    fn add(&self, mut level: usize, mut e: u64, n: i32) {
        loop {
            if level >= LEVELS {
                self.ancient.fetch_add(i64::from(n), Ordering::Relaxed);
                return;
            }
            let idx = (e % SLOTS as u64) as usize;
            let lap = (e / SLOTS as u64) as u32;
            let slot = &self.row(level).0[idx];
            let mut cur = slot.load(Ordering::Relaxed);
            loop {
                let (tag, count) = unpack(cur);
                if tag == lap {
                    match slot.compare_exchange_weak(
                        cur,
                        pack(tag, count.wrapping_add(n)),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return,
                        Err(now) => {
                            cur = now;
                            continue;
                        }
                    }
                }
                let ahead = tag.wrapping_sub(lap) as i32;
                if ahead > 0 {
                    // The slot moved on past our lap: our chain lives higher.
                    break;
                }
                // The slot holds an older lap: take it over, then carry its
                // count one level up on its own chain.
                match slot.compare_exchange_weak(
                    cur,
                    pack(lap, n),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        if count != 0 {
                            let old_e = epoch_of(e, idx, tag);
                            self.add(level + 1, old_e >> LEVEL_SHIFT, count);
                        }
                        return;
                    }
                    Err(now) => cur = now,
                }
            }
            level += 1;
            e >>= LEVEL_SHIFT;
        }
    }

    /// Calls `f` for every non-empty cohort, youngest level first, as of
    /// `now_ns`. Returns the signed total (the live count).
    pub(crate) fn read(&self, now_ns: u64, mut f: impl FnMut(Cohort)) -> i64 {
        let mut total: i64 = 0;
        let mut emit = |level: usize, idx: usize, tag: u32, count: i32| {
            if count == 0 {
                return;
            }
            total += i64::from(count);
            if count < 0 {
                return;
            }
            let sh = shift(level);
            let now_e = now_ns >> sh;
            let behind = ((now_e / SLOTS as u64) as u32).wrapping_sub(tag);
            let age_ns = if (behind as i32) < 0 {
                0 // tagged after `now` was read: brand new
            } else {
                now_ns.saturating_sub(epoch_of(now_e, idx, tag) << sh)
            };
            f(Cohort {
                age_ns,
                count: count as u64,
            });
        };
        for row in &self.owned {
            for idx in 0..SLOTS {
                let (t1, c1) = unpack(row.own[idx].load(Ordering::Relaxed));
                let (t2, c2) = unpack(row.remote[idx].load(Ordering::Relaxed));
                if t1 == t2 {
                    emit(0, idx, t1, c1.wrapping_add(c2));
                } else {
                    emit(0, idx, t1, c1);
                    emit(0, idx, t2, c2);
                }
            }
        }
        let rows = core::iter::once((0, &self.overflow))
            .chain(self.upper.iter().enumerate().map(|(l, r)| (l + 1, r)));
        for (level, row) in rows {
            for (idx, slot) in row.0.iter().enumerate() {
                let (tag, count) = unpack(slot.load(Ordering::Relaxed));
                emit(level, idx, tag, count);
            }
        }
        let ancient = self.ancient.load(Ordering::Relaxed);
        total += ancient;
        if ancient > 0 {
            f(Cohort {
                age_ns: ANCIENT_AGE_NS,
                count: ancient as u64,
            });
        }
        total
    }
    // ---- end verbatim ----
}

// ---- the checks ----

/// Every chain of `c` counts zero: each word, except that an owned slot's
/// `own` and `remote` halves on the same lap are one count (a remote drop
/// of an object counted in `own`), as `read` sums them.
fn all_zero<const S: usize>(c: &Cohorts<S>) -> bool {
    let mut ok = c.ancient.load(Ordering::Relaxed) == 0;
    for r in &c.owned {
        for (own, remote) in r.own.iter().zip(&r.remote) {
            let (t1, c1) = unpack(own.load(Ordering::Relaxed));
            let (t2, c2) = unpack(remote.load(Ordering::Relaxed));
            ok &= if t1 == t2 {
                c1.wrapping_add(c2) == 0
            } else {
                c1 == 0 && c2 == 0
            };
        }
    }
    let shared = c
        .overflow
        .0
        .iter()
        .chain(c.upper.iter().flat_map(|r| r.0.iter()));
    for w in shared {
        ok &= unpack(w.load(Ordering::Relaxed)).1 == 0;
    }
    ok
}

/// The live count and the cohorts at a quiet point.
fn live<const S: usize>(c: &Cohorts<S>, now: u64) -> (i64, Vec<Cohort>) {
    let mut v = Vec::new();
    let n = c.read(now, |x| v.push(x));
    (n, v)
}

/// Birth times: `T0`, and the same level-0 slot one and two laps later.
const T0: u64 = 5 << 30;
const LAP: u64 = (SLOTS as u64) << BASE_SHIFT;

/// Exactly `objects` live at `now`, all counted in non-negative cohorts;
/// then, after `drop_all`, nothing anywhere.
fn check_quiet<const S: usize>(c: &Cohorts<S>, now: u64, objects: i64, drop_all: impl FnOnce()) {
    let (n, v) = live(c, now);
    assert_eq!(n, objects, "live count at the quiet point: {v:?}");
    assert_eq!(
        v.iter().map(|x| x.count as i64).sum::<i64>(),
        objects,
        "{v:?}"
    );
    drop_all();
    let (n, v) = live(c, now);
    assert_eq!(n, 0);
    assert!(v.is_empty(), "ghost: {v:?}");
    assert!(all_zero(c), "a slot kept a non-zero count");
}

fn remote_drop_vs_retag() {
    let c = Arc::new(Cohorts::<1>::new());
    c.inc(T0, 0); // object A, handed to the remote thread below
    let r = {
        let c = c.clone();
        thread::spawn(move || c.dec(T0, 0, false))
    };
    c.inc(T0 + LAP, 0); // object B: the owner retags A's slot
    r.join().unwrap();
    check_quiet(&c, T0 + LAP, 1, || c.dec(T0 + LAP, 0, true));
}

fn two_remote_drops_vs_retag() {
    let c = Arc::new(Cohorts::<1>::new());
    c.inc(T0, 0);
    c.inc(T0, 0);
    let rs: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            thread::spawn(move || c.dec(T0, 0, false))
        })
        .collect();
    c.inc(T0 + LAP, 0);
    for r in rs {
        r.join().unwrap();
    }
    check_quiet(&c, T0 + LAP, 1, || c.dec(T0 + LAP, 0, true));
}

fn remote_drop_vs_two_retags() {
    let c = Arc::new(Cohorts::<1>::new());
    c.inc(T0, 0);
    let r = {
        let c = c.clone();
        thread::spawn(move || c.dec(T0, 0, false))
    };
    c.inc(T0 + LAP, 0);
    c.inc(T0 + 2 * LAP, 0);
    r.join().unwrap();
    check_quiet(&c, T0 + 2 * LAP, 2, || {
        c.dec(T0 + LAP, 0, true);
        c.dec(T0 + 2 * LAP, 0, false);
    });
}

fn overflow_drop_overtakes_move() {
    let c = Arc::new(Cohorts::<1>::new());
    c.inc(T0, 1); // stripe 1 of 1: the overflow row
    let r = {
        let c = c.clone();
        thread::spawn(move || c.dec(T0, 1, false))
    };
    c.inc(T0 + LAP, 1);
    r.join().unwrap();
    check_quiet(&c, T0 + LAP, 1, || c.dec(T0 + LAP, 1, false));
}

/// Each scenario under loom (every interleaving within the preemption
/// bound, `LOOM_MAX_PREEMPTIONS`, default 3), or once on real threads.
fn model(name: &str, f: fn()) {
    let start = std::time::Instant::now();
    #[cfg(leakscope_loom)]
    {
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(3);
        }
        b.max_branches = 100_000;
        b.check(f);
    }
    #[cfg(not(leakscope_loom))]
    f();
    eprintln!("loom_cohort: {name}: ok in {:.1?}", start.elapsed());
}

/// Each block between the markers in this file appears character for
/// character in `src/objects/cohort.rs`.
fn copy_is_verbatim() {
    const THIS: &str = include_str!("loom_cohort.rs");
    const REAL: &str = include_str!("../src/objects/cohort.rs");
    let begin = concat!("// ---- verbatim", ": src/objects/cohort.rs ----\n");
    let end = concat!("// ---- end", " verbatim ----\n");
    let mut blocks = 0;
    let mut rest = THIS;
    while let Some(i) = rest.find(begin) {
        let from = i + begin.len();
        let len = rest[from..].find(end).expect("an end marker");
        // Up to the end marker's own indentation.
        let block = rest[from..from + len].trim_end_matches(' ');
        assert!(
            REAL.contains(block),
            "tests/loom_cohort.rs: this block is no longer verbatim in src/objects/cohort.rs; update the model:\n{block}"
        );
        blocks += 1;
        rest = &rest[from + len..];
    }
    assert_eq!(blocks, 4, "the verbatim blocks");
    eprintln!("loom_cohort: the model's {blocks} blocks are verbatim in src/objects/cohort.rs");
}

fn main() {
    copy_is_verbatim();
    model("remote_drop_vs_retag", remote_drop_vs_retag);
    model("two_remote_drops_vs_retag", two_remote_drops_vs_retag);
    model("remote_drop_vs_two_retags", remote_drop_vs_two_retags);
    model("overflow_drop_overtakes_move", overflow_drop_overtakes_move);
}
