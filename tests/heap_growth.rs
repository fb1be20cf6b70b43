//! Heap sites read on their own (no `track!`): the growth rule flags a
//! steadily growing site within its window and never a flat table, stacks
//! that differ only in return addresses are one site, and blocks grown by
//! `realloc` say so. The example `heap_growth` (a `serde_json` cache
//! leaking beside a 16 MiB table) reports the leak first.
//!
//! One test, phases in order: they share the process's clock and sample
//! rate (`testing::advance_clock`, `set_sample_rate`).

use std::hint::black_box;
use std::time::Duration;

use leakscope::{HeapSite, Snapshot};

#[path = "../examples/heap_growth.rs"]
mod example;
#[path = "common/pprof.rs"]
mod pprof_common;

fn sites<'a>(snap: &'a Snapshot, func: &'a str) -> Vec<&'a HeapSite> {
    snap.heap
        .sites
        .iter()
        .filter(|s| s.frames.iter().any(|f| f.function.contains(func)))
        .collect()
}

#[test]
fn heap_sites_growth_merging_and_realloc() {
    example_reports_the_leak_first();
    realloc_growth_is_counted();
    sixteen_stacks_are_one_site();
    growth_is_flagged_in_its_window_and_a_flat_table_never();
}

/// A function's name without angle brackets: the v0 mangling scheme (the
/// nightly toolchain's, under `scripts/asan.sh`) demangles an inherent
/// method as `<app::ResponseCache>::remember`, the legacy one as
/// `app::ResponseCache::remember`.
fn unbracket(name: &str) -> String {
    name.replace(['<', '>'], "")
}

fn example_reports_the_leak_first() {
    let snap = example::scenario();
    let report = snap.to_string();
    let first = &snap.heap.sites[0];
    assert!(first.suspected.is_some(), "{report}");
    assert!(
        first
            .frames
            .iter()
            .any(|f| f.function.contains("serde_json"))
            && first
                .frames
                .iter()
                .any(|f| unbracket(&f.function).contains("ResponseCache::remember")),
        "{report}"
    );
    assert_eq!(first.allocating_crate.as_deref(), Some("serde_json"));
    let table = sites(&snap, "build_lookup_table");
    assert_eq!(table.len(), 1, "{report}");
    assert!(table[0].live_bytes >= 15 << 20, "{report}");
    assert_eq!(table[0].suspected, None, "{report}");
    // Listed first in the text too, with its reason and crates.
    let listing = report
        .split("top sites, suspected leaks first")
        .nth(1)
        .expect("a heap listing");
    let first_line_after = listing.lines().nth(2).unwrap_or("");
    assert!(
        first_line_after.contains("SUSPECTED LEAK: live bytes grew steadily"),
        "{report}"
    );
    assert!(
        report.contains("called from the application's `ResponseCache::remember`"),
        "{report}"
    );
    assert!(report.contains("by allocating crate"), "{report}");
    // The map's nodes and its values are two suspected sites or more,
    // summed under the application line they are all allocated for.
    let suspects = snap
        .heap
        .sites
        .iter()
        .filter(|s| s.suspected.is_some())
        .count();
    assert!(suspects >= 2, "{report}");
    let group = report
        .lines()
        .find(|l| l.contains("suspected sites, all called from"))
        .unwrap_or_else(|| panic!("no group line\n{report}"));
    assert!(
        group.contains(&format!("in {suspects} suspected sites"))
            && unbracket(group).contains("ResponseCache::remember (")
            && group.contains("heap_growth.rs:44)"),
        "{group}\n{report}"
    );
    // The JSON lists it first as well (same order), with the reason.
    let json = serde_json::to_value(&snap).expect("serializes");
    let j0 = &json["heap"]["sites"][0];
    assert!(j0["suspected"].is_string(), "{j0}");
    assert!(j0["growth_bytes_per_second"].as_f64().unwrap_or(0.0) > 0.0);
    black_box(json);
}

#[inline(never)]
fn start_buffer() -> Vec<u8> {
    Vec::with_capacity(4096)
}

