//! Our profiles decode (prost) and follow Go's heap-profile layout: sample
//! types, default sample type, period, values, stacks with inlined lines,
//! age labels, mappings. Built on a synthetic snapshot with a known pattern.

#[path = "common/pprof.rs"]
mod pprof_common;

use std::collections::HashMap;
use std::time::Duration;

use leakscope::histogram::{bucket_index, Histogram, BUCKETS};
use leakscope::pprof::{self, ProfileOptions};
use leakscope::{Frame, HeapSite, Snapshot};
use pprof_common::{decode, proto};

const MIN: Duration = Duration::from_secs(60);

/// A live-age breakdown: (age, objects, bytes) per group of allocations.
fn site(frames: Vec<Frame>, live: &[(Duration, u64, u64)], alloc: (u64, u64)) -> HeapSite {
    let mut s = HeapSite::default();
    s.frames = frames;
    s.allocated_objects = alloc.0;
    s.allocated_bytes = alloc.1;
    s.live_ages = Histogram::empty();
    s.live_bytes_by_age = vec![0; BUCKETS];
    for &(age, objs, bytes) in live {
        s.live_ages.record_n(age, objs);
        s.live_bytes_by_age[bucket_index(age.as_nanos() as u64)] += bytes;
        s.live_objects += objs;
        s.live_bytes += bytes;
        s.live_samples += objs;
        s.oldest_age = s.oldest_age.max(Some(age));
    }
    s
}

fn f(name: &str, line: u32, addr: u64, inlined: bool) -> Frame {
    Frame::new(name, Some(format!("src/{name}.rs")), Some(line)).with_address(addr, inlined)
}

/// Site A: `fill_cache` inlined into `leaky_cache`, called from `main`; two
/// objects 20 minutes old (2048 B) and one 2 ms old (1024 B) live, 5
/// allocated (5120 B). Site B: `short_lived` from `main`, 100 allocated
/// (100 000 B), none live.
fn known_snapshot() -> Snapshot {
    let mut snap = Snapshot::default();
    snap.heap.sample_rate = 1;
    snap.heap.live_bytes = 3072;
    snap.heap.allocated_bytes = 105_120;
    snap.heap.sites.push(site(
        vec![
            f("fill_cache", 7, 0x1000, true),
            f("leaky_cache", 12, 0x1000, false),
            f("main", 30, 0x2000, false),
        ],
        &[(20 * MIN, 2, 2048), (Duration::from_millis(2), 1, 1024)],
        (5, 5120),
    ));
    snap.heap.sites.push(site(
        vec![
            f("short_lived", 3, 0x3000, false),
            f("main", 31, 0x2008, false),
        ],
        &[],
        (100, 100_000),
    ));
    snap
}

fn s(p: &proto::Profile, i: i64) -> &str {
    &p.string_table[i as usize]
}

fn leaf_name(p: &proto::Profile, sample: &proto::Sample) -> String {
    let loc = &p.location[sample.location_id[0] as usize - 1];
    let func = &p.function[loc.line[0].function_id as usize - 1];
    s(p, func.name).to_owned()
}

/// Sums of each value per leaf function.
fn totals_by_leaf(p: &proto::Profile) -> HashMap<String, [i64; 4]> {
    let mut m: HashMap<String, [i64; 4]> = HashMap::new();
    for smp in &p.sample {
        let e = m.entry(leaf_name(p, smp)).or_default();
        for (t, v) in e.iter_mut().zip(&smp.value) {
            *t += v;
        }
    }
    m
}

