//! Heap-site growth: each site's live bytes over the last time slots, as
//! the sample tables keep them per stack (`table.rs`, [`Growth`]), aligned
//! into a [`GrowthSeries`] that merged sites sum slot by slot, and the rule
//! that flags a site whose live bytes grow steadily.
//!
//! # The series
//!
//! A read aligns every stack's history on the tables' latest slot (the
//! *anchor*, `Tables::slot`): value `i` of a series is the stack's live
//! bytes at the end of slot `anchor - 15 + i` (10 s slots, so the window
//! is 2 min 40 s ending at the last sampled event), carried forward over
//! slots without a change. Before a stack's oldest entry its live bytes
//! were 0, unless its ring wrapped: then the values before it are unknown
//! and the series starts later (`known_from`). Merged sites sum their
//! values and start where the latest-starting member does.
//!
//! # The rule
//!
//! Modelled on the tracked objects' growth rule (`objects/history.rs`),
//! for bytes estimated from samples. From the series' first known,
//! non-zero value to its end:
//!
//! - it spans at least [`MIN_SPAN_SLOTS`] slots (one minute);
//! - it went up in at least a third of the steps and down in at most a
//!   quarter of them, and never fell below where it started (steady, not
//!   a noisy site that happens to end higher);
//! - it ended at least 10% and at least [`FLOOR_SAMPLES`] sample
//!   intervals (`8 × rate` bytes, and at least 64 KiB) above its start: a
//!   few samples more or less is the noise of sampling, not growth;
//! - its oldest live block is at least half the span old: old memory is
//!   kept while new memory piles up (a cache replacing its entries as it
//!   grows is not flagged by this rule).
//!
//! A site that meets all of this over at least [`GROWING_SLOTS`] slots but
//! less than a minute is not flagged; it is *growing*, and snapshots list
//! it after the suspected sites and before the rest (a leak that has run
//! for 30 s is not listed below an old, flat table).
//!
//! A table filled once and then flat never matches: its series is flat
//! after the slot it was filled in. A table still being filled (a cache
//! warming for minutes) does, while it fills; its `suspected` text says
//! what was seen so the reader can judge.

use core::time::Duration;

use super::table::{Growth, GROWTH_LEN, GROWTH_SLOT_NS};
use crate::format::{fmt_bytes, fmt_duration};

/// Slots the rule's window must span (6 × 10 s = 1 minute).
pub(crate) const MIN_SPAN_SLOTS: usize = 6;
/// Slots a site must have grown over, by the same rule but the span, to be
/// ranked as growing before it can be flagged (one 10 s step: a table
/// filled across a slot boundary reads as growing for at most three steps,
/// after which one step up in several is no longer steady).
pub(crate) const GROWING_SLOTS: usize = 1;
/// Net growth must exceed this many sample intervals (`rate` bytes each).
pub(crate) const FLOOR_SAMPLES: u64 = 8;
/// ... and this many bytes (for tiny sample rates).
pub(crate) const FLOOR_BYTES: u64 = 64 << 10;

/// A site's live bytes per slot over the growth window (see the module
/// docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GrowthSeries {
    values: [i64; GROWTH_LEN],
    /// Index of the first known value (`GROWTH_LEN`: none).
    known_from: usize,
}

impl Default for GrowthSeries {
    fn default() -> Self {
        GrowthSeries {
            values: [0; GROWTH_LEN],
            known_from: GROWTH_LEN,
        }
    }
}

/// What the rule found for one site.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Verdict {
    /// Net live bytes gained per second over `window`.
    pub(crate) rate: f64,
    /// The span the rate is measured over (`None`: under one slot).
    pub(crate) window: Option<Duration>,
    /// The rule's reason, when it fires.
    pub(crate) suspected: Option<String>,
    /// Not flagged (yet), but the rule holds over a shorter span (at least
    /// [`GROWING_SLOTS`] slots): ranked after suspected sites and before
    /// the rest, so a leak that has run for less than a minute is not
    /// listed below an old, flat table.
    pub(crate) growing: bool,
}

impl GrowthSeries {
    /// One stack's history aligned on `anchor` (the tables' latest slot).
    pub(crate) fn from_ring(g: &Growth, anchor: u32) -> Self {
        let first = anchor.saturating_sub(GROWTH_LEN as u32 - 1);
        let mut values = [0; GROWTH_LEN];
        let mut known_from = if g.wrapped { None } else { Some(0) };
        let mut entries = g.entries().peekable();
        let mut v = 0;
        for (i, value) in values.iter_mut().enumerate() {
            let slot = first.saturating_add(i as u32);
            while let Some((_, b)) = entries.next_if(|&(s, _)| s <= slot) {
                v = b;
                known_from.get_or_insert(i);
            }
            *value = v;
        }
        GrowthSeries {
            values,
            known_from: known_from.unwrap_or(GROWTH_LEN),
        }
    }

