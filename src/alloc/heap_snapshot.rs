//! Reading the allocator: the exact totals ([`heap_stats`]), the heap
//! part of a snapshot ([`heap_snapshot`]), and the lighter read behind
//! `/metrics` ([`heap_metrics`]), built from the counter blocks, the sample
//! tables and the tables' maintained per-stack state.
//!
//! Nothing here runs on the allocation path. All of it runs under the
//! re-entrancy guard, so its memory is leakscope's metadata; the result is
//! cloned out into the caller's memory after the guard is released (the
//! guard's invariant: memory allocated under it is freed under it).
//! [`as_metadata`] does the same for any other reader (the debug server's
//! routes, the exporters): what a scrape allocates never shows in the
//! application's `live_bytes` or `peak_live_bytes`, only its final body.
//!
//! # Lock discipline
//!
//! Every read preallocates its buffers outside the tables' lock (their
//! capacities are the tables' fixed limits), takes the lock, copies into
//! them without allocating, and releases it; grouping, symbolizing, sorting
//! and rendering happen after. What each read copies under the lock:
//!
//! - [`heap_metrics`] (`/metrics`): one small row per interned stack (at
//!   most 3072 + the overflow site: its maintained allocated and live
//!   estimates), plus the frames of at most [`PENDING_PER_SCRAPE`] stacks
//!   not symbolized yet; no live sample. Known stacks' labels come from
//!   the first-frame cache (`stack.rs`); new ones are symbolized within a
//!   per-scrape budget ([`stack::ScrapeBudget`]), the rest labelled
//!   `[unsymbolized stack 0x…]` until a later read resolves them.
//! - [`heap_snapshot`] and [`heap_profile_view`] (snapshots, profiles, the
//!   leak report): every stack's row, the frames of the stacks not in the
//!   per-stack frame cache yet (`stack.rs`: after the first full read, none),
//!   and every live sample (at most 114 688): ages are per sample, so they
//!   cannot be maintained. Cached stacks are not symbolized again; a
//!   profile reads their frames where the cache keeps them, a snapshot
//!   copies them into its sites.
//!
//! Without a time window (`crate::window`), both take each site's live
//! objects, bytes and sample count from the same maintained sums, so
//! `/metrics` rendered from either is the same text. With one, a heap read
//! keeps only the live samples in it and records in `HeapSnapshot::filter`
//! the window and what it kept of the whole.

use core::sync::atomic::Ordering;
use core::time::Duration;
use std::collections::HashMap;

use super::counters::{self, META_LIVE};
use super::guard::Guard;
use super::sampler::current_rate;
use super::stack::{self, CachedStack};
use super::table::{self, Live, OVERFLOW_STACK};
use super::unwind;
use crate::histogram::{bucket_index, Histogram, BUCKETS};
use crate::snapshot::{Frame, HeapFilter, HeapSite, HeapSnapshot, HeapStats};
use crate::window::Window;

/// How many per-thread counter blocks have ever been in use at once (the
/// pool's high-water mark, at most 1024). Threads that exit return their
/// block, so a service that creates threads forever stays at its peak
/// thread count. Diagnostics for tests and dashboards.
pub(crate) fn thread_blocks_high_water() -> usize {
    counters::high_water()
}

/// See [`crate::testing::last_table_read`].
pub(crate) fn last_table_read() -> (u64, u64) {
    table::last_read()
}

/// See [`crate::testing::metadata_live_raw`].
pub(crate) fn metadata_live_raw() -> i64 {
    META_LIVE.load(Ordering::Relaxed)
}

/// The exact totals and the sampler's counts ([`crate::heap_stats`]).
pub(crate) fn heap_stats() -> HeapStats {
    let t = counters::totals();
    let (symbolizer_bytes, symbolizer_budget_bytes, symbolizer_evictions) =
        crate::symbolize::published();
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
        symbolizer_bytes,
        symbolizer_budget_bytes,
        symbolizer_evictions,
    }
}