#[inline(never)]
fn grow_buffer(v: &mut Vec<u8>) {
    let c = v.capacity();
    v.reserve_exact(c * 2 - v.len());
}

fn realloc_growth_is_counted() {
    leakscope::set_sample_rate(1);
    let mut v = black_box(start_buffer());
    for _ in 0..10 {
        leakscope::testing::advance_clock(Duration::from_secs(1));
        grow_buffer(&mut v);
    }
    let snap = leakscope::snapshot();
    let s = sites(&snap, "grow_buffer")
        .into_iter()
        .find(|s| s.live_bytes >= 4 << 20)
        .unwrap_or_else(|| panic!("the grown buffer's site\n{snap}"));
    assert_eq!(s.max_grown, 10, "{snap}");
    let last = s.last_grown.expect("last growth");
    assert!(last < Duration::from_secs(1), "{last:?}");
    // Its age is its first allocation's.
    assert!(
        s.oldest_age.unwrap_or_default() >= Duration::from_secs(10),
        "{snap}"
    );
    assert!(snap
        .to_string()
        .contains("grown by realloc up to 10 times, last"));
    leakscope::testing::advance_clock(Duration::from_secs(5));
    let snap = leakscope::snapshot();
    let s = sites(&snap, "grow_buffer")
        .into_iter()
        .find(|s| s.max_grown == 10)
        .unwrap_or_else(|| panic!("the grown buffer's site\n{snap}"));
    assert!(s.last_grown.unwrap_or_default() >= Duration::from_secs(5));
    drop(v);
}

#[inline(never)]
fn leak_one_of_sixteen(k: u8) {
    black_box(Box::leak(Box::new([k; 256])));
}

/// Sixteen calls on one line: sixteen return addresses, one symbolized
/// stack (function, file and line of every frame are the same).
#[rustfmt::skip]
#[inline(never)]
fn sixteen_call_sites(k: u8) {
    match k % 16 { 0 => leak_one_of_sixteen(0), 1 => leak_one_of_sixteen(1), 2 => leak_one_of_sixteen(2), 3 => leak_one_of_sixteen(3), 4 => leak_one_of_sixteen(4), 5 => leak_one_of_sixteen(5), 6 => leak_one_of_sixteen(6), 7 => leak_one_of_sixteen(7), 8 => leak_one_of_sixteen(8), 9 => leak_one_of_sixteen(9), 10 => leak_one_of_sixteen(10), 11 => leak_one_of_sixteen(11), 12 => leak_one_of_sixteen(12), 13 => leak_one_of_sixteen(13), 14 => leak_one_of_sixteen(14), _ => leak_one_of_sixteen(15) }
}

fn sixteen_stacks_are_one_site() {
    leakscope::set_sample_rate(1);
    for k in 0..160u8 {
        sixteen_call_sites(black_box(k));
    }
    let snap = leakscope::snapshot();
    let s = sites(&snap, "leak_one_of_sixteen");
    assert_eq!(s.len(), 1, "{snap}");
    assert_eq!(s[0].live_objects, 160, "{snap}");
    assert_eq!(s[0].live_bytes, 160 * 256, "{snap}");
    if cfg!(debug_assertions) {
        // Unoptimised: sixteen distinct call instructions.
        assert_eq!(s[0].stacks, 16, "{snap}");
        assert!(
            snap.to_string()
                .contains("16 stacks with identical frames merged"),
            "{snap}"
        );
        // The heap profile keeps one stack per return address.
        let p = pprof_common::decode(&leakscope::pprof::heap_profile());
        let name = |loc: u64| -> Vec<&str> {
            p.location[loc as usize - 1]
                .line
                .iter()
                .map(|l| {
                    let f = &p.function[l.function_id as usize - 1];
                    p.string_table[f.name as usize].as_str()
                })
                .collect()
        };
        let stacks: std::collections::HashSet<&Vec<u64>> = p
            .sample
            .iter()
            .filter(|smp| {
                smp.location_id
                    .iter()
                    .any(|&l| name(l).iter().any(|n| n.ends_with("leak_one_of_sixteen")))
            })
            .map(|smp| &smp.location_id)
            .collect();
        assert_eq!(stacks.len(), 16, "profile stacks of the sixteen call sites");
    }
}

