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
//! the window and what it kept of the whole. Both also carry each site's
//! growth history (`growth.rs`), aligned on the tables' latest slot read
//! under the same lock, so the growth gauge is the same text too.
//!
//! After reading, [`heap_snapshot`] merges sites whose symbolized stacks
//! are identical ([`merge_identical_stacks`]), judges each site's growth
//! and names its allocating crate; [`heap_profile_view`] does not merge
//! (a profile keeps one location per return address).

use core::sync::atomic::Ordering;
use core::time::Duration;
use std::collections::HashMap;

use super::counters::{self, META_LIVE};
use super::growth::GrowthSeries;
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
///
/// Then, unlike [`heap_profile_view`] (pprof keeps one location per
/// stack), sites whose symbolized stacks are identical are merged
/// ([`merge_identical_stacks`]), each site is judged by its growth history
/// (`growth.rs`) and given its allocating crate, and suspected sites are
/// put first.
pub(crate) fn heap_snapshot(now: u64, window: &Window) -> HeapSnapshot {
    as_metadata(|| {
        let (mut heap, stacks) = build_heap_snapshot(now, window);
        for (site, stack) in heap.sites.iter_mut().zip(stacks) {
            site.frames = stack.map_or_else(overflow_frames, CachedStack::to_frames);
        }
        let sites = core::mem::take(&mut heap.sites);
        heap.sites = merge_identical_stacks(sites);
        judge_sites(&mut heap);
        heap
    })
}

/// Merges sites whose symbolized stacks are identical: the same
/// (function, file, line) for every frame, in order (addresses may differ:
/// an unrolled loop, a duplicated or monomorphised copy of the same code,
/// calls on one line). Estimates and histograms are summed, the oldest age
/// is the oldest of the members', the growth histories are summed slot by
/// slot (`growth.rs`). The first member (the largest, in the input's order)
/// keeps its frames' addresses. Keeps the input's order of first members.
///
/// Costs one hash-map entry per site (at most 3,073) after the live walk;
/// see `benches/heap_snapshot.rs` for the whole snapshot's time.
pub(crate) fn merge_identical_stacks(sites: Vec<HeapSite>) -> Vec<HeapSite> {
    // Where each site goes: the index of the first site with its frames.
    // Sites are grouped by a hash of their (function, file, line) list,
    // then compared frame by frame within a group (no key is built).
    let same = |a: &HeapSite, b: &HeapSite| {
        a.frames.len() == b.frames.len()
            && a.frames
                .iter()
                .zip(&b.frames)
                .all(|(x, y)| x.line == y.line && x.function == y.function && x.file == y.file)
    };
    let targets: Vec<usize> = {
        let mut first: HashMap<u64, usize> = HashMap::with_capacity(sites.len());
        sites
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let t = *first.entry(frames_hash(s)).or_insert(i);
                // Equal hashes of different frames (a 64-bit collision,
                // vanishingly rare) are left unmerged, never merged wrongly.
                if same(&sites[t], s) {
                    t
                } else {
                    i
                }
            })
            .collect()
    };
    let mut out: Vec<Option<HeapSite>> = Vec::with_capacity(sites.len());
    for (i, site) in sites.into_iter().enumerate() {
        let t = targets[i];
        if t == i {
            out.push(Some(site));
        } else if let Some(Some(into)) = out.get_mut(t) {
            merge_site(into, &site);
            out.push(None);
        } else {
            out.push(Some(site));
        }
    }
    out.into_iter().flatten().collect()
}

