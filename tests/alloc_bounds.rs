//! The caps: the live-sample table and the stack table fill up, overflow is
//! counted in `dropped_samples`, exact totals stay exact, and leakscope's
//! metadata stays bounded.

#![allow(clippy::vec_box)] // one heap block per object is the point

use std::hint::black_box;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// Allocates one box at the end of a call path chosen by the bits of `path`:
/// each level calls through one of two call sites, so 13 levels make up to
/// 8192 distinct stacks.
#[inline(never)]
fn path(bits: u32, depth: u32, out: &mut Vec<Box<u64>>) {
    if depth == 0 {
        out.push(black_box(Box::new(u64::from(bits))));
        return;
    }
    if bits & 1 == 0 {
        path(bits >> 1, depth - 1, out);
    } else {
        path_b(bits >> 1, depth - 1, out);
    }
    black_box(depth);
}

#[inline(never)]
fn path_b(bits: u32, depth: u32, out: &mut Vec<Box<u64>>) {
    path(bits, depth, out);
    black_box(depth);
}

fn caps_are_hit_counted_and_bounded() {
    let meta_start = leakscope::heap_stats().metadata_bytes;
    leakscope::set_sample_rate(1);

    // 1. More distinct stacks than the stack table holds.
    let mut boxes = Vec::with_capacity(1 << 13);
    let d0 = leakscope::heap_stats().dropped_samples;
    for bits in 0..(1u32 << 13) {
        path(bits, 13, &mut boxes);
    }
    let d1 = leakscope::heap_stats().dropped_samples;
    assert!(d1 > d0, "stack table overflow is counted");
    let snap = leakscope::snapshot();
    let overflow = snap
        .heap
        .sites
        .iter()
        .find(|s| s.frames[0].function.contains("stack table full"))
        .expect("overflow site is listed");
    assert!(overflow.live_objects > 0);
    drop(snap);
    drop(boxes);

    // 2. More live samples than the live table holds.
    let n = 150_000;
    let before = leakscope::heap_stats();
    let mut many: Vec<Box<u32>> = Vec::with_capacity(n);
    for i in 0..n {
        many.push(black_box(Box::new(i as u32)));
    }
    let after = leakscope::heap_stats();
    assert!(
        after.dropped_samples - before.dropped_samples >= (n - 115_000) as u64,
        "live table overflow counted: {after:?}"
    );
    // Exact totals are unaffected by the caps.
    assert_eq!(after.allocations - before.allocations, n as u64 + 1);
    assert!(after.live_samples <= 1 << 17);
    drop(many);

    // 3. Metadata stays bounded: fixed tables plus a bounded symbol cache.
    let s = leakscope::heap_stats();
    assert!(
        s.metadata_bytes < meta_start + 64 * 1024 * 1024,
        "metadata {} -> {}",
        meta_start,
        s.metadata_bytes
    );
    leakscope::set_sample_rate(leakscope::alloc::DEFAULT_SAMPLE_RATE);
}

/// `harness = false` (see Cargo.toml): the test runner's own threads would
/// otherwise allocate at unpredictable moments (blocking on its result
/// channel allocates), and this file asserts exact process-wide deltas.
fn main() {
    caps_are_hit_counted_and_bounded();
    println!("test caps_are_hit_counted_and_bounded ... ok");
    println!("test result: ok. 1 passed; 0 failed");
}