/// A table filled once: never flagged.
#[inline(never)]
fn build_flat_table() -> Vec<u8> {
    vec![1u8; 16 << 20]
}

#[inline(never)]
fn leak_chunk(keep: &mut Vec<Box<[u8]>>) {
    keep.push(vec![2u8; 16 << 10].into_boxed_slice());
}

#[inline(never)]
fn noise_request(n: usize) -> usize {
    let v: Vec<Box<[u8; 512]>> = (0..n).map(|i| Box::new([i as u8; 512])).collect();
    black_box(v.len())
}

fn growth_is_flagged_in_its_window_and_a_flat_table_never() {
    leakscope::set_sample_rate(4096);
    let table = black_box(build_flat_table());
    let mut keep = Vec::with_capacity(1024);
    for k in 0..=12u32 {
        // Ten seconds per step: one growth slot.
        leakscope::testing::advance_clock(Duration::from_secs(10));
        for _ in 0..4 {
            leak_chunk(&mut keep);
        }
        black_box(noise_request(64 + (k as usize % 3) * 32));
        let snap = leakscope::snapshot();
        let leak = sites(&snap, "leak_chunk");
        let leak = leak
            .iter()
            .find(|s| !s.frames.is_empty() && s.live_bytes >= 32 << 10)
            .unwrap_or_else(|| panic!("step {k}: the leak's site\n{snap}"));
        // Step k: the leak's history spans k slots (k + 1 if a real-time
        // slot boundary fell inside a step).
        if k < 5 {
            assert_eq!(leak.suspected, None, "step {k}\n{snap}");
        }
        if (2..5).contains(&k) {
            // Under a minute: not flagged, but growing, and listed before
            // the flat table that holds far more.
            assert!(leak.growing, "step {k}\n{snap}");
            let rank = |f: &str| {
                snap.heap
                    .sites
                    .iter()
                    .position(|s| s.frames.iter().any(|fr| fr.function.contains(f)))
            };
            assert!(
                rank("leak_chunk") < rank("build_flat_table"),
                "step {k}: the growing leak is listed first\n{snap}"
            );
            assert!(snap.to_string().contains("GROWING: live bytes +"), "{snap}");
        }
        if k >= 7 {
            assert!(!leak.growing, "suspected, no longer just growing");
        }
        if k >= 7 {
            assert!(leak.suspected.is_some(), "step {k}\n{snap}");
            // Exported as a growth gauge for the site.
            let text = leakscope::prometheus::render(&snap);
            let label = format!("{{function=\"{}\",", leak.frames[0].function);
            let line = text
                .lines()
                .find(|l| {
                    l.starts_with("leakscope_heap_site_growth_bytes_per_second{")
                        && l.contains(&label)
                })
                .unwrap_or_else(|| panic!("step {k}: no growth series\n{text}"));
            let v: f64 = line.rsplit(' ').next().unwrap_or("").parse().unwrap_or(0.0);
            assert!(v > 4.0 * 1024.0, "{line}");
            assert!(
                leak.growth_bytes_per_second > 4.0 * 1024.0,
                "step {k}: {}",
                leak.growth_bytes_per_second
            );
        }
        for s in sites(&snap, "build_flat_table") {
            assert_eq!(s.suspected, None, "step {k}\n{snap}");
            assert!(!s.growing, "step {k}\n{snap}");
        }
        for s in sites(&snap, "noise_request") {
            assert_eq!(s.suspected, None, "step {k}\n{snap}");
        }
    }
    // The leak stops: once its history is flat, it is no longer flagged,
    // and the table never was.
    for k in 0..17u32 {
        leakscope::testing::advance_clock(Duration::from_secs(10));
        black_box(noise_request(64));
        if k == 16 {
            let snap = leakscope::snapshot();
            for s in sites(&snap, "leak_chunk") {
                assert_eq!(s.suspected, None, "{snap}");
            }
            for s in sites(&snap, "build_flat_table") {
                assert_eq!(s.suspected, None, "{snap}");
            }
        }
    }
    black_box((&table, &keep));
}
