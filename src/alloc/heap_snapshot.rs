//! Reading the allocator: the exact totals ([`heap_stats`]) and the heap
//! part of a snapshot ([`heap_snapshot`]), built from the counter blocks
//! and the sample tables.
//!
//! Nothing here runs on the allocation path. A snapshot copies the tables
//! under their lock and does the rest (grouping live samples by stack,
//! symbolizing) without it, all under the re-entrancy guard, so its memory
//! is leakscope's metadata; the result is cloned out into the caller's
//! memory after the guard is released (the guard's invariant: memory
//! allocated under it is freed under it).

use core::sync::atomic::Ordering;
use core::time::Duration;
use std::collections::HashMap;

use super::counters::{self, META_LIVE};
use super::guard::Guard;
use super::sampler::current_rate;
use super::table::{self, Live, OVERFLOW_STACK};
use super::{stack, unwind};
use crate::histogram::{bucket_index, Histogram, BUCKETS};
use crate::snapshot::{Frame, HeapSite, HeapSnapshot, HeapStats};

/// How many per-thread counter blocks have ever been in use at once (the
/// pool's high-water mark, at most 1024). Threads that exit return their
/// block, so a service that creates threads forever stays at its peak
/// thread count. Diagnostics for tests and dashboards.
pub(crate) fn thread_blocks_high_water() -> usize {
    counters::high_water()
}

/// The exact totals and the sampler's counts ([`crate::heap_stats`]).
pub(crate) fn heap_stats() -> HeapStats {
    let t = counters::totals();
    let live_samples;
    {
        let _g = Guard::enter();
        // A statement, so the tables' guard goes before `_g` (see
        // `path::take_sample`).
        live_samples = table::lock().live_count as u64;
    }
    HeapStats {
        allocations: t.allocs,
        frees: t.frees,
        reallocs: t.reallocs,
        allocated_bytes: t.alloc_bytes,
        freed_bytes: t.freed_bytes,
        live_bytes: t.alloc_bytes.saturating_sub(t.freed_bytes),
        live_allocations: t.allocs.saturating_sub(t.frees),
        peak_live_bytes: counters::peak_live_bytes(),
        sample_rate: current_rate(),
        samples: table::SAMPLES.load(Ordering::Relaxed),
        live_samples,
        dropped_samples: table::DROPPED.load(Ordering::Relaxed),
        system_unwinds: unwind::counts().1,
        metadata_bytes: metadata_bytes(),
    }
}

/// leakscope's own memory: the fixed tables and pool, what it allocated
/// under the guard, and what the unwinder mapped.
fn metadata_bytes() -> u64 {
    let dynamic = META_LIVE.load(Ordering::Relaxed).max(0) as u64;
    (table::TABLE_BYTES + counters::POOL_BYTES) as u64 + dynamic + unwind::mapped_bytes()
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

/// [`heap_snapshot`]'s work, under the caller's guard.
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
            Some(ips) => stack::symbolize(&ips),
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

/// A non-negative estimate rounded to a count (0 for NaN or below zero).
fn round(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        x.round() as u64
    } else {
        0
    }
}

/// One stack's aggregates and live samples as a [`HeapSite`].
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
