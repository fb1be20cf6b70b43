//! Lifetimes of freed samples land in the right buckets, ages of live ones
//! grow, and a reallocated sampled block keeps its age and stays counted
//! once. Uses `clock::advance` instead of sleeping.

use std::hint::black_box;
use std::time::Duration;

use leakscope::histogram::{bucket_index, BOUNDS_NS};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

#[inline(never)]
#[allow(clippy::vec_box)] // one heap block per object is the point
fn make_short_lived(n: usize) -> Vec<Box<[u8; 512]>> {
    (0..n).map(|_| black_box(Box::new([7u8; 512]))).collect()
}

#[inline(never)]
fn make_growing_buffer() -> Vec<u64> {
    let mut v = Vec::with_capacity(4);
    v.push(black_box(1));
    v
}

fn sites_of<'a>(
    snap: &'a leakscope::Snapshot,
    func: &'a str,
) -> impl Iterator<Item = &'a leakscope::HeapSite> + 'a {
    snap.heap
        .sites
        .iter()
        .filter(move |s| s.frames.iter().any(|f| f.function.contains(func)))
}

#[test]
fn lifetimes_ages_and_realloc() {
    leakscope::set_sample_rate(1);

    // 1. Freed after two (virtual) hours: lifetimes in the (1h, 3h] bucket.
    let boxes = make_short_lived(100);
    leakscope::testing::advance_clock(Duration::from_secs(2 * 3600));
    let snap = leakscope::snapshot();
    let site = sites_of(&snap, "make_short_lived")
        .find(|s| s.live_objects == 100)
        .unwrap_or_else(|| panic!("site with 100 live boxes\n{snap}"));
    let age = site.oldest_age.expect("live samples have an age");
    assert!(age >= Duration::from_secs(7200), "age {age:?}");
    let two_h = bucket_index(7_200_000_000_000);
    assert_eq!(site.live_ages.counts[two_h], 100, "live ages bucket");
    assert_eq!(site.live_bytes_by_age[two_h], 100 * 512);
    let frames = site.frames.clone();
    drop(boxes);
    let snap = leakscope::snapshot();
    let site = snap
        .heap
        .sites
        .iter()
        .find(|s| s.frames == frames)
        .expect("the boxes' site is still listed");
    let lifetimes = site.lifetimes.counts[two_h];
    assert_eq!(
        lifetimes, 100,
        "lifetimes bucket (le {} ns)",
        BOUNDS_NS[two_h]
    );
    assert!(sites_of(&snap, "make_short_lived").all(|s| s.live_objects == 0));

    // 2. A sampled block grown by realloc stays one live allocation, at its
    //    new size, and keeps the age it had before it moved.
    let mut v = make_growing_buffer();
    leakscope::testing::advance_clock(Duration::from_secs(600));
    for i in 0..100_000u64 {
        v.push(black_box(i));
    }
    let cap_bytes = (v.capacity() * 8) as u64;
    let snap = leakscope::snapshot();
    let live: Vec<_> = snap
        .heap
        .sites
        .iter()
        .filter(|s| s.live_objects > 0 && s.live_bytes == cap_bytes)
        .collect();
    assert_eq!(
        live.len(),
        1,
        "one live site holds the grown buffer\n{snap}"
    );
    assert_eq!(live[0].live_objects, 1);
    let age = live[0].oldest_age.expect("age");
    assert!(
        age >= Duration::from_secs(600),
        "realloc kept the age: {age:?}"
    );
    // The original small allocation is no longer live anywhere.
    assert!(sites_of(&snap, "make_growing_buffer").all(|s| s.live_bytes != 32));
    drop(v);
    leakscope::set_sample_rate(leakscope::alloc::DEFAULT_SAMPLE_RATE);
}
