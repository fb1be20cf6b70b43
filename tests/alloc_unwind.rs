//! Sampled stacks are walked by leakscope's caching unwinder (not the much
//! slower system unwinder) on ordinary threads, and its stacks name the
//! user's functions with the user's frame first, on the main thread, on a
//! spawned thread, and through a deep recursion.

use std::hint::black_box;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

#[inline(never)]
fn allocate_in_named_function() -> Vec<u8> {
    black_box(vec![1u8; 333])
}

#[inline(never)]
fn recurse_then_allocate(depth: u32) -> Vec<u8> {
    if depth == 0 {
        return black_box(vec![2u8; 444]);
    }
    let v = recurse_then_allocate(black_box(depth - 1));
    black_box(v)
}

fn first_frame_of(snap: &leakscope::Snapshot, size: u64) -> Vec<String> {
    snap.heap
        .sites
        .iter()
        .filter(|s| s.live_bytes == size)
        .filter_map(|s| s.frames.first().map(|f| f.function.clone()))
        .collect()
}

#[test]
fn caching_unwinder_walks_ordinary_threads() {
    leakscope::set_sample_rate(1);
    let before = leakscope::heap_stats();
    let a = allocate_in_named_function();
    let b = std::thread::spawn(allocate_in_named_function)
        .join()
        .unwrap();
    let c = recurse_then_allocate(20);
    let after = leakscope::heap_stats();
    leakscope::set_sample_rate(512 * 1024);

    assert!(after.samples >= before.samples + 3);
    assert_eq!(
        after.system_unwinds, before.system_unwinds,
        "every sample here should have been walked by the caching unwinder"
    );
    let snap = leakscope::snapshot();
    let named = first_frame_of(&snap, 333);
    assert!(
        named
            .iter()
            .filter(|f| f.contains("allocate_in_named_function"))
            .count()
            >= 1,
        "{named:?}"
    );
    let deep = snap
        .heap
        .sites
        .iter()
        .find(|s| s.live_bytes == 444)
        .expect("the recursion's sample");
    let depth = deep
        .frames
        .iter()
        .filter(|f| f.function.contains("recurse_then_allocate"))
        .count();
    assert_eq!(depth, 21, "{:#?}", deep.frames);
    drop((a, b, c));
}
