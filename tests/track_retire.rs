//! Retired objects: reported exactly when still live after the grace
//! period, never when dropped in time.
//!
//! The tests move leakscope's clock (`testing::advance_clock`, process-wide)
//! and share the bounded retired table, so each takes `CLOCK` while it
//! retires objects; every test has its own types and sites.

use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use leakscope::objects::{retire_grace, retire_overflows, MAX_RETAINED_REASONS, MAX_RETIRED};
use leakscope::testing::advance_clock;
use leakscope::{track, track_arc, LeakCheck, ObjectSite, TrackedArc};

static CLOCK: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    CLOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn past_grace() {
    advance_clock(retire_grace() + Duration::from_secs(1));
}

/// The site of tracked type `T` (each test tracks its own types).
fn site_of<T>() -> ObjectSite {
    let name = std::any::type_name::<T>();
    leakscope::snapshot()
        .objects
        .into_iter()
        .find(|o| o.type_name == name)
        .unwrap_or_else(|| panic!("no site of {name}"))
}

#[derive(Debug)]
struct InTime(#[allow(dead_code)] u32);

#[test]
fn retired_and_dropped_in_time_is_never_reported() {
    let _g = serial();
    let a = track!(InTime(1));
    let b = track_arc!(InTime(2));
    let b2 = b.clone();
    a.retire("closed");
    TrackedArc::retire(b, "closed");
    let s = site_of::<InTime>();
    assert_eq!((s.retiring, s.retained, s.retired), (1, 0, 1), "{s:?}");
    drop(a);
    drop(b2);
    past_grace();
    let snap = leakscope::snapshot();
    for s in snap
        .objects
        .iter()
        .filter(|o| o.type_name.ends_with("InTime"))
    {
        assert_eq!((s.retiring, s.retained, s.live), (0, 0, 0), "{s:?}");
        assert!(s.suspected.is_none(), "{s:?}");
    }
}

#[derive(Debug)]
struct Ctx {
    #[allow(dead_code)]
    id: u32,
}

#[test]
fn retained_after_grace_with_holder_label_and_reason() {
    let _g = serial();
    let ctx = track_arc!(Ctx { id: 1 }, caller = "billing-batch");
    let (timer, timer_line) = (ctx.clone(), line!());
    TrackedArc::retire(ctx, "request finished");
    past_grace();
    let s = site_of::<Ctx>();
    assert_eq!((s.live, s.retained, s.retiring), (1, 1, 0), "{s:?}");
    assert!(s.retained_oldest.unwrap() >= retire_grace(), "{s:?}");
    assert_eq!(s.retained_reasons.len(), 1);
    assert_eq!(s.retained_reasons[0].reason, "request finished");
    assert_eq!(s.retained_reasons[0].retained, 1);
    assert_eq!(s.retained_labels.len(), 1);
    assert_eq!(
        (
            s.retained_labels[0].value.as_str(),
            s.retained_labels[0].live
        ),
        ("billing-batch", 1)
    );
    // The remaining handle is the timer's clone, and only it.
    assert_eq!(s.retained_holders.len(), 1, "{:?}", s.retained_holders);
    let h = &s.retained_holders[0];
    assert!(
        h.file.ends_with("track_retire.rs") && h.line == timer_line,
        "{h:?}"
    );
    assert_eq!(h.live, 1);
    // The suspected-leak flag says it first, in words.
    let why = s.suspected.as_deref().expect("flagged");
    assert!(
        why.starts_with(
            "1 object(s) retired 'request finished' more than 5s ago are still held at"
        ) && why.contains(&format!("track_retire.rs:{timer_line}")),
        "{why}"
    );
    // Everywhere a user looks: the report, JSON, Prometheus.
    let snap = leakscope::snapshot();
    let text = snap.to_string();
    assert!(
        text.contains("RETAINED: 1 retired object(s) still live"),
        "{text}"
    );
    assert!(
        text.contains("retired 'request finished': 1 retained"),
        "{text}"
    );
    let json = serde_json::to_value(&snap).unwrap();
    let site = json["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type_name"].as_str().unwrap().ends_with("::Ctx"))
        .unwrap();
    assert_eq!(site["retained"], 1);
    assert_eq!(site["retained_reasons"][0]["reason"], "request finished");
    #[cfg(feature = "prometheus")]
    {
        let prom = leakscope::prometheus::render(&snap);
        let line = prom
            .lines()
            .find(|l| l.starts_with("leakscope_objects_retained{") && l.contains("::Ctx\""))
            .unwrap_or_else(|| panic!("no retained series:\n{prom}"));
        assert!(
            line.contains("reason=\"request finished\"") && line.ends_with(" 1"),
            "{line}"
        );
        assert!(prom.lines().any(
            |l| l.starts_with("leakscope_objects_retained_oldest_seconds{")
                && l.contains("::Ctx\"")
        ));
    }
    drop(timer);
    let s = site_of::<Ctx>();
    assert_eq!((s.live, s.retained, s.retiring), (0, 0, 0), "{s:?}");
    assert!(s.suspected.is_none());
}

