//! Live objects counted by birth time: O(1) create and drop, ages with a
//! bounded error, exact live count at quiet points.
//!
//! # Layout
//!
//! [`LEVELS`] levels of [`SLOTS`] slots. Level `L` slices time into epochs of
//! width `2^(BASE_SHIFT + 3L)` ns (level 0: 2^20 ns ≈ 1.05 ms; each level 8×
//! wider; level 9: ≈ 39 h). An object born at `t` belongs to epoch
//! `e_L = t >> (BASE_SHIFT + 3L)` at level `L`; its slot there is
//! `e_L % 64` and the slot's *lap* is `e_L / 64`. Each slot is one
//! `AtomicU64` packing `(lap: u32, count: i32)`.
//!
//! ```text
//!   create/drop(t): level 0, slot e0 % 64
//!       tag == lap(t)  ──► CAS count ± 1                    (the usual case)
//!       tag newer      ──► go up one level (the chain moved on)
//!       tag older      ──► CAS (old, c) → (lap(t), ±1), then add c to the
//!                          old chain one level up (a "move"), recursively
//!   past level 9       ──► `ancient` (count only: older than ~104 days)
//! ```
//!
//! Creates and drops run the same rule, so every ±1 of one object lands on
//! the same chain (epoch and its coarser ancestors). Counts are signed: a drop
//! may reach a slot before the move that carries its object's +1 (it then
//! leaves a -1 that the move cancels). Tags only ever grow, so a chain never
//! comes back down a level.
//!
//! # Invariants
//!
//! - Conservation: at a quiet point (no create, drop or move in flight) the
//!   sum of all counts plus `ancient` equals the live objects; each chain's
//!   count is the exact number of live objects born in it. No ghost (a +1
//!   left in an old slot with its -1 in a young one) can persist, because
//!   both signs of one object follow the same chain.
//! - Age error: a slot's objects are reported at `now - start of epoch`, an
//!   upper bound. Level 0: at most 1.05 ms too old. A count reaches level
//!   `L ≥ 1` only when its level-`L-1` slot was retagged a full lap (64 finer
//!   epochs = 8 epochs of level `L`) later, so the objects are at least
//!   `7.875 × width(L)` old and the relative error is at most 1/7.875 (< 13%).
//! - Tags are 32-bit laps compared as signed differences, so the horizon
//!   is 2^31 level-0 laps, about 4.5 years of `CLOCK_MONOTONIC` uptime:
//!   beyond it new objects land one level up (counts stay exact, age
//!   resolution drops from ~1 ms to ~8 ms), and a site idle for longer
//!   than that reports its old objects' ages wrongly. A count is an `i32`
//!   (at most 2^31 live objects born in one slot's epoch).

use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Levels of coarseness.
pub(crate) const LEVELS: usize = 10;
/// Slots per level.
pub(crate) const SLOTS: usize = 64;
/// log2 of the level-0 epoch width in nanoseconds.
pub(crate) const BASE_SHIFT: u32 = 20;
/// log2 of the width ratio between two levels.
const LEVEL_SHIFT: u32 = 3;

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

/// One level's slots, on their own cache lines.
#[repr(align(64))]
struct Row([AtomicU64; SLOTS]);

/// Per-birth-time live counters (see the module docs).
///
/// Level 0 has `S` *stripes*: each thread counts its objects in its own
/// stripe (the object remembers which), so threads creating and dropping at
/// one site in the same epoch do not share a cache line. Moves carry level-0
/// counts into the shared levels above, which see one move per slot per lap.
pub(crate) struct Cohorts<const S: usize> {
    first: [Row; S],
    upper: [Row; LEVELS - 1],
    ancient: AtomicI64,
}

/// One non-empty cohort read by [`Cohorts::read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cohort {
    /// Reported age (an upper bound, see the module docs), in ns.
    pub(crate) age_ns: u64,
    /// Live objects in it (clamped at zero while moves are in flight).
    pub(crate) count: u64,
}

impl<const S: usize> Cohorts<S> {
    /// All slots empty (lap 0, count 0).
    #[allow(clippy::declare_interior_mutable_const)]
    pub(crate) const fn new() -> Self {
        const Z: AtomicU64 = AtomicU64::new(0);
        const ROW: Row = Row([Z; SLOTS]);
        Cohorts {
            first: [ROW; S],
            upper: [ROW; LEVELS - 1],
            ancient: AtomicI64::new(0),
        }
    }

