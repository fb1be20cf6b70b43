//! leakscope's own allocations (stack interning, symbolization, snapshot
//! building) never recurse into the recorder, never deadlock, and never show
//! up in the user's totals or sites: they are counted as metadata instead.

use std::hint::black_box;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

#[inline(never)]
fn user_work() -> Vec<String> {
    (0..2000).map(|i| format!("item {i}")).collect()
}

fn symbolization_is_metadata_not_user_heap() {
    leakscope::set_sample_rate(1);
    let kept = user_work();
    let meta_before = leakscope::heap_stats().metadata_bytes;

    // The first snapshot symbolizes (the DWARF reader allocates a lot).
    let live_before = leakscope::heap_stats().live_bytes;
    let snap = leakscope::snapshot();
    let report = snap.to_string();
    drop(snap);
    drop(report);
    let s = leakscope::heap_stats();
    // Everything the snapshot handed us was freed: the user's live bytes are
    // unchanged, although symbolization left caches behind...
    assert_eq!(s.live_bytes, live_before, "snapshot leaked into user heap");
    // ...which are leakscope's metadata.
    assert!(
        s.metadata_bytes > meta_before,
        "symbol caches are counted as metadata ({meta_before} -> {})",
        s.metadata_bytes
    );

    // No sampled site comes from the symbolizer or the recorder.
    let snap = leakscope::snapshot();
    for site in &snap.heap.sites {
        for f in &site.frames {
            let bad_prefixes = [
                "gimli::",
                "addr2line::",
                "backtrace::",
                "leakscope::alloc::stack",
                "leakscope::alloc::unwind",
            ];
            for bad in bad_prefixes {
                let name = f.function.trim_start_matches('<');
                assert!(!name.starts_with(bad), "{bad} in a user site: {site:?}");
            }
        }
    }
    // The user's own site is there, first frame = the user's function.
    assert!(
        snap.heap
            .sites
            .iter()
            .any(|s| s.frames[0].function.ends_with("user_work")
                || s.frames[0].function.contains("user_work::{{closure}}")),
        "{snap}"
    );
    black_box(kept);
    leakscope::set_sample_rate(leakscope::alloc::DEFAULT_SAMPLE_RATE);
}

/// `harness = false` (see Cargo.toml): the test runner's own threads would
/// otherwise allocate at unpredictable moments (blocking on its result
/// channel allocates), and this file asserts exact process-wide deltas.
fn main() {
    symbolization_is_metadata_not_user_heap();
    println!("test symbolization_is_metadata_not_user_heap ... ok");
    println!("test result: ok. 1 passed; 0 failed");
}