/// leakscope's own memory: the fixed tables and pool, what it allocated
/// under the guard, and what the unwinder mapped.
fn metadata_bytes() -> u64 {
    let dynamic = META_LIVE.load(Ordering::Relaxed).max(0) as u64;
    (table::TABLE_BYTES + counters::POOL_BYTES) as u64 + dynamic + unwind::mapped_bytes()
}

/// Runs `f` under the re-entrancy guard (everything it allocates is
/// leakscope metadata) and returns a copy of its result made in the
/// caller's memory; the guarded original is freed under the guard.
///
/// A caller already under the guard gets `f`'s result as it is (no copy):
/// it is leakscope's memory either way, freed under the caller's guard.
pub(crate) fn as_metadata<T: Clone>(f: impl FnOnce() -> T) -> T {
    if super::guard::is_entered() {
        return f();
    }
    let guarded = {
        let _g = Guard::enter();
        f()
    };
    let out = guarded.clone();
    {
        let _g = Guard::enter();
        drop(guarded);
    }
    out
}

/// Builds the heap part of a snapshot. The work (copying the tables,
/// grouping, symbolizing) runs under the guard, in leakscope's metadata
/// memory; the result is then cloned out into the caller's memory.
pub(crate) fn heap_snapshot(now: u64, window: &Window) -> HeapSnapshot {
    as_metadata(|| {
        let (mut heap, stacks) = build_heap_snapshot(now, window);
        for (site, stack) in heap.sites.iter_mut().zip(stacks) {
            site.frames = stack.map_or_else(overflow_frames, CachedStack::to_frames);
        }
        heap
    })
}

/// What a heap profile reads: the heap part of a snapshot as
/// [`heap_snapshot`] builds it, but every site's `frames` left empty and
/// its stack given aside, in the same order, as the per-stack frame cache
/// holds it (`None`: the overflow site, `[leakscope: stack table full]`),
/// so a profile interns each stack's frames without copying them. Must be
/// called under the guard (everything here is leakscope's memory).
pub(crate) fn heap_profile_view(
    now: u64,
    window: &Window,
) -> (HeapSnapshot, Vec<Option<&'static CachedStack>>) {
    debug_assert!(super::guard::is_entered());
    build_heap_snapshot(now, window)
}

/// The frames of the overflow site (see [`heap_profile_view`]).
pub(crate) fn overflow_frames() -> Vec<Frame> {
    vec![Frame::new("[leakscope: stack table full]", None, None)]
}

/// The heap part of a snapshot as `/metrics` needs it, from maintained
/// state (see the module docs): the exact totals, and one site per stack
/// with its first frame (the labels), its live objects, bytes and samples
/// and its allocated objects and bytes, stacks with the same first frame
/// merged into one site. Sites are in no particular order; their other
/// fields (ages, lifetimes) are empty.
pub(crate) fn heap_metrics() -> HeapSnapshot {
    as_metadata(build_heap_metrics)
}

/// Stacks whose frames one `/metrics` read copies for symbolization, at
/// most (the rest wait for the next read).
pub(crate) const PENDING_PER_SCRAPE: usize = 256;

/// Live samples of one stack, summed.
#[derive(Clone, Default)]
struct LiveAgg {
    objects: f64,
    bytes: f64,
    samples: u64,
    oldest: u64,
    ages: [f64; BUCKETS],
    age_bytes: [f64; BUCKETS],
    age_sum_secs: f64,
}

/// The totals of a heap snapshot, without sites.
fn totals(stats: &HeapStats) -> HeapSnapshot {
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
        symbolizer_bytes: stats.symbolizer_bytes,
        symbolizer_budget_bytes: stats.symbolizer_budget_bytes,
        symbolizer_evictions: stats.symbolizer_evictions,
        allocator_active: counters::is_active(),
        sites: Vec::new(),
        filter: None,
    }
}