    #[inline]
    fn row(&self, level: usize, stripe: usize) -> &Row {
        match level {
            0 => &self.first[stripe % S],
            l => &self.upper[l - 1],
        }
    }

    /// Counts one object born at `birth_ns` in level-0 stripe `stripe`.
    #[inline]
    pub(crate) fn inc(&self, birth_ns: u64, stripe: usize) {
        self.add(0, birth_ns >> BASE_SHIFT, 1, stripe);
    }

    /// Uncounts one object born at `birth_ns`, counted in `stripe`.
    #[inline]
    pub(crate) fn dec(&self, birth_ns: u64, stripe: usize) {
        self.add(0, birth_ns >> BASE_SHIFT, -1, stripe);
    }

    /// Adds `n` to the chain of epoch `e` (at `level`) or its ancestors.
    fn add(&self, mut level: usize, mut e: u64, n: i32, stripe: usize) {
        loop {
            if level >= LEVELS {
                self.ancient.fetch_add(i64::from(n), Ordering::Relaxed);
                return;
            }
            let idx = (e % SLOTS as u64) as usize;
            let lap = (e / SLOTS as u64) as u32;
            let slot = &self.row(level, stripe).0[idx];
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
                            let behind = u64::from(lap.wrapping_sub(tag));
                            let old_lap = (e / SLOTS as u64).wrapping_sub(behind);
                            let old_e = old_lap.wrapping_mul(SLOTS as u64) + idx as u64;
                            self.add(level + 1, old_e >> LEVEL_SHIFT, count, stripe);
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
        let rows = self
            .first
            .iter()
            .map(|r| (0, r))
            .chain(self.upper.iter().enumerate().map(|(l, r)| (l + 1, r)));
        for (level, row) in rows {
            let sh = shift(level);
            let now_e = now_ns >> sh;
            let now_lap = (now_e / SLOTS as u64) as u32;
            for (idx, slot) in row.0.iter().enumerate() {
                let (tag, count) = unpack(slot.load(Ordering::Relaxed));
                if count == 0 {
                    continue;
                }
                total += i64::from(count);
                let behind = now_lap.wrapping_sub(tag);
                let age_ns = if (behind as i32) < 0 {
                    0 // tagged after `now` was read: brand new
                } else {
                    let lap = (now_e / SLOTS as u64).wrapping_sub(u64::from(behind));
                    let start = (lap.wrapping_mul(SLOTS as u64) + idx as u64) << sh;
                    now_ns.saturating_sub(start)
                };
                if count > 0 {
                    f(Cohort {
                        age_ns,
                        count: count as u64,
                    });
                }
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
}

/// The age reported for objects past the top level: one full lap of the top
/// level (≈ 104 days), a lower bound.
pub(crate) const ANCIENT_AGE_NS: u64 = (SLOTS as u64) << shift(LEVELS - 1);

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn live(c: &Cohorts<2>, now: u64) -> (i64, Vec<Cohort>) {
        let mut v = Vec::new();
        let t = c.read(now, |x| v.push(x));
        (t, v)
    }

    #[test]
    fn young_objects_stay_exact() {
        let c = Cohorts::<2>::new();
        let t0 = 1u64 << 40;
        c.inc(t0, 0);
        c.inc(t0 + 10 * MS, 1);
        let (n, v) = live(&c, t0 + 20 * MS);
        assert_eq!(n, 2);
        let oldest = v.iter().map(|x| x.age_ns).max().unwrap();
        assert!(
            (20 * MS..=20 * MS + (1 << BASE_SHIFT)).contains(&oldest),
            "{oldest}"
        );
        c.dec(t0, 0);
        c.dec(t0 + 10 * MS, 1);
        assert_eq!(live(&c, t0 + 20 * MS).0, 0);
        assert!(live(&c, t0 + 20 * MS).1.is_empty());
    }

    #[test]
    fn moved_counts_keep_bounded_age_and_drop_exactly() {
        let c = Cohorts::<2>::new();
        let t0 = 1u64 << 45;
        c.inc(t0, 0);
        // Many later creations in every level-0 slot push it up the levels.
        let hour = 3_600_000 * MS;
        let mut t = t0;
        let mut births = Vec::new();
        while t < t0 + hour {
            t += 1 << BASE_SHIFT;
            c.inc(t, 0);
            births.push(t);
        }
        for b in &births {
            c.dec(*b, 0);
        }
        let (n, v) = live(&c, t);
        assert_eq!(n, 1);
        assert_eq!(v.len(), 1);
        let age = v[0].age_ns;
        let true_age = t - t0;
        assert!(age >= true_age, "{age} < {true_age}");
        assert!(
            (age - true_age) as f64 <= true_age as f64 / 7.875,
            "{age} vs {true_age}"
        );
        c.dec(t0, 0);
        let (n, v) = live(&c, t);
        assert_eq!(n, 0);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn a_drop_that_overtakes_the_move_cancels_out() {
        let c = Cohorts::<2>::new();
        let t0 = 5u64 << 30;
        let e0 = t0 >> BASE_SHIFT;
        c.inc(t0, 0);
        // A creator one lap later wins the level-0 CAS (its object counted
        // there) but has not carried the old count up yet.
        let later = t0 + ((SLOTS as u64) << BASE_SHIFT);
        let slot = &c.first[0].0[(e0 % SLOTS as u64) as usize];
        let (tag, count) = unpack(slot.load(Ordering::Relaxed));
        assert_eq!(count, 1);
        slot.store(pack(tag + 1, 1), Ordering::Relaxed);
        // The old object is dropped now: its -1 goes one level up.
        c.dec(t0, 0);
        let (n, v) = live(&c, later);
        assert_eq!(n, 0, "in flight: +1 moving, -1 landed");
        assert_eq!(v.len(), 1, "only the new object shows: {v:?}");
        // The carry lands on the same chain and cancels the -1.
        c.add(1, e0 >> LEVEL_SHIFT, count, 0);
        c.dec(later, 0);
        let (n, v) = live(&c, later);
        assert_eq!(n, 0);
        assert!(v.is_empty(), "no ghost: {v:?}");
        for row in c.first.iter().chain(c.upper.iter()) {
            for s in &row.0 {
                assert_eq!(unpack(s.load(Ordering::Relaxed)).1, 0);
            }
        }
    }

    /// Random creates, drops and clock jumps against an exact model: the
    /// live count is exact, the oldest reported age is within the documented
    /// bound of the true one, and nothing is left once all are dropped.
    #[test]
    fn random_schedule_matches_the_model() {
        let c = Cohorts::<4>::new();
        let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut now: u64 = 1 << 40;
        let mut live: Vec<(u64, usize)> = Vec::new();
        for step in 0..200_000u32 {
            let r = next();
            now += 1 << (r % 34); // 1 ns .. ~8.6 s jumps
            if r % 7 < 4 || live.is_empty() {
                let stripe = (r >> 8) as usize % 4;
                c.inc(now, stripe);
                live.push((now, stripe));
            } else {
                let i = (r >> 16) as usize % live.len();
                let (birth, stripe) = live.swap_remove(i);
                c.dec(birth, stripe);
            }
            if step % 997 == 0 {
                let (n, v) = live_at(&c, now);
                assert_eq!(n, live.len() as i64);
                assert_eq!(v.iter().map(|x| x.count).sum::<u64>(), live.len() as u64);
                if let Some(true_oldest) = live.iter().map(|l| now - l.0).max() {
                    let got = v.iter().map(|x| x.age_ns).max().unwrap();
                    let bound =
                        true_oldest + (true_oldest as f64 / 7.875) as u64 + (1 << BASE_SHIFT);
                    assert!(
                        got >= true_oldest && got <= bound,
                        "step {step}: oldest {got} vs true {true_oldest}"
                    );
                }
            }
        }
        for (birth, stripe) in live.drain(..) {
            c.dec(birth, stripe);
        }
        let (n, v) = live_at(&c, now);
        assert_eq!(n, 0);
        assert!(v.is_empty(), "{v:?}");
    }

    fn live_at(c: &Cohorts<4>, now: u64) -> (i64, Vec<Cohort>) {
        let mut v = Vec::new();
        let t = c.read(now, |x| v.push(x));
        (t, v)
    }
}
