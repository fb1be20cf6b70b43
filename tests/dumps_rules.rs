//! Each dump rule fires once per condition (edge-triggered) and re-arms
//! when its condition clears; a dump is four files named with the time and
//! the rule. Driven with `Dumper::check_now` (no thread) and leakscope's
//! controlled clock; one test, since the rules read process-wide state
//! (the heap, RSS, `SIGUSR2`).

#![cfg(feature = "dumps")]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use leakscope::dumps::{rule, Dumper};
use leakscope::testing::advance_clock;
use leakscope::{track_arc, TrackedArc};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

const MIB: u64 = 1 << 20;

/// The dump stems in `dir`, oldest first.
fn stems(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("leakscope-"))
        .map(|n| n.split('.').next().unwrap().to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn no_limits(b: leakscope::dumps::DumperBuilder) -> leakscope::dumps::DumperBuilder {
    b.manual()
        .max_per_hour(1000)
        .min_gap(Duration::ZERO)
        .max_files(1000)
        .max_bytes(u64::MAX)
}

#[inline(never)]
fn big(n: u64) -> Vec<u8> {
    black_box(vec![1u8; n as usize])
}

/// A heap-only leak: 16 KiB kept per call.
#[inline(never)]
fn leak_chunk(keep: &mut Vec<Box<[u8]>>) {
    keep.push(black_box(vec![2u8; 16 << 10]).into_boxed_slice());
}

#[derive(Debug)]
struct Ctx(#[allow(dead_code)] u32);

#[test]
fn each_rule_fires_once_per_condition() {
    let tmp = tempfile::tempdir().unwrap();

    // heap_above
    let dir = tmp.path().join("heap");
    let live = leakscope::heap_stats().live_bytes;
    let d = no_limits(Dumper::builder(&dir).heap_above(live + 32 * MIB))
        .start()
        .unwrap();
    assert!(d.check_now().is_empty());
    let v = big(64 * MIB);
    assert_eq!(d.check_now(), [rule::HEAP_ABOVE]);
    assert!(d.check_now().is_empty(), "still above: no second dump");
    assert!(d.check_now().is_empty());
    drop(v);
    assert!(d.check_now().is_empty(), "below again: re-armed");
    let v = big(64 * MIB);
    assert_eq!(d.check_now(), [rule::HEAP_ABOVE]);
    drop(v);
    let s = d.stats();
    assert_eq!((s.written, s.failed, s.suppressed), (2, 0, 0), "{s:?}");
    let st = stems(&dir);
    assert_eq!(st.len(), 2, "{st:?}");
    for stem in &st {
        assert!(stem.ends_with("-heap_above"), "{stem}");
        // leakscope-YYYYMMDDTHHMMSSZ-seq-rule
        let stamp = &stem["leakscope-".len()..][..16];
        assert!(
            stamp.as_bytes()[8] == b'T' && stamp.ends_with('Z'),
            "{stem}"
        );
        for ext in ["heap.pb.gz", "leaks.pb.gz", "txt", "json"] {
            let f = dir.join(format!("{stem}.{ext}"));
            assert!(f.metadata().unwrap().len() > 0, "{f:?}");
        }
        let txt = std::fs::read_to_string(dir.join(format!("{stem}.txt"))).unwrap();
        assert!(txt.starts_with("leakscope report\nmemory: RSS "), "{txt}");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.json"))).unwrap())
                .unwrap();
        assert!(json["heap"]["live_bytes"].as_u64().unwrap() > 64 * MIB);
    }
    drop(d);

    // heap_growth: +16 MiB within a minute, on leakscope's clock.
    let dir = tmp.path().join("growth");
    let d = no_limits(Dumper::builder(&dir).heap_growth(16 * MIB, Duration::from_secs(60)))
        .start()
        .unwrap();
    assert!(d.check_now().is_empty(), "baseline");
    let a = big(32 * MIB);
    advance_clock(Duration::from_secs(5));
    assert_eq!(d.check_now(), [rule::HEAP_GROWTH]);
    advance_clock(Duration::from_secs(5));
    assert!(d.check_now().is_empty(), "the same growth: no second dump");
    // A window later the low is the current level: no growth, re-armed.
    advance_clock(Duration::from_secs(61));
    assert!(d.check_now().is_empty());
    let b = big(32 * MIB);
    advance_clock(Duration::from_secs(1));
    assert_eq!(d.check_now(), [rule::HEAP_GROWTH]);
    assert_eq!(d.stats().written, 2);
    drop((a, b));
    drop(d);

    // rss_above: a touched C-side or Rust allocation moves RSS.
    let dir = tmp.path().join("rss");
    let rss = leakscope::memory().rss_bytes;
    let d = no_limits(Dumper::builder(&dir).rss_above(rss + 32 * MIB))
        .start()
        .unwrap();
    assert!(d.check_now().is_empty());
    let v = big(64 * MIB);
    assert_eq!(d.check_now(), [rule::RSS_ABOVE]);
    assert!(d.check_now().is_empty());
    drop(v);
    assert_eq!(d.stats().written, 1);
    drop(d);

    // suspected_leak: an object retired and still held past the grace.
    let dir = tmp.path().join("suspect");
    let d = no_limits(Dumper::builder(&dir).on_suspected_leak())
        .start()
        .unwrap();
    assert!(d.check_now().is_empty());
    let ctx = track_arc!(Ctx(1));
    let held = ctx.clone();
    TrackedArc::retire(ctx, "request finished");
    advance_clock(leakscope::objects::retire_grace() + Duration::from_secs(1));
    assert_eq!(d.check_now(), [rule::SUSPECTED_LEAK]);
    assert!(d.check_now().is_empty());
    drop(held);
    assert!(d.check_now().is_empty(), "released: re-armed");
    assert_eq!(d.stats().written, 1);
    assert!(stems(&dir)[0].ends_with("-suspected_leak"));
    drop(d);

    // suspected_leak, heap half: no tracked object anywhere, one heap site
    // growing steadily (64 KiB per 10 s); fires once, after a minute.
    let rate = leakscope::sample_rate();
    leakscope::set_sample_rate(4096);
    let dir = tmp.path().join("heap-suspect");
    let d = no_limits(Dumper::builder(&dir).on_suspected_leak())
        .start()
        .unwrap();
    let mut keep = Vec::new();
    let mut fired_at = Vec::new();
    for step in 0..14u32 {
        advance_clock(Duration::from_secs(10));
        for _ in 0..4 {
            leak_chunk(&mut keep);
        }
        if d.check_now() == [rule::SUSPECTED_LEAK] {
            fired_at.push(step);
        }
    }
    assert_eq!(fired_at.len(), 1, "fired once: at steps {fired_at:?}");
    assert!(
        fired_at[0] >= 5,
        "not before a minute: at step {}",
        fired_at[0]
    );
    assert!(stems(&dir)[0].ends_with("-suspected_leak"));
    let report = std::fs::read_to_string(dir.join(format!("{}.txt", stems(&dir)[0]))).unwrap();
    assert!(report.contains("leak_chunk"), "{report}");
    drop(keep);
    drop(d);
    leakscope::set_sample_rate(rate);

    // signal: each SIGUSR2 asks for one dump; two before a check, one dump.
    let dir = tmp.path().join("signal");
    let d = no_limits(Dumper::builder(&dir).on_signal())
        .start()
        .unwrap();
    assert!(d.check_now().is_empty());
    // SAFETY: raise has no preconditions; the dumper's handler only sets
    // a flag.
    unsafe { libc::raise(libc::SIGUSR2) };
    // SAFETY: as above.
    unsafe { libc::raise(libc::SIGUSR2) };
    assert_eq!(d.check_now(), [rule::SIGNAL]);
    assert!(d.check_now().is_empty());
    // SAFETY: as above.
    unsafe { libc::raise(libc::SIGUSR2) };
    assert_eq!(d.check_now(), [rule::SIGNAL]);
    assert_eq!(d.stats().written, 2);
    drop(d);
    // Its handler is gone with it: no signal is raised again until another
    // dumper registers one (the default action would end the process).

    // Rules that fire at the same check share one dump.
    let dir = tmp.path().join("both");
    let live = leakscope::heap_stats().live_bytes;
    let d = no_limits(
        Dumper::builder(&dir)
            .heap_above(live + 16 * MIB)
            .heap_growth(16 * MIB, Duration::from_secs(60)),
    )
    .start()
    .unwrap();
    assert!(d.check_now().is_empty());
    let v = big(32 * MIB);
    assert_eq!(d.check_now(), [rule::HEAP_ABOVE, rule::HEAP_GROWTH]);
    assert_eq!(stems(&dir).len(), 1);
    assert!(stems(&dir)[0].ends_with("-heap_above+heap_growth"));
    drop(v);

    // The checks' and dumps' memory is leakscope's: dumping does not move
    // the application's live bytes.
    let before = leakscope::heap_stats().live_bytes;
    let s = no_limits(Dumper::builder(tmp.path().join("acct")).on_signal())
        .start()
        .unwrap();
    // SAFETY: as above.
    unsafe { libc::raise(libc::SIGUSR2) };
    assert_eq!(s.check_now(), [rule::SIGNAL]);
    assert_eq!(s.stats().written, 1);
    drop(s);
    let after = leakscope::heap_stats().live_bytes;
    assert!(
        after.abs_diff(before) < 4096,
        "dumping moved live bytes by {}",
        after as i64 - before as i64
    );
    drop(d);
}