/// [`heap_metrics`]' work, under the caller's guard.
fn build_heap_metrics() -> HeapSnapshot {
    let stats = heap_stats();
    let mut rows = Vec::with_capacity(table::STACK_CAPACITY + 1);
    let mut pending = Vec::with_capacity(PENDING_PER_SCRAPE);
    {
        let t = table::lock();
        t.read_stacks(&mut rows, |id| !stack::has_first_frame(id), &mut pending);
    }
    if !pending.is_empty() {
        stack::symbolize_pending(&pending);
    }
    drop(pending);
    // One site per distinct first frame (the labels): stacks sharing it
    // are summed here, as the exporter would sum them, so it formats each
    // label once (a `site` label costs a `getcwd`) rather than per stack.
    // Each stack's estimates are rounded before summing, as in a full
    // snapshot, so the text is the same.
    let mut heap = totals(&stats);
    heap.sites.reserve_exact(rows.len());
    let mut by_frame: HashMap<&'static Frame, usize> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let agg = &row.agg;
        if agg.alloc_objects == 0.0 && agg.live.samples == 0 {
            continue;
        }
        let site = HeapSite {
            live_bytes: round(agg.live.bytes()),
            live_objects: round(agg.live.objects()),
            allocated_bytes: round(agg.alloc_bytes),
            allocated_objects: round(agg.alloc_objects),
            live_samples: agg.live.samples,
            ..HeapSite::default()
        };
        let first = (row.id != OVERFLOW_STACK)
            .then(|| stack::first_frame(row.id))
            .flatten();
        match first {
            Some([f]) => {
                if let Some(&k) = by_frame.get(f) {
                    let into = &mut heap.sites[k];
                    into.live_bytes += site.live_bytes;
                    into.live_objects += site.live_objects;
                    into.allocated_bytes += site.allocated_bytes;
                    into.allocated_objects += site.allocated_objects;
                    into.live_samples += site.live_samples;
                } else {
                    by_frame.insert(f, heap.sites.len());
                    heap.sites.push(HeapSite {
                        frames: vec![f.clone()],
                        ..site
                    });
                }
            }
            first => {
                let frames = match first {
                    Some(f) => f.to_vec(),
                    None if row.id == OVERFLOW_STACK => overflow_frames(),
                    None => vec![stack::placeholder(row.hash)],
                };
                heap.sites.push(HeapSite { frames, ..site });
            }
        }
    }
    drop(by_frame);
    heap
}

