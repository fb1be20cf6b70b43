//! Profiles of real allocations at sample rate 1 (every allocation recorded,
//! estimates exact): a known allocation pattern in named functions must come
//! out with exact values, stacks with file and line, age labels and the
//! min_age filter. Own process: the tracking allocator is this binary's
//! global allocator. One test function, because the sample rate and
//! leakscope's clock are process-wide.

#[path = "common/pprof.rs"]
mod pprof_common;

use std::time::Duration;

use leakscope::pprof::{self, ProfileOptions};
use pprof_common::{decode, proto};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

const TWENTY_MIN: Duration = Duration::from_secs(20 * 60);

/// Keeps `n` buffers of `size` bytes (in a vector with room for them).
#[inline(never)]
fn alloc_kept(store: &mut Vec<Vec<u8>>, n: usize, size: usize) {
    for _ in 0..n {
        store.push(std::hint::black_box(Vec::with_capacity(size)));
    }
}

/// Allocates `n` buffers of `size` bytes and frees them.
#[inline(never)]
fn alloc_freed(n: usize, size: usize) {
    for _ in 0..n {
        drop(std::hint::black_box(Vec::<u8>::with_capacity(size)));
    }
}

/// Keeps `n` buffers of `size` bytes, allocated after the clock moved.
#[inline(never)]
fn alloc_young(store: &mut Vec<Vec<u8>>, n: usize, size: usize) {
    for _ in 0..n {
        store.push(std::hint::black_box(Vec::with_capacity(size)));
    }
}

struct View<'a>(&'a proto::Profile);

impl View<'_> {
    fn s(&self, i: i64) -> &str {
        &self.0.string_table[i as usize]
    }
    fn names(&self, loc_id: u64) -> Vec<&str> {
        let loc = &self.0.location[loc_id as usize - 1];
        loc.line
            .iter()
            .map(|l| self.s(self.0.function[l.function_id as usize - 1].name))
            .collect()
    }
    /// Samples whose stack has a frame of a function ending in `func`.
    fn samples_of(&self, func: &str) -> Vec<&proto::Sample> {
        self.0
            .sample
            .iter()
            .filter(|smp| {
                smp.location_id
                    .iter()
                    .any(|&l| self.names(l).iter().any(|n| n.ends_with(func)))
            })
            .collect()
    }
    fn totals(&self, func: &str) -> [i64; 4] {
        let mut t = [0; 4];
        for smp in self.samples_of(func) {
            for (a, v) in t.iter_mut().zip(&smp.value) {
                *a += v;
            }
        }
        t
    }
    fn ages(&self, func: &str) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        for smp in self.samples_of(func) {
            for l in &smp.label {
                if self.s(l.key) == "age" {
                    assert_eq!(self.s(l.num_unit), "nanoseconds");
                    out.push((l.num, smp.value[3]));
                }
            }
        }
        out.sort();
        out
    }
}

#[test]
fn rate_one_profile_matches_the_allocation_pattern() {
    leakscope::set_sample_rate(1);
    let mut kept = Vec::with_capacity(16);
    let mut young = Vec::with_capacity(16);
    alloc_kept(&mut kept, 10, 1000);
    alloc_freed(5, 3000);
    leakscope::testing::advance_clock(TWENTY_MIN);
    alloc_young(&mut young, 3, 500);

    let snap = leakscope::snapshot();
    let p = decode(&pprof::profile(&snap, &ProfileOptions::heap()));
    let v = View(&p);
    assert_eq!(p.period, 1);
    assert_eq!(v.s(p.default_sample_type), "inuse_space");

    // [alloc_objects, alloc_space, inuse_objects, inuse_space], exact at rate 1.
    assert_eq!(v.totals("alloc_kept"), [10, 10_000, 10, 10_000]);
    assert_eq!(v.totals("alloc_freed"), [5, 15_000, 0, 0]);
    assert_eq!(v.totals("alloc_young"), [3, 1_500, 3, 1_500]);

    // Ages: the kept buffers are 20 minutes old (bucket bound 30 min); the
    // young ones were just allocated (a bucket bound of at most a minute).
    assert_eq!(v.ages("alloc_kept"), [(30 * 60 * 1_000_000_000, 10_000)]);
    let young_ages = v.ages("alloc_young");
    assert_eq!(young_ages.iter().map(|a| a.1).sum::<i64>(), 1_500);
    assert!(
        young_ages.iter().all(|a| a.0 <= 60 * 1_000_000_000),
        "{young_ages:?}"
    );
    assert!(v.ages("alloc_freed").is_empty());

    // The allocating function is the leaf (std frames trimmed), with this
    // file and a line, at an address inside the main binary's mapping.
    let smp = v.samples_of("alloc_kept")[0];
    let leaf_id = smp.location_id[0];
    let leaf = &p.location[leaf_id as usize - 1];
    let names = v.names(leaf_id);
    assert!(
        names.iter().any(|n| n.ends_with("alloc_kept")),
        "leaf location is {names:?}"
    );
    let line = leaf
        .line
        .iter()
        .find(|l| {
            v.s(p.function[l.function_id as usize - 1].name)
                .ends_with("alloc_kept")
        })
        .expect("line of alloc_kept");
    let func = &p.function[line.function_id as usize - 1];
    assert!(v.s(func.filename).ends_with("pprof_live.rs"));
    assert!(line.line > 0);
    assert_eq!(leaf.mapping_id, 1, "address {:#x}", leaf.address);
    let m = &p.mapping[0];
    assert!(m.memory_start <= leaf.address && leaf.address < m.memory_limit);
    // The test function is a caller further out.
    assert!(smp.location_id.iter().any(|&l| v
        .names(l)
        .iter()
        .any(|n| n.ends_with("rate_one_profile_matches_the_allocation_pattern"))));

    // min_age: only the old buffers count as in use; allocation totals stay.
    let old = decode(&pprof::profile_now(
        &ProfileOptions::heap().min_age(Duration::from_secs(600)),
    ));
    let o = View(&old);
    assert_eq!(o.totals("alloc_kept"), [10, 10_000, 10, 10_000]);
    assert_eq!(o.totals("alloc_young"), [3, 1_500, 0, 0]);

    // The allocs variant: same values, alloc_space by default.
    let allocs = decode(&pprof::allocs_profile());
    let a = View(&allocs);
    assert_eq!(a.s(allocs.default_sample_type), "alloc_space");
    assert_eq!(a.totals("alloc_freed"), [5, 15_000, 0, 0]);

    // The text form and the flame graph see the same data.
    let text = pprof::text(&snap, &ProfileOptions::heap());
    assert!(text.contains("10: 10000 [10: 10000] @"), "{text}");
    assert!(text.contains("# age <= 30m: 10: 10000"), "{text}");
    #[cfg(feature = "flamegraph")]
    {
        let svg = leakscope::flamegraph::heap_svg(&snap).expect("svg");
        let svg = String::from_utf8(svg).expect("utf-8 svg");
        assert!(svg.contains("alloc_kept"));
        assert!(!svg.contains("alloc_freed"), "freed memory is not in use");
    }
    drop((kept, young));
}