    /// Adds `other` slot by slot (a merged site's history).
    pub(crate) fn merge(&mut self, other: &GrowthSeries) {
        for (a, b) in self.values.iter_mut().zip(&other.values) {
            *a = a.saturating_add(*b);
        }
        self.known_from = self.known_from.max(other.known_from);
    }

    /// The part the rule and the rate read: from the first known, non-zero
    /// value to the end.
    fn observed(&self) -> &[i64] {
        let known = &self.values[self.known_from.min(GROWTH_LEN)..];
        let start = known.iter().position(|&v| v > 0).unwrap_or(known.len());
        &known[start..]
    }

    /// Net live bytes per second over the observed part and its span; 0
    /// and `None` under one slot. Integer inputs: the same series gives
    /// the same rate bit for bit (the `/metrics` paths compare).
    pub(crate) fn rate(&self) -> (f64, Option<Duration>) {
        let v = self.observed();
        if v.len() < 2 {
            return (0.0, None);
        }
        let span_ns = (v.len() as u64 - 1) * GROWTH_SLOT_NS;
        let net = v[v.len() - 1] as f64 - v[0] as f64;
        (
            net / (span_ns as f64 / 1e9),
            Some(Duration::from_nanos(span_ns)),
        )
    }

    /// The growth rule (module docs) for a site with this history, its
    /// oldest live block's age and the sample rate.
    pub(crate) fn judge(&self, oldest: Option<Duration>, sample_rate: u64) -> Verdict {
        let (rate, window) = self.rate();
        let mut verdict = Verdict {
            rate,
            window,
            suspected: None,
            growing: false,
        };
        let v = self.observed();
        let Some(span) = window else {
            return verdict;
        };
        let steps = v.len() - 1;
        if steps < GROWING_SLOTS {
            return verdict;
        }
        let (first, last) = (v[0], v[steps]);
        let up = v.windows(2).filter(|w| w[1] > w[0]).count();
        let down = v.windows(2).filter(|w| w[1] < w[0]).count();
        let never_fell = v.iter().all(|&x| x >= first);
        let floor = sample_rate
            .saturating_mul(FLOOR_SAMPLES)
            .max(FLOOR_BYTES)
            .min(i64::MAX as u64) as i64;
        let grew =
            last.saturating_sub(first) >= floor && (last as i128) * 10 >= (first as i128) * 11;
        let steady = up * 3 >= steps && down * 4 <= steps && never_fell;
        let oldest = oldest.unwrap_or_default();
        let kept = oldest >= span / 2;
        if grew && steady && kept && steps < MIN_SPAN_SLOTS {
            verdict.growing = true;
        } else if grew && steady && kept {
            verdict.suspected = Some(format!(
                "live bytes grew steadily from {} to {} over {} (+{}/s; up in {up} and down in {down} of {steps} slots of {}s), old memory kept while new piles up (its oldest live block is {} old)",
                fmt_bytes(first.max(0) as u64),
                fmt_bytes(last.max(0) as u64),
                fmt_duration(span),
                fmt_bytes(rate.max(0.0) as u64),
                GROWTH_SLOT_NS / 1_000_000_000,
                fmt_duration(oldest),
            ));
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(points: &[(u32, i64)]) -> Growth {
        let mut g = Growth::default();
        for &(s, b) in points {
            g.note(s, b);
        }
        g
    }

    const MIB: i64 = 1 << 20;

    /// Growth over 10-50 s: not flagged, but growing; a minute of it is
    /// flagged and no longer merely growing; flat is neither.
    #[test]
    fn growing_before_a_minute_then_flagged() {
        let mut points = Vec::new();
        for k in 0..=8u32 {
            points.push((100 + k, (k as i64 + 1) * MIB));
            let s = GrowthSeries::from_ring(&ring(&points), 100 + k);
            let v = s.judge(Some(Duration::from_secs(10 * u64::from(k) + 5)), 4096);
            match k {
                0 => assert!(!v.growing && v.suspected.is_none(), "{k}: {v:?}"),
                1..=5 => assert!(v.growing && v.suspected.is_none(), "{k}: {v:?}"),
                _ => assert!(!v.growing && v.suspected.is_some(), "{k}: {v:?}"),
            }
        }
        let flat = GrowthSeries::from_ring(&ring(&[(100, 16 * MIB)]), 105);
        let v = flat.judge(Some(Duration::from_secs(3600)), 4096);
        assert!(!v.growing && v.suspected.is_none(), "{v:?}");
        // Filled across a slot boundary: growing for a few steps, then one
        // step up in several is not steady.
        let straddle = ring(&[(100, 8 * MIB), (101, 16 * MIB)]);
        for (anchor, want) in [(101, true), (103, true), (104, false), (115, false)] {
            let s = GrowthSeries::from_ring(&straddle, anchor);
            let v = s.judge(Some(Duration::from_secs(3600)), 4096);
            assert_eq!(v.growing, want, "anchor {anchor}: {v:?}");
            assert!(v.suspected.is_none());
        }
    }

    #[test]
    fn a_table_filled_once_is_never_flagged() {
        // Filled at slot 100, flat for 15 slots, then noise elsewhere moves
        // the anchor on.
        let g = ring(&[(100, 16 * MIB)]);
        for anchor in [100, 101, 110, 115, 130, 500] {
            let s = GrowthSeries::from_ring(&g, anchor);
            let v = s.judge(Some(Duration::from_secs(3600)), 1);
            assert_eq!(v.suspected, None, "anchor {anchor}");
            assert_eq!(v.rate, 0.0, "anchor {anchor}");
        }
    }

    #[test]
    fn steady_growth_is_flagged_after_a_minute() {
        let pts: Vec<(u32, i64)> = (0..16).map(|k| (200 + k, (k as i64 + 1) * MIB)).collect();
        let g = ring(&pts);
        // Five slots in: not yet a minute.
        let s = GrowthSeries::from_ring(&g, 205);
        assert_eq!(s.judge(Some(Duration::from_secs(60)), 4096).suspected, None);
        let s = GrowthSeries::from_ring(&g, 206);
        let v = s.judge(Some(Duration::from_secs(60)), 4096);
        let why = v.suspected.expect("flagged at one minute");
        assert!(
            why.contains("grew steadily from 1.0 MiB to 7.0 MiB over 1m"),
            "{why}"
        );
        assert!((v.rate - MIB as f64 / 10.0).abs() < 1.0, "{}", v.rate);
        // Old memory released (the oldest block is young): not flagged.
        let v = s.judge(Some(Duration::from_secs(5)), 4096);
        assert_eq!(v.suspected, None);
    }

    #[test]
    fn noise_and_small_growth_are_not_flagged() {
        // Up and down around 4 MiB.
        let pts: Vec<(u32, i64)> = (0..16)
            .map(|k| (300 + k, 4 * MIB + if k % 2 == 0 { MIB } else { 0 }))
            .collect();
        let s = GrowthSeries::from_ring(&ring(&pts), 315);
        assert_eq!(
            s.judge(Some(Duration::from_secs(600)), 4096).suspected,
            None
        );
        // Steady but below the floor of 8 sample intervals.
        let pts: Vec<(u32, i64)> = (0..16).map(|k| (300 + k, 10 * MIB + k as i64)).collect();
        let s = GrowthSeries::from_ring(&ring(&pts), 315);
        assert_eq!(
            s.judge(Some(Duration::from_secs(600)), 4096).suspected,
            None
        );
    }

    #[test]
    fn merged_series_sum_slot_by_slot() {
        let a = GrowthSeries::from_ring(&ring(&[(10, 100), (12, 300)]), 15);
        let b = GrowthSeries::from_ring(&ring(&[(11, 50)]), 15);
        let mut m = a;
        m.merge(&b);
        let want: Vec<i64> = (0..16u32)
            .map(|i| {
                let slot = i; // anchor 15: slot i
                (if slot >= 12 {
                    300
                } else if slot >= 10 {
                    100
                } else {
                    0
                }) + if slot >= 11 { 50 } else { 0 }
            })
            .collect();
        assert_eq!(&m.values[..], &want[..]);
        assert_eq!(m.known_from, 0);
    }

    #[test]
    fn a_wrapped_ring_starts_at_its_oldest_entry() {
        let pts: Vec<(u32, i64)> = (0..20).map(|k| (1000 + 2 * k, k as i64)).collect();
        let g = ring(&pts);
        assert!(g.wrapped);
        let s = GrowthSeries::from_ring(&g, 1038);
        // Oldest kept entry: slot 1008 (k = 4); the window starts at 1023.
        assert_eq!(s.known_from, 0);
        assert_eq!(s.values[0], 11);
        let s = GrowthSeries::from_ring(&g, 1040);
        assert_eq!(s.values[15], 19);
        let early = GrowthSeries::from_ring(&g, 1016);
        // Window 1001..=1016: entries before 1008 were overwritten.
        assert_eq!(early.known_from, 7);
    }
}