/// [`heap_snapshot`]'s work, under the caller's guard: the sites without
/// their frames, and each site's stack (see [`heap_profile_view`]).
fn build_heap_snapshot(
    now: u64,
    window: &Window,
) -> (HeapSnapshot, Vec<Option<&'static CachedStack>>) {
    let stats = heap_stats();
    let filtered = window.is_some();
    // What the window kept, of how much (objects, bytes, samples).
    let (mut kept, mut total) = ((0f64, 0f64, 0u64), (0f64, 0f64, 0u64));
    // Preallocate, copy under the lock, work without it.
    let mut rows = Vec::with_capacity(table::STACK_CAPACITY + 1);
    let mut ips = Vec::with_capacity(table::STACK_CAPACITY);
    let mut live: Vec<Live> = Vec::with_capacity(table::LIVE_CAPACITY);
    {
        let t = table::lock();
        // Frames are copied only for stacks not in the per-stack cache.
        t.read_stacks(&mut rows, |id| stack::cached_stack(id).is_none(), &mut ips);
        t.read_live(&mut live);
    }
    // Stack id -> its row (the overflow site is the last row).
    let mut row_of = vec![u32::MAX; table::MAX_STACKS];
    for (k, r) in rows.iter().enumerate() {
        if r.id != OVERFLOW_STACK {
            row_of[r.id as usize] = k as u32;
        }
    }
    let overflow_row = rows.len().saturating_sub(1) as u32;
    let mut by_row = vec![LiveAgg::default(); rows.len()];
    for e in &live {
        let age = crate::clock::age_ns(now, e.birth);
        let bytes = e.weight * e.size as f64;
        total = (total.0 + e.weight, total.1 + bytes, total.2 + 1);
        if !window.keeps(e.birth, age) {
            continue;
        }
        kept = (kept.0 + e.weight, kept.1 + bytes, kept.2 + 1);
        let k = if e.stack == OVERFLOW_STACK {
            overflow_row
        } else {
            row_of[e.stack as usize & (table::MAX_STACKS - 1)]
        };
        let Some(a) = by_row.get_mut(k as usize) else {
            continue;
        };
        a.objects += e.weight;
        a.bytes += bytes;
        a.samples += 1;
        a.oldest = a.oldest.max(age);
        let b = bucket_index(age);
        a.ages[b] += e.weight;
        a.age_bytes[b] += bytes;
        a.age_sum_secs += e.weight * age as f64 / 1e9;
    }
    drop(live);
    let mut sites = Vec::with_capacity(rows.len());
    let mut next_ips = ips.iter().peekable();
    for (row, la) in rows.iter().zip(by_row) {
        let stack_ips = next_ips.next_if(|s| s.id == row.id);
        let agg = &row.agg;
        let has_live = if !filtered {
            agg.live.samples > 0
        } else {
            la.samples > 0
        };
        if agg.alloc_objects == 0.0 && !has_live {
            continue;
        }
        // Known stacks come from the per-stack cache: no symbolizer call.
        let stack = match stack_ips {
            _ if row.id == OVERFLOW_STACK => None,
            Some(s) => stack::stack_frames(row.id, s.ips(), true),
            None => stack::cached_stack(row.id),
        };
        sites.push((make_site(agg, la, !filtered), stack));
    }
    drop(ips);
    sites.sort_by(|(a, _), (b, _)| {
        b.live_bytes
            .cmp(&a.live_bytes)
            .then(b.allocated_bytes.cmp(&a.allocated_bytes))
    });
    let mut heap = totals(&stats);
    if filtered {
        heap.filter = Some(HeapFilter {
            kept_objects: round(kept.0),
            kept_bytes: round(kept.1),
            kept_samples: kept.2,
            total_objects: round(total.0),
            total_bytes: round(total.1),
            total_samples: total.2,
            ..window.filter(now)
        });
    }
    let (s, stacks): (Vec<_>, Vec<_>) = sites.into_iter().unzip();
    heap.sites = s;
    (heap, stacks)
}

/// A non-negative estimate rounded to a count (0 for NaN or below zero).
fn round(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        x.round() as u64
    } else {
        0
    }
}

/// One stack's aggregates and live samples as a [`HeapSite`]. `maintained`:
/// take the live objects, bytes and samples from the maintained sums (no
/// age filter), as [`heap_metrics`] does, rather than from `la`.
fn make_site(agg: &table::Agg, la: LiveAgg, maintained: bool) -> HeapSite {
    let lifetimes: Vec<u64> = agg.lifetimes.iter().map(|&c| round(c)).collect();
    let ages: Vec<u64> = la.ages.iter().map(|&c| round(c)).collect();
    let (live_bytes, live_objects, live_samples) = if maintained {
        (
            round(agg.live.bytes()),
            round(agg.live.objects()),
            agg.live.samples,
        )
    } else {
        (round(la.bytes), round(la.objects), la.samples)
    };
    HeapSite {
        frames: Vec::new(),
        live_bytes,
        live_objects,
        allocated_bytes: round(agg.alloc_bytes),
        allocated_objects: round(agg.alloc_objects),
        live_samples,
        oldest_age: (la.samples > 0).then(|| Duration::from_nanos(la.oldest)),
        lifetimes: Histogram::from_counts(&lifetimes, agg.lifetime_sum_secs),
        live_ages: Histogram::from_counts(&ages, la.age_sum_secs),
        live_bytes_by_age: la.age_bytes.iter().map(|&b| round(b)).collect(),
    }
}