/// A hash of a site's (function, line) list, a word at a time (FxHash's
/// step): the merge's grouping hash. Equal frame lists hash equal; the
/// file is left to the comparison (a function's name and line rarely
/// repeat across files, and hashing long paths cost more than the rest of
/// the merge).
fn frames_hash(s: &HeapSite) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = 0;
    let mut add = |w: u64| h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    for f in &s.frames {
        let b = f.function.as_bytes();
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            add(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        w[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        add(u64::from_le_bytes(w));
        add(u64::from(f.line.unwrap_or(0)) | (b.len() as u64) << 32);
    }
    h
}

/// Adds `s` into `into` (see [`merge_identical_stacks`]).
fn merge_site(into: &mut HeapSite, s: &HeapSite) {
    into.live_bytes += s.live_bytes;
    into.live_objects += s.live_objects;
    into.allocated_bytes += s.allocated_bytes;
    into.allocated_objects += s.allocated_objects;
    into.live_samples += s.live_samples;
    into.oldest_age = into.oldest_age.max(s.oldest_age);
    into.lifetimes.merge(&s.lifetimes);
    into.live_ages.merge(&s.live_ages);
    if into.live_bytes_by_age.len() < s.live_bytes_by_age.len() {
        into.live_bytes_by_age.resize(s.live_bytes_by_age.len(), 0);
    }
    for (a, b) in into.live_bytes_by_age.iter_mut().zip(&s.live_bytes_by_age) {
        *a += b;
    }
    into.history.merge(&s.history);
    into.max_grown = into.max_grown.max(s.max_grown);
    into.last_grown = match (into.last_grown, s.last_grown) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    into.stacks += s.stacks;
}

/// Judges every site by its growth history, names its allocating crate,
/// and orders the sites: suspected first, then growing (both fastest
/// growing first), then by live bytes, then by allocated bytes.
fn judge_sites(heap: &mut HeapSnapshot) {
    for s in &mut heap.sites {
        let v = s.history.judge(s.oldest_age, heap.sample_rate);
        s.growth_bytes_per_second = v.rate;
        s.growth_window = v.window;
        s.suspected = v.suspected;
        s.growing = v.growing;
        s.allocating_crate = Some(
            crate::format::allocating_origin(
                s.frames
                    .iter()
                    .map(|f| (f.function.as_str(), f.file.as_deref())),
            )
            .name()
            .to_string(),
        );
    }
    // Suspected, then growing (the rule over less than a minute), then the
    // rest; the first two fastest growing first.
    let rank = |s: &HeapSite| 2 * u8::from(s.suspected.is_some()) + u8::from(s.growing);
    heap.sites.sort_by(|a, b| {
        rank(b)
            .cmp(&rank(a))
            .then_with(|| {
                if rank(a) > 0 {
                    b.growth_bytes_per_second
                        .total_cmp(&a.growth_bytes_per_second)
                } else {
                    core::cmp::Ordering::Equal
                }
            })
            .then(b.live_bytes.cmp(&a.live_bytes))
            .then(b.allocated_bytes.cmp(&a.allocated_bytes))
    });
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
    /// The most growths of one sample, and the latest growth time.
    grown: u32,
    last_grown: u64,
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
    let anchor;
    {
        let t = table::lock();
        t.read_stacks(&mut rows, |id| !stack::has_first_frame(id), &mut pending);
        anchor = t.slot;
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
            history: GrowthSeries::from_ring(&agg.growth, anchor),
            stacks: 1,
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
                    into.history.merge(&site.history);
                    into.stacks += 1;
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
    let anchor;
    {
        let t = table::lock();
        // Frames are copied only for stacks not in the per-stack cache.
        t.read_stacks(&mut rows, |id| stack::cached_stack(id).is_none(), &mut ips);
        t.read_live(&mut live);
        anchor = t.slot;
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
        if e.grown > 0 {
            a.grown = a.grown.max(e.grown);
            a.last_grown = a.last_grown.max(e.last_grown);
        }
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
        sites.push((make_site(agg, la, !filtered, now, anchor), stack));
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
///
/// `now` dates the last realloc growth; `anchor` aligns the growth history
/// (`growth.rs`).
fn make_site(agg: &table::Agg, la: LiveAgg, maintained: bool, now: u64, anchor: u32) -> HeapSite {
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
        max_grown: u64::from(la.grown),
        last_grown: (la.grown > 0)
            .then(|| Duration::from_nanos(crate::clock::age_ns(now, la.last_grown))),
        stacks: 1,
        history: GrowthSeries::from_ring(&agg.growth, anchor),
        ..HeapSite::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::table::Growth;

    fn site(
        line: u32,
        address: u64,
        bytes: u64,
        oldest_s: u64,
        slot_bytes: &[(u32, i64)],
    ) -> HeapSite {
        let mut g = Growth::default();
        for &(s, b) in slot_bytes {
            g.note(s, b);
        }
        let frames = vec![
            Frame::new("app::leaf", Some("src/a.rs".into()), Some(7)).with_address(address, false),
            Frame::new("app::caller", Some("src/a.rs".into()), Some(line))
                .with_address(address + 1, false),
        ];
        HeapSite {
            frames,
            live_bytes: bytes,
            live_objects: 1,
            live_samples: 1,
            allocated_bytes: bytes,
            oldest_age: Some(Duration::from_secs(oldest_s)),
            live_ages: Histogram::from_counts(&[1], 0.0),
            live_bytes_by_age: vec![bytes, 1],
            history: GrowthSeries::from_ring(&g, 20),
            stacks: 1,
            max_grown: oldest_s,
            last_grown: Some(Duration::from_secs(oldest_s)),
            ..HeapSite::default()
        }
    }

    /// Same (function, file, line) everywhere, different addresses: one
    /// site, everything summed or combined; another line stays apart.
    #[test]
    fn identical_symbolized_stacks_merge() {
        let sites = vec![
            site(10, 0x1000, 100, 5, &[(18, 50), (20, 100)]),
            site(11, 0x2000, 7, 1, &[(19, 7)]),
            site(10, 0x3000, 30, 9, &[(20, 30)]),
        ];
        let mut want = sites[0].history;
        want.merge(&sites[2].history);
        let m = merge_identical_stacks(sites);
        assert_eq!(m.len(), 2);
        let a = &m[0];
        assert_eq!(a.frames[0].address, 0x1000, "the first member's frames");
        assert_eq!((a.live_bytes, a.live_objects, a.live_samples), (130, 2, 2));
        assert_eq!(a.allocated_bytes, 130);
        assert_eq!(a.oldest_age, Some(Duration::from_secs(9)));
        assert_eq!(a.live_ages.count(), 2);
        assert_eq!(a.live_bytes_by_age, vec![130, 2]);
        assert_eq!(a.history, want);
        assert_eq!(a.stacks, 2);
        assert_eq!(a.max_grown, 9);
        assert_eq!(a.last_grown, Some(Duration::from_secs(5)));
        assert_eq!(m[1].live_bytes, 7);
        assert_eq!(m[1].stacks, 1);
    }
}
