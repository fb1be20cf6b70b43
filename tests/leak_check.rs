//! `LeakCheck`: catches leaks made on the test's thread and through handles
//! forgotten on spawned threads; never fails because of other tests.
//!
//! The tests here run in parallel (cargo's default) and share object sites
//! on purpose: every assertion is exact, so a count leaking between tests
//! would fail one of them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Barrier};
use std::thread;

use leakscope::{track, track_arc, LeakCheck, Tracked, TrackedArc};

#[derive(Debug, Clone)]
struct Conn(u32);

/// A site shared by every test of this file.
fn shared_site(i: u32) -> Tracked<Conn> {
    track!(Conn(i), "conn")
}

fn panic_text(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("the check must panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn passes_on_clean_code() {
    let check = LeakCheck::new();
    let a = shared_site(1);
    let b = a.clone();
    assert_eq!(b.0, 1);
    let arc = track_arc!(Conn(2), "clean-arc");
    let arc2 = arc.clone();
    thread::spawn(move || drop(arc2)).join().unwrap();
    drop((a, b, arc));
    assert_eq!(check.live(), 0);
    check.assert_no_leaks();
    check.assert_no_leaks_of::<Conn>();
}

#[test]
fn catches_mem_forget() {
    let check = LeakCheck::new();
    let keep = shared_site(10);
    std::mem::forget(shared_site(11));
    drop(keep);
    assert_eq!(check.live(), 1);
    let msg = panic_text(|| check.assert_no_leaks());
    assert!(msg.contains("1 tracked object(s)"), "{msg}");
    assert!(msg.contains("1 live leak_check::Conn \"conn\""), "{msg}");
    assert!(msg.contains("created at tests/leak_check.rs:"), "{msg}");
}

#[test]
fn catches_a_trackedarc_clone_forgotten_in_a_spawned_thread() {
    let check = LeakCheck::new();
    let ctx = track_arc!(Conn(20), "ctx");
    let for_timer = ctx.clone();
    let (forgot_at, h) = (
        line!() + 3,
        thread::spawn(move || {
            // the "timer" holds a clone and never lets go
            let held = for_timer.clone();
            std::mem::forget(held);
            drop(for_timer);
        }),
    );
    h.join().unwrap();
    drop(ctx);
    let msg = panic_text(|| check.assert_no_leaks());
    assert!(msg.contains("1 live leak_check::Conn \"ctx\""), "{msg}");
    let held = format!("held at tests/leak_check.rs:{forgot_at}: 1 live handle(s)");
    assert!(msg.contains(&held), "{held} in {msg}");
}

#[test]
fn assert_no_leaks_of_filters_by_type() {
    let check = LeakCheck::new();
    std::mem::forget(track!(String::from("leaked"), "string"));
    let ok = track!(5u64, "u64");
    let msg = panic_text(|| check.assert_no_leaks_of::<u64>());
    assert!(msg.contains("1 live u64 \"u64\""), "{msg}");
    assert!(!msg.contains("String"), "{msg}");
    drop(ok);
    check.assert_no_leaks_of::<u64>();
    let msg = panic_text(|| check.assert_no_leaks_of::<String>());
    assert!(msg.contains("String \"string\""), "{msg}");
}

#[test]
fn objects_outliving_their_check_do_not_disturb_later_checks() {
    let leaked = {
        let check = LeakCheck::new();
        let o = shared_site(30);
        assert_eq!(check.live(), 1);
        o
    };
    let check = LeakCheck::new();
    drop(leaked); // created under the previous check: no effect here
    let o = shared_site(31);
    assert_eq!(check.live(), 1);
    drop(o);
    check.assert_no_leaks();
}

#[test]
fn nested_checks_count_toward_the_innermost() {
    let outer = LeakCheck::new();
    let a = shared_site(40);
    let inner = LeakCheck::new();
    std::mem::forget(shared_site(41));
    assert_eq!(inner.live(), 1);
    drop(inner);
    assert_eq!(outer.live(), 1);
    drop(a);
    outer.assert_no_leaks();
}

/// Other threads leak at the same site the whole time the check runs.
#[test]
fn other_threads_leaking_at_the_same_site_do_not_fail_the_check() {
    let start = Arc::new(Barrier::new(3));
    let noisy: Vec<_> = (0..2)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                let mut keep: Vec<TrackedArc<Conn>> = Vec::new();
                for i in 0..2_000 {
                    std::mem::forget(shared_site(i));
                    keep.push(track_arc!(Conn(i), "ctx"));
                }
                keep
            })
        })
        .collect();
    let check = LeakCheck::new();
    start.wait();
    for i in 0..2_000 {
        let o = shared_site(i);
        let c = track_arc!(Conn(i), "ctx");
        drop((o, c));
    }
    for h in noisy {
        h.join().unwrap();
    }
    assert_eq!(check.live(), 0);
    check.assert_no_leaks();
}

// The same pair again, so that cargo's parallel runner overlaps clean and
// leaky tests at the shared site in more interleavings.
#[test]
fn clean_under_parallel_runner_a() {
    let check = LeakCheck::new();
    for i in 0..5_000 {
        drop(shared_site(i));
    }
    check.assert_no_leaks();
}

#[test]
fn leaky_under_parallel_runner_b() {
    let check = LeakCheck::new();
    for i in 0..5_000 {
        let o = shared_site(i);
        if i % 1_000 == 0 {
            std::mem::forget(o);
        }
    }
    assert_eq!(check.live(), 5);
    let msg = panic_text(|| check.assert_no_leaks());
    assert!(msg.contains("5 tracked object(s)"), "{msg}");
}

#[test]
fn spawned_threads_that_enter_the_check_are_counted() {
    let check = LeakCheck::new();
    let handle = check.handle();
    thread::spawn(move || {
        let _in = handle.enter();
        drop(shared_site(50)); // clean
        std::mem::forget(shared_site(51)); // leaked
    })
    .join()
    .unwrap();
    // A thread that does not enter is not counted.
    thread::spawn(|| std::mem::forget(shared_site(52)))
        .join()
        .unwrap();
    assert_eq!(check.live(), 1);
    let msg = panic_text(|| check.assert_no_leaks());
    assert!(msg.contains("1 live leak_check::Conn \"conn\""), "{msg}");
}

#[test]
fn a_handle_outliving_its_check_counts_nothing() {
    let handle = LeakCheck::new().handle(); // the check ends here
    let later = LeakCheck::new();
    thread::spawn(move || {
        let _in = handle.enter();
        std::mem::forget(shared_site(60));
    })
    .join()
    .unwrap();
    assert_eq!(later.live(), 0);
    later.assert_no_leaks();
}
