//! The heap profile reads each stack's symbolized frames from the
//! per-stack cache: a second profile of the same stacks makes no call into
//! the symbolizer, and decodes to the same content as the first and as a
//! profile of a full snapshot. The cache holds at most one entry per
//! interned stack. Own process: the tracking allocator is this binary's
//! global allocator; one test function (the sample rate is process-wide).

#[path = "common/pprof.rs"]
mod pprof_common;

use std::hint::black_box;
use std::time::Duration;

use leakscope::pprof::{self, ProfileOptions};
use pprof_common::decode;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

#[inline(never)]
fn left(depth: u32, i: u32, out: &mut Vec<Vec<u8>>) {
    step(depth + 1, i, out);
    black_box(());
}

#[inline(never)]
fn right(depth: u32, i: u32, out: &mut Vec<Vec<u8>>) {
    step(depth + 1, i, out);
    black_box(());
}

/// Allocates from one of 2^4 distinct stacks, chosen by the bits of `i`.
#[inline(never)]
fn step(depth: u32, i: u32, out: &mut Vec<Vec<u8>>) {
    if depth == 4 {
        for k in 0..3 {
            out.push(black_box(vec![1u8; 100 + k]));
        }
    } else if i >> depth & 1 == 0 {
        left(depth, i, out);
    } else {
        right(depth, i, out);
    }
}

/// The decoded profile without its time stamp and its age labels' values
/// (the samples age between two profiles).
fn content(gz: &[u8]) -> pprof_common::proto::Profile {
    let mut p = decode(gz);
    p.time_nanos = 0;
    for s in &mut p.sample {
        for l in &mut s.label {
            l.num = 0;
        }
    }
    p
}

#[test]
fn second_profile_reads_the_stack_cache() {
    let mut live = Vec::with_capacity(64);
    leakscope::set_sample_rate(1);
    for i in 0..16 {
        step(0, i, &mut live);
    }
    leakscope::set_sample_rate(0);
    // Every live sample in the last age bucket (past 7 days), so the
    // profiles below split the stacks the same way however long they take.
    leakscope::testing::advance_clock(Duration::from_secs(8 * 86_400));

    let first = pprof::profile_now(&ProfileOptions::heap());
    let (stacks, bytes) = leakscope::testing::stack_cache();
    assert!(
        stacks >= 16,
        "every stack sampled above is cached: {stacks}"
    );
    // One entry per interned stack at most, each at most 48 addresses of
    // 24 bytes plus its header.
    assert!(stacks <= 3072, "{stacks}");
    assert!(
        bytes <= stacks * (48 * 24 + 64),
        "{bytes} bytes for {stacks}"
    );

    let lookups = leakscope::testing::symbolizer_lookups();
    let second = pprof::profile_now(&ProfileOptions::heap());
    assert_eq!(
        leakscope::testing::symbolizer_lookups(),
        lookups,
        "a profile of cached stacks makes no symbolizer call"
    );
    assert_eq!(leakscope::testing::stack_cache(), (stacks, bytes));
    let route = leakscope::server::route("/debug/pprof/heap", "");
    assert_eq!(leakscope::testing::symbolizer_lookups(), lookups);

    // Same content: twice from the cache, through the route, and from a
    // full snapshot.
    let a = content(&first);
    assert_eq!(a, content(&second));
    assert_eq!(a, content(&route.body));
    let snap = leakscope::snapshot();
    assert_eq!(a, content(&pprof::profile(&snap, &ProfileOptions::heap())));
    // The leak view too (min_age applied per sample in both).
    let hour = Duration::from_secs(3600);
    let old = leakscope::server::route("/debug/pprof/heap", "min_age=1h");
    let old_snap = leakscope::snapshot_with(&leakscope::SnapshotOptions::new().min_age(hour));
    assert_eq!(
        content(&old.body),
        content(&pprof::profile(
            &old_snap,
            &ProfileOptions::heap().min_age(hour)
        ))
    );
    assert_eq!(leakscope::testing::symbolizer_lookups(), lookups);
    // The frames are the cached ones: the leaf function is the profile's.
    let leaf = snap
        .heap
        .sites
        .iter()
        .find(|s| s.frames.iter().any(|f| f.function.ends_with("::step")))
        .expect("a sampled site in step");
    assert!(
        leaf.frames[0].function.ends_with("::step"),
        "{:?}",
        leaf.frames[0]
    );
    drop(live);
}