#[test]
fn layout_matches_go_heap_profiles() {
    let p = decode(&pprof::profile(&known_snapshot(), &ProfileOptions::heap()));
    assert_eq!(p.string_table[0], "");
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (s(&p, t.r#type), s(&p, t.unit)))
        .collect();
    assert_eq!(
        types,
        [
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes"),
        ]
    );
    let period_type = p.period_type.as_ref().expect("period_type");
    assert_eq!(
        (s(&p, period_type.r#type), s(&p, period_type.unit)),
        ("space", "bytes")
    );
    assert_eq!(p.period, 1);
    assert_eq!(s(&p, p.default_sample_type), "inuse_space");
    assert!(p.time_nanos > 0);
    for smp in &p.sample {
        assert_eq!(smp.value.len(), 4);
    }

    let allocs = decode(&pprof::profile(
        &known_snapshot(),
        &ProfileOptions::allocs(),
    ));
    assert_eq!(s(&allocs, allocs.default_sample_type), "alloc_space");
}

#[test]
fn values_per_stack_sum_to_the_sites() {
    let p = decode(&pprof::profile(&known_snapshot(), &ProfileOptions::heap()));
    let t = totals_by_leaf(&p);
    assert_eq!(t["fill_cache"], [5, 5120, 3, 3072]);
    assert_eq!(t["short_lived"], [100, 100_000, 0, 0]);
    assert_eq!(t.len(), 2);
}

#[test]
fn stacks_have_inlined_lines_and_shared_functions() {
    let p = decode(&pprof::profile(&known_snapshot(), &ProfileOptions::heap()));
    let a = p
        .sample
        .iter()
        .find(|x| leaf_name(&p, x) == "fill_cache")
        .expect("sample of site A");
    assert_eq!(a.location_id.len(), 2, "one location per distinct address");
    let leaf = &p.location[a.location_id[0] as usize - 1];
    assert_eq!(leaf.id, a.location_id[0]);
    assert_eq!(leaf.address, 0x1000);
    let names: Vec<&str> = leaf
        .line
        .iter()
        .map(|l| s(&p, p.function[l.function_id as usize - 1].name))
        .collect();
    assert_eq!(
        names,
        ["fill_cache", "leaky_cache"],
        "inlined first, caller last"
    );
    assert_eq!(leaf.line[0].line, 7);
    assert_eq!(leaf.line[1].line, 12);
    let func = &p.function[leaf.line[0].function_id as usize - 1];
    assert_eq!(s(&p, func.filename), "src/fill_cache.rs");

    // `main` appears at two addresses (two locations) but is one function.
    let mains: Vec<&proto::Function> = p
        .function
        .iter()
        .filter(|fun| s(&p, fun.name) == "main")
        .collect();
    assert_eq!(mains.len(), 1);
    // Ids are 1-based and dense.
    for (i, l) in p.location.iter().enumerate() {
        assert_eq!(l.id, i as u64 + 1);
    }
    for (i, fun) in p.function.iter().enumerate() {
        assert_eq!(fun.id, i as u64 + 1);
    }
}

#[test]
fn live_samples_carry_age_labels_in_nanoseconds() {
    let p = decode(&pprof::profile(&known_snapshot(), &ProfileOptions::heap()));
    let mut ages = Vec::new();
    for smp in p.sample.iter().filter(|x| leaf_name(&p, x) == "fill_cache") {
        let age: Vec<&proto::Label> = smp.label.iter().filter(|l| s(&p, l.key) == "age").collect();
        if smp.value[2] == 0 {
            assert!(age.is_empty(), "the freed part has no age");
            assert_eq!(smp.value, [2, 2048, 0, 0]);
            continue;
        }
        assert_eq!(age.len(), 1);
        assert_eq!(s(&p, age[0].num_unit), "nanoseconds");
        ages.push((age[0].num, smp.value[3]));
    }
    ages.sort();
    // Bucket upper bounds: 2 ms -> 2.5 ms, 20 min -> 30 min.
    assert_eq!(
        ages,
        [(2_500_000, 1024), (30 * 60 * 1_000_000_000, 2048)],
        "one sample per age bucket"
    );
}

#[test]
fn min_age_keeps_only_old_memory_in_use() {
    let opts = ProfileOptions::heap().min_age(10 * MIN);
    let p = decode(&pprof::profile(&known_snapshot(), &opts));
    let t = totals_by_leaf(&p);
    assert_eq!(
        t["fill_cache"],
        [5, 5120, 2, 2048],
        "alloc totals unchanged"
    );
    assert_eq!(t["short_lived"], [100, 100_000, 0, 0]);
}

#[test]
fn main_binary_mapping_comes_first_with_build_id() {
    let p = decode(&pprof::profile(&known_snapshot(), &ProfileOptions::heap()));
    let exe = std::fs::read_link("/proc/self/exe").expect("procfs");
    let m = p.mapping.first().expect("a mapping for the main binary");
    assert_eq!(m.id, 1);
    assert_eq!(s(&p, m.filename), exe.to_str().unwrap());
    assert!(m.memory_start < m.memory_limit);
    assert!(m.has_functions && m.has_filenames && m.has_line_numbers && m.has_inline_frames);
    // Rust's Linux toolchains link with a GNU build id (20 bytes, SHA-1).
    let id = s(&p, m.build_id);
    assert_eq!(id.len(), 40, "build id {id:?}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    // A real code address of this binary resolves into its mapping.
    let here = main_binary_mapping_comes_first_with_build_id as *const () as u64;
    assert!(p
        .mapping
        .iter()
        .any(|m| m.memory_start <= here && here < m.memory_limit));
}

#[test]
fn empty_snapshot_gives_a_valid_empty_profile() {
    let p = decode(&pprof::profile(
        &Snapshot::default(),
        &ProfileOptions::heap(),
    ));
    assert!(p.sample.is_empty());
    assert_eq!(p.sample_type.len(), 4);
    // heap_profile() works with or without the tracking allocator installed.
    let live = decode(&pprof::heap_profile());
    assert_eq!(live.sample_type.len(), 4);
    let allocs = decode(&pprof::allocs_profile());
    assert_eq!(s(&allocs, allocs.default_sample_type), "alloc_space");
}

#[test]
fn text_form_reads_like_go_debug_1() {
    let t = pprof::text(&known_snapshot(), &ProfileOptions::heap());
    let mut lines = t.lines();
    assert_eq!(
        lines.next(),
        Some("heap profile: 3: 3072 [105: 105120] @ heap/2")
    );
    assert!(t.contains("\n3: 3072 [5: 5120] @ 0x1000 0x2000\n"), "{t}");
    assert!(
        t.contains("#\t0x1000\tfill_cache\tsrc/fill_cache.rs:7\n"),
        "{t}"
    );
    assert!(t.contains("# age <= 30m: 2: 2048\n"), "{t}");
    assert!(t.contains("\n0: 0 [100: 100000] @ 0x3000 0x2008\n"), "{t}");
    // Largest in-use first.
    assert!(t.find("fill_cache").unwrap() < t.find("short_lived").unwrap());
    assert!(t.contains("# LiveBytes = 3072\n"), "{t}");

    let old = pprof::text(&known_snapshot(), &ProfileOptions::heap().min_age(10 * MIN));
    assert!(
        old.starts_with("heap profile: 2: 2048 [105: 105120] @ heap/2\n"),
        "{old}"
    );
    assert!(!old.contains("# age <= 2.5ms"), "{old}");
}
