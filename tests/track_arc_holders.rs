//! Holder attribution of `TrackedArc` handles across clones, threads, drops.

use std::thread;

use leakscope::{track_arc, Holder, ObjectSite, TrackedArc};

#[path = "common/sites.rs"]
mod sites;
use sites::site;

#[derive(Debug)]
struct Ctx(u32);

fn holders_by_line(s: &ObjectSite) -> Vec<(u32, u64)> {
    let mut v: Vec<(u32, u64)> = s
        .holders
        .iter()
        .map(|h: &Holder| (h.line, h.live))
        .collect();
    v.sort();
    v
}

#[test]
fn holders_follow_clones_moves_and_drops() {
    let (a, la) = (track_arc!(Ctx(1), "holders"), line!());
    let (mut clones, lb): (Vec<_>, u32) = ((0..3).map(|_| a.clone()).collect(), line!());
    let moved = clones.pop().unwrap();
    let (from_thread, lc) = thread::spawn(move || {
        let (c, lc) = (moved.clone(), line!());
        drop(moved); // held at lb, dropped on this thread
        (c, lc)
    })
    .join()
    .unwrap();
    let s = site("holders");
    assert_eq!((s.created, s.live), (1, 1));
    assert!(s
        .holders
        .iter()
        .all(|h| h.file.ends_with("track_arc_holders.rs")));
    let mut want = vec![(la, 1), (lb, 2), (lc, 1)];
    want.sort();
    assert_eq!(holders_by_line(&s), want);
    assert!(s.holders.iter().all(|h| h.oldest_age.is_some()));
    assert_eq!(TrackedArc::strong_count(&a), 4);
    drop(clones);
    drop(a);
    let s = site("holders");
    assert_eq!(holders_by_line(&s), vec![(lc, 1)]);
    assert_eq!(from_thread.0, 1);
    drop(from_thread);
    let s = site("holders");
    assert!(s.holders.is_empty(), "{:?}", s.holders);
    assert_eq!((s.live, s.dropped), (0, 1));
}

#[test]
fn weak_handles_are_not_holders_and_upgrades_are() {
    let a = track_arc!(Ctx(2), "weak");
    let w = TrackedArc::downgrade(&a);
    let s = site("weak");
    assert_eq!(s.holders.len(), 1);
    let (up, lu) = (w.upgrade().expect("live"), line!());
    assert!(TrackedArc::ptr_eq(&a, &up));
    let s = site("weak");
    assert!(holders_by_line(&s).contains(&(lu, 1)));
    drop(a);
    drop(up);
    assert!(w.upgrade().is_none());
    let s = site("weak");
    assert_eq!((s.live, s.dropped), (0, 1));
    assert!(s.holders.is_empty());
}

#[test]
fn many_holder_locations_overflow_to_other() {
    let a = track_arc!(Ctx(3), "many");
    let mut keep = Vec::new();
    macro_rules! c {
        () => {
            keep.push(a.clone())
        };
    }
    // 20 distinct lines: more than the 16 kept per site.
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    c!();
    let s = site("many");
    let total: u64 = s.holders.iter().map(|h| h.live).sum();
    assert_eq!(total, 21);
    assert!(
        s.holders.iter().any(|h| h.file == "other"),
        "{:?}",
        s.holders
    );
    assert!(s.holders.len() <= 17);
    drop(keep);
    drop(a);
}