#[derive(Debug)]
struct Forgotten(#[allow(dead_code)] u32);

#[test]
fn forgotten_clones_in_another_thread() {
    let _g = serial();
    let (tx, rx) = mpsc::channel::<TrackedArc<Forgotten>>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (line_tx, line_rx) = mpsc::channel::<u32>();
    let keeper = thread::spawn(move || {
        let mut kept = Vec::new();
        for c in rx {
            let (clone, line) = (c.clone(), line!());
            let _ = line_tx.send(line);
            kept.push(clone);
            drop(c);
        }
        release_rx.recv().ok();
        drop(kept);
    });
    for i in 0..10 {
        let o = track_arc!(Forgotten(i));
        tx.send(o.clone()).unwrap();
        TrackedArc::retire(o, "unsubscribed");
    }
    drop(tx);
    let clone_line = line_rx.iter().take(10).last().unwrap();
    // Wait until the keeper dropped every handle we sent (it keeps its own).
    for _ in 0..200 {
        if site_of::<Forgotten>()
            .holders
            .iter()
            .all(|h| h.line == clone_line)
        {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    past_grace();
    let s = site_of::<Forgotten>();
    assert_eq!((s.live, s.retained), (10, 10), "{s:?}");
    assert_eq!(s.retained_holders.len(), 1, "{:?}", s.retained_holders);
    assert_eq!(
        (s.retained_holders[0].line, s.retained_holders[0].live),
        (clone_line, 10)
    );
    assert!(s
        .suspected
        .as_deref()
        .unwrap()
        .starts_with("10 object(s) retired 'unsubscribed'"));
    release_tx.send(()).unwrap();
    keeper.join().unwrap();
    let s = site_of::<Forgotten>();
    assert_eq!((s.live, s.retained), (0, 0), "{s:?}");
}

#[derive(Debug, Clone)]
struct Moved(#[allow(dead_code)] u32);

#[test]
fn a_retired_tracked_value_can_move_and_its_clone_is_not_retired() {
    let _g = serial();
    let a = track!(Moved(1), caller = "cache");
    a.retire("evicted");
    a.retire("evicted again"); // the first mark stands
    let kept = vec![a];
    let clone = kept[0].clone();
    past_grace();
    let s = site_of::<Moved>();
    assert_eq!((s.live, s.retained, s.retired), (2, 1, 1), "{s:?}");
    assert_eq!(s.retained_reasons[0].reason, "evicted");
    assert_eq!(s.retained_labels[0].value, "cache");
    assert_eq!(s.labels[0].live, 2, "labels still counted: {:?}", s.labels);
    assert!(s.retained_holders.is_empty());
    assert!(s.suspected.as_deref().unwrap().contains("are still live"));
    drop(kept);
    drop(clone);
    let s = site_of::<Moved>();
    assert_eq!((s.live, s.retained), (0, 0));
    assert!(s.labels.iter().all(|l| l.live == 0), "{:?}", s.labels);
}

#[derive(Debug)]
struct Reasons(#[allow(dead_code)] usize);

const REASONS: [&str; 12] = [
    "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11",
];

#[test]
fn reasons_are_capped_per_site() {
    let _g = serial();
    let mut kept = Vec::new();
    for (i, r) in REASONS.iter().enumerate() {
        // More objects for the first reasons, so the order is known.
        for _ in 0..(20 - i) {
            let o = track!(Reasons(i));
            o.retire(r);
            kept.push(o);
        }
    }
    past_grace();
    let s = site_of::<Reasons>();
    assert_eq!(s.retained, kept.len() as u64);
    assert_eq!(s.retained_reasons.len(), MAX_RETAINED_REASONS + 1);
    assert_eq!(s.retained_reasons[0].reason, "r0");
    let other = s.retained_reasons.last().unwrap();
    assert_eq!(other.reason, "other");
    assert_eq!(other.retained, (8..12).map(|i| 20 - i as u64).sum::<u64>());
}

#[derive(Debug)]
struct Many(#[allow(dead_code)] usize);

#[test]
fn the_retired_table_is_bounded_and_counts_overflow() {
    let _g = serial();
    let before = retire_overflows();
    let kept: Vec<_> = (0..MAX_RETIRED + 10).map(|i| track!(Many(i))).collect();
    for o in &kept {
        o.retire("bounded");
    }
    assert!(retire_overflows() >= before + 10);
    past_grace();
    let s = site_of::<Many>();
    assert!(
        s.retained <= MAX_RETIRED as u64 && s.retained > 0,
        "{}",
        s.retained
    );
    drop(kept);
    // The slots are free again.
    let o = track!(Many(0));
    let before = retire_overflows();
    o.retire("fits again");
    assert_eq!(retire_overflows(), before);
}

#[derive(Debug)]
struct PlainLeak;
#[derive(Debug)]
struct RetainedLeak;

#[test]
fn leak_check_names_retained_objects_first() {
    let _g = serial();
    let check = LeakCheck::new();
    std::mem::forget(track!(PlainLeak));
    let r = track_arc!(RetainedLeak);
    std::mem::forget(r.clone());
    TrackedArc::retire(r, "test over");
    past_grace();
    let msg = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check.assert_no_leaks()))
        .expect_err("leaks")
        .downcast::<String>()
        .map(|s| *s)
        .unwrap_or_default();
    let retained = msg.find("RetainedLeak").expect("names the retained site");
    let plain = msg.find("PlainLeak").expect("names the plain leak");
    assert!(retained < plain, "{msg}");
    assert!(msg.contains("RETAINED: 1 object(s)"), "{msg}");
    assert!(msg.contains("retired 'test over'"), "{msg}");
}
