//! Tracked objects with the tracking allocator installed: registration,
//! labels and holders allocate through it without trouble, and one snapshot
//! shows both the heap and the objects.

use leakscope::{track, track_arc, LeakCheck, TrackingAllocator};

#[path = "common/sites.rs"]
mod sites;
use sites::named;

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

#[test]
fn objects_and_heap_in_one_snapshot() {
    leakscope::set_sample_rate(1);
    let check = LeakCheck::new();
    let held: Vec<_> = (0..50)
        .map(|i| track!(vec![0u8; 4096], tenant = i % 3))
        .collect();
    let arc = track_arc!(String::from("ctx"), "ctx");
    let clones: Vec<_> = (0..4).map(|_| arc.clone()).collect();
    let snap = leakscope::snapshot();
    assert!(snap.heap.allocator_active);
    assert!(snap.heap.live_bytes >= 50 * 4096);
    let vecs = snap
        .objects
        .iter()
        .find(|o| o.type_name.contains("Vec<u8>"))
        .expect("vec site");
    assert_eq!(vecs.live, 50);
    assert_eq!(vecs.labels.iter().map(|l| l.live).sum::<u64>(), 50);
    let ctx = named(&snap, "ctx");
    assert_eq!(ctx.holders.iter().map(|h| h.live).sum::<u64>(), 5);
    assert_eq!(check.live(), 51);
    drop((held, arc, clones));
    check.assert_no_leaks();
}
