//! Sites, exact counts across threads, the `Tracked<T>` API.
//! (No `testing::advance_clock` here: ages in this binary are real.)

use std::sync::{Arc, Barrier};
use std::thread;

use leakscope::{track, ObjectSite, Tracked};

#[path = "common/sites.rs"]
mod sites;
use sites::sites;

fn named(name: &str) -> ObjectSite {
    let mut v = sites(|o| o.name.as_deref() == Some(name));
    assert_eq!(v.len(), 1, "one site named {name}: {v:?}");
    v.remove(0)
}

#[derive(Debug, Clone, PartialEq)]
struct Counted(u64);

fn make_counted(i: u64) -> Tracked<Counted> {
    track!(Counted(i), "counted")
}

#[test]
fn exact_counts_across_threads() {
    const THREADS: u64 = 4;
    const PER: u64 = 5_000;
    let kept: Vec<Vec<Tracked<Counted>>> = thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut keep = Vec::new();
                    for i in 0..PER {
                        let o = make_counted(t * PER + i);
                        if i % 10 == 0 {
                            keep.push(o);
                        }
                    }
                    keep
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let site = named("counted");
    assert_eq!(site.created, THREADS * PER);
    assert_eq!(site.live, THREADS * PER / 10);
    assert_eq!(site.dropped, THREADS * PER - THREADS * PER / 10);
    assert_eq!(site.lifetimes.count(), site.dropped);
    assert_eq!(site.live_ages.count(), site.live);
    assert_eq!(site.type_name, std::any::type_name::<Counted>());
    assert!(site.file.ends_with("track_sites.rs"), "{}", site.file);
    assert_eq!(site.module_path, "track_sites");
    assert!(site.oldest_age.is_some());
    drop(kept);
    let site = named("counted");
    assert_eq!((site.created, site.live), (THREADS * PER, 0));
    assert_eq!(site.oldest_age, None);
    assert_eq!(site.live_ages.count(), 0);
}

fn generic<T: 'static>(v: T) -> Tracked<T> {
    track!(v, "generic")
}

#[test]
fn a_generic_callsite_keeps_types_apart() {
    let a = generic(1u8);
    let b = generic(String::from("x"));
    let c = generic(2u8);
    let v = sites(|o| o.name.as_deref() == Some("generic"));
    assert_eq!(v.len(), 2, "{v:?}");
    let u8s = v.iter().find(|o| o.type_name == "u8").unwrap();
    let strings = v.iter().find(|o| o.type_name.ends_with("String")).unwrap();
    assert_eq!((u8s.live, strings.live), (2, 1));
    assert_eq!(u8s.line, strings.line);
    drop((a, b, c));
}

struct RaceType;

#[test]
fn racing_first_registration_makes_one_site() {
    const N: usize = 8;
    let barrier = Arc::new(Barrier::new(N));
    let hs: Vec<_> = (0..N)
        .map(|_| {
            let b = barrier.clone();
            thread::spawn(move || {
                b.wait();
                let o = track!(RaceType, "race");
                std::mem::forget(o);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let site = named("race");
    assert_eq!((site.created, site.live), (N as u64, N as u64));
}

#[test]
fn tracked_api_passes_through() {
    let mut t = track!(vec![1, 2], "api");
    t.push(3); // DerefMut
    assert_eq!(t.len(), 3); // Deref
    assert_eq!(t.as_ref(), &[1, 2, 3]);
    t.as_mut().push(4);
    assert_eq!(format!("{t:?}"), "[1, 2, 3, 4]");
    let c = t.clone(); // a new object
    assert_eq!(named("api").live, 2);
    let v = t.into_inner();
    assert_eq!(v, [1, 2, 3, 4]);
    let site = named("api");
    assert_eq!((site.created, site.dropped, site.live), (2, 1, 1));
    drop(c);
    assert_eq!(named("api").live, 0);
}

#[test]
fn size_overhead_is_a_32_byte_header() {
    // 24 bytes of site, birth, label word and leak-check mark, and 8 of
    // last poll time (tracked futures, streams, async I/O).
    assert_eq!(std::mem::size_of::<Tracked<u64>>(), 8 + 32);
    assert_eq!(std::mem::size_of::<Tracked<[u8; 32]>>(), 32 + 32);
    assert_eq!(std::mem::size_of::<leakscope::TrackedArc<u64>>(), 24);
}

#[test]
fn send_and_sync_follow_t() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Tracked<u64>>();
    send_sync::<leakscope::TrackedArc<String>>();
    // `Tracked<Rc<_>>` is neither: see tests/macros/fail_not_send.rs.
}

#[test]
fn a_snapshot_lists_sites_in_the_report() {
    let t = track!(7u32, "reported");
    let snap = leakscope::snapshot();
    let text = snap.to_string();
    assert!(text.contains("u32 \"reported\" at"), "{text}");
    assert!(snap.summary().contains("objects"), "{}", snap.summary());
    drop(t);
}
