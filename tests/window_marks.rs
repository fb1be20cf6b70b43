//! Time windows over the live heap on leakscope's controlled clock: A is
//! allocated, the clock moves 10 minutes, the mark `deploy` is set, B is
//! allocated, the clock moves 10 minutes, the mark `canary` is set, C is
//! allocated. Every window (`min_age`, `max_age`, `since`, `until` and their
//! mixes) must keep exactly the right sites, state its filter and what it
//! kept, and bad windows must be clear `400`s.
//!
//! Sample rate 1 (every allocation recorded, estimates exact). Own process
//! without libtest's harness (`harness = false`): the kept and total figures
//! are compared with exact counts, which a harness thread allocating at
//! unpredictable moments would disturb.

#[path = "common/pprof.rs"]
mod pprof_common;

use std::time::Duration;

use leakscope::pprof::{self, ProfileOptions};
use leakscope::server::route;
use leakscope::{HeapFilter, Snapshot, SnapshotOptions};
use pprof_common::{decode, proto};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

const MIN: u64 = 60;
const A_BYTES: u64 = 4 * 1000;
const B_BYTES: u64 = 3 * 2000;
const C_BYTES: u64 = 2 * 4000;

#[inline(never)]
fn alloc_a(store: &mut Vec<Vec<u8>>) {
    for _ in 0..4 {
        store.push(std::hint::black_box(Vec::with_capacity(1000)));
    }
}

#[inline(never)]
fn alloc_b(store: &mut Vec<Vec<u8>>) {
    for _ in 0..3 {
        store.push(std::hint::black_box(Vec::with_capacity(2000)));
    }
}

#[inline(never)]
fn alloc_c(store: &mut Vec<Vec<u8>>) {
    for _ in 0..2 {
        store.push(std::hint::black_box(Vec::with_capacity(4000)));
    }
}

fn mins(m: u64) -> Duration {
    Duration::from_secs(m * MIN)
}

/// Live bytes of the sites whose stack has a frame of `func`.
fn live_of(snap: &Snapshot, func: &str) -> u64 {
    snap.heap
        .sites
        .iter()
        .filter(|s| s.frames.iter().any(|f| f.function.ends_with(func)))
        .map(|s| s.live_bytes)
        .sum()
}

/// (A, B, C) live bytes in a snapshot.
fn abc(snap: &Snapshot) -> (u64, u64, u64) {
    (
        live_of(snap, "alloc_a"),
        live_of(snap, "alloc_b"),
        live_of(snap, "alloc_c"),
    )
}

/// Takes a snapshot with `opts` and checks its filter's totals against the
/// exact count of live samples read just before.
fn windowed(what: &str, opts: &SnapshotOptions) -> (Snapshot, HeapFilter) {
    let live_samples = leakscope::heap_stats().live_samples;
    let snap = leakscope::snapshot_with(opts);
    let f = snap
        .heap
        .filter
        .clone()
        .unwrap_or_else(|| panic!("{what}: no filter"));
    assert_eq!(f.total_samples, live_samples, "{what}: total samples");
    assert_eq!(snap.heap.stats().live_samples, f.total_samples, "{what}");
    let sites_kept: u64 = snap.heap.sites.iter().map(|s| s.live_samples).sum();
    assert_eq!(f.kept_samples, sites_kept, "{what}: kept samples");
    let sites_bytes: u64 = snap.heap.sites.iter().map(|s| s.live_bytes).sum();
    assert!(
        f.kept_bytes.abs_diff(sites_bytes) <= snap.heap.sites.len() as u64,
        "{what}: kept {} vs sites {sites_bytes}",
        f.kept_bytes
    );
    assert!(f.kept_bytes <= f.total_bytes, "{what}");
    (snap, f)
}

fn body(r: &leakscope::server::Response) -> String {
    String::from_utf8(r.body.clone()).expect("utf-8 body")
}

/// A `400` whose one-line body contains `want`.
fn refused(path: &str, query: &str, want: &str) {
    let r = route(path, query);
    let b = body(&r);
    assert_eq!(r.status, 400, "{path}?{query}: {b}");
    assert!(b.contains(want), "{path}?{query}: {b:?} lacks {want:?}");
    assert_eq!(b.trim_end().lines().count(), 1, "{b}");
}

fn main() {
    leakscope::testing::set_sample_seed(7);
    leakscope::set_sample_rate(1);
    let (mut a, mut b, mut c) = (
        Vec::with_capacity(8),
        Vec::with_capacity(8),
        Vec::with_capacity(8),
    );
    alloc_a(&mut a);
    leakscope::testing::advance_clock(mins(10));
    // `mark` allocates nothing: only A, B and C are born in the windows.
    let before = leakscope::heap_stats().allocations;
    leakscope::mark("deploy").expect("mark deploy");
    assert_eq!(
        leakscope::heap_stats().allocations,
        before,
        "mark allocated"
    );
    alloc_b(&mut b);
    leakscope::testing::advance_clock(mins(10));
    leakscope::mark("canary").expect("mark canary");
    alloc_c(&mut c);
    let deploy = leakscope::marks::get("deploy").expect("deploy is set");
    let canary = leakscope::marks::get("canary").expect("canary is set");
    // A is ~20 minutes old, B ~10, C new.

    // Unfiltered: everything, and no filter statement.
    let all = leakscope::snapshot();
    assert_eq!(abc(&all), (A_BYTES, B_BYTES, C_BYTES));
    assert!(all.heap.filter.is_none());
    let names: Vec<&str> = all.marks.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["deploy", "canary"]);
    drop(all);
    let report = body(&route("/debug/leaks", ""));
    assert!(!report.contains("filter:"), "{report}");

    // Every window keeps exactly its sites.
    let o = SnapshotOptions::new;
    let cases: Vec<(&str, SnapshotOptions, (u64, u64, u64))> = vec![
        ("min_age=15m", o().min_age(mins(15)), (A_BYTES, 0, 0)),
        ("min_age=5m", o().min_age(mins(5)), (A_BYTES, B_BYTES, 0)),
        ("max_age=5m", o().max_age(mins(5)), (0, 0, C_BYTES)),
        ("max_age=15m", o().max_age(mins(15)), (0, B_BYTES, C_BYTES)),
        (
            "min_age=5m max_age=15m",
            o().min_age(mins(5)).max_age(mins(15)),
            (0, B_BYTES, 0),
        ),
        (
            "since=deploy",
            o().since(deploy.clone()),
            (0, B_BYTES, C_BYTES),
        ),
        ("until=deploy", o().until(deploy.clone()), (A_BYTES, 0, 0)),
        (
            "until=canary",
            o().until_mark("canary").unwrap(),
            (A_BYTES, B_BYTES, 0),
        ),
        (
            "since=deploy until=canary",
            o().since_mark("deploy").unwrap().until(canary.clone()),
            (0, B_BYTES, 0),
        ),
        (
            "since=deploy min_age=5m",
            o().since(deploy.clone()).min_age(mins(5)),
            (0, B_BYTES, 0),
        ),
        (
            "until=canary max_age=15m",
            o().until(canary.clone()).max_age(mins(15)),
            (0, B_BYTES, 0),
        ),
        (
            "since=canary min_age=15m (empty)",
            o().since(canary.clone()).min_age(mins(15)),
            (0, 0, 0),
        ),
    ];
    for (what, opts, want) in &cases {
        assert!(opts.check().is_ok(), "{what}");
        let (snap, f) = windowed(what, opts);
        assert_eq!(abc(&snap), *want, "{what}");
        // Windows between the marks hold B alone, exactly; others hold
        // their sites and maybe
        // more (what the runtime kept before A, the options' own names
        // after C).
        if want.0 == 0 && want.2 == 0 {
            assert_eq!(f.kept_bytes, want.1, "{what}: {f}");
        } else {
            assert!(f.kept_bytes >= want.0 + want.1 + want.2, "{what}: {f}");
        }
        let s = f.to_string();
        assert!(
            s.contains(&format!(
                "{} of {} sampled live kept",
                fmt_b(f.kept_bytes),
                fmt_b(f.total_bytes)
            )),
            "{what}: {s}"
        );
        assert!(
            s.contains(&format!(
                "{} of {} live samples",
                f.kept_samples, f.total_samples
            )),
            "{s}"
        );
        assert!(s.ends_with("tracked objects are not filtered"), "{s}");
    }
    // The B-only window, exactly: 3 samples of 2000 bytes.
    let (_, f) = windowed("B", &o().since(deploy.clone()).until(canary.clone()));
    assert_eq!((f.kept_bytes, f.kept_objects, f.kept_samples), (6000, 3, 3));
    let s = f.to_string();
    // B is ~10 minutes old, canary was set a moment ago, by the real time
    // this test takes (seconds in a debug build): the bounds are not
    // compared here, the unit tests in `src/window.rs` do.
    assert!(s.starts_with("heap born "), "{s}");
    assert!(
        s.contains(" ago (since=deploy until=canary): 5.9 KiB of "),
        "{s}"
    );
    let (_, f) = windowed("empty", &o().since(canary.clone()).min_age(mins(15)));
    assert_eq!(f.kept_samples, 0);
    assert!(f.to_string().contains("(an empty window)"), "{f}");

    // Self-contradictory options are refused by `check`.
    let e = o()
        .min_age(mins(60))
        .max_age(mins(10))
        .check()
        .unwrap_err()
        .to_string();
    assert!(e.contains("min_age (1h) is more than max_age (10m)"), "{e}");
    let e = o()
        .since(canary.clone())
        .until(deploy.clone())
        .check()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("since=canary was marked after until=deploy"),
        "{e}"
    );
    let e = o().since_mark("nope").unwrap_err().to_string();
    assert_eq!(e, "unknown mark \"nope\" (marks set: deploy, canary)");

    // The text report states the filter after its header.
    let r = route("/debug/leaks", "since=deploy&until=canary");
    let text = body(&r);
    assert_eq!(r.status, 200, "{text}");
    let filter_line = text
        .lines()
        .find(|l| l.starts_with("filter: "))
        .unwrap_or_else(|| panic!("no filter line: {text}"));
    assert!(
        filter_line.contains(" ago (since=deploy until=canary): 5.9 KiB of "),
        "{filter_line}"
    );
    assert!(filter_line.contains(", 3 of "), "{filter_line}");
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("filter: "))
        .unwrap();
    assert!(at > 0 && lines[at - 1].starts_with("heap: "), "{text}");
    assert!(text.contains("alloc_b"), "{text}");
    assert!(
        !text.contains("alloc_a") && !text.contains("alloc_c"),
        "{text}"
    );

    // JSON: a structured filter, and the marks.
    let r = route("/debug/leaks.json", "min_age=5m&max_age=15m");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    let f = &v["heap"]["filter"];
    assert_eq!(f["min_age"], 300.0);
    assert_eq!(f["max_age"], 900.0);
    assert_eq!(f["kept_bytes"], 6000);
    assert_eq!(f["kept_samples"], 3);
    assert!(f["total_bytes"].as_u64().unwrap() >= A_BYTES + B_BYTES + C_BYTES);
    assert_eq!(v["marks"][0]["name"], "deploy");
    assert_eq!(v["marks"][0]["at_ns"], deploy.at_ns);
    let r = route("/debug/leaks.json", "since=deploy");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["heap"]["filter"]["since"]["name"], "deploy");
    let r = route("/debug/leaks.json", "");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert!(v["heap"]["filter"].is_null());

    // Decoded profiles are big (every stack of this process, at sample
    // rate 1): each is dropped before the next.
    pprof_windows(&deploy);

    // The debug=1 text states it in its header.
    let r = route("/debug/pprof/heap", "debug=1&since=deploy&until=canary");
    let t = body(&r);
    assert_eq!(r.status, 200);
    let third = t.lines().nth(2).unwrap_or_default();
    assert!(third.starts_with("# leakscope filter: heap born "), "{t}");
    assert!(
        third.contains(" ago (since=deploy until=canary): 5.9 KiB of "),
        "{t}"
    );
    assert!(t.contains("3: 6000 [3: 6000] @"), "{t}");

    // Bad windows: one-line 400s on every heap route.
    for path in [
        "/debug/leaks",
        "/debug/leaks.json",
        "/debug/pprof/heap",
        "/debug/pprof/allocs",
        "/debug/pprof/heap.svg",
    ] {
        refused(
            path,
            "min_age=1h&max_age=10m",
            "min_age (1h) is more than max_age (10m)",
        );
        refused(
            path,
            "since=nope",
            "unknown mark \"nope\" (marks set: deploy, canary)",
        );
        refused(
            path,
            "since=canary&until=deploy",
            "since=canary was marked after until=deploy",
        );
        refused(path, "max_age=99999999999", "bad max_age");
        refused(path, "until=two+words", "bad until \"two words\"");
        refused(path, "since=", "a mark name must not be empty");
    }

    // The index lists the marks with their ages, newest first.
    let index = body(&route("/", ""));
    let (d, k) = (
        index.find("<li>deploy: 10m").expect(&index),
        index.find("<li>canary: ").expect(&index),
    );
    assert!(k < d, "newest first: {index}");
    assert!(
        index.contains("href=\"/debug/leaks?since=deploy\""),
        "{index}"
    );

    // Mark names are validated; nothing is recorded for a bad one.
    for bad in ["", "two words", "tab\tbed", "é"] {
        assert!(leakscope::mark(bad).is_err(), "{bad:?}");
    }
    assert!(leakscope::mark(&"x".repeat(65)).is_err());
    assert_eq!(leakscope::marks::marks().len(), 2);

    drop((a, b, c));
    println!("window_marks: ok");
}

/// pprof: exactly the window's sites in use, the rest counted as allocated
/// only, and a comment stating the filter.
fn pprof_windows(deploy: &leakscope::Mark) {
    // pprof: exactly B in use, the rest counted as allocated only, and a
    // comment stating the filter.
    let r = route("/debug/pprof/heap", "min_age=5m&max_age=15m");
    assert_eq!(r.status, 200);
    let mut p = decode(&r.body);
    assert_eq!(inuse(&p, "alloc_a"), 0);
    assert_eq!(inuse(&p, "alloc_b"), B_BYTES as i64);
    assert_eq!(inuse(&p, "alloc_c"), 0);
    let comments: Vec<&str> = p
        .comment
        .iter()
        .map(|&i| p.string_table[i as usize].as_str())
        .collect();
    assert!(
        comments.iter().any(|c| c.starts_with(
            "leakscope filter: heap born 5m–15m ago (min_age=5m max_age=15m): 5.9 KiB of "
        )),
        "{comments:?}"
    );
    let unfiltered = decode(&pprof::heap_profile());
    assert_eq!(
        unfiltered.comment.len(),
        2,
        "no filter comment when unfiltered"
    );
    p = decode(&route("/debug/pprof/allocs", "since=deploy&until=canary").body);
    assert_eq!(inuse(&p, "alloc_b"), B_BYTES as i64);
    assert_eq!(inuse(&p, "alloc_c"), 0);
    p = decode(&route("/debug/pprof/heap", "until=deploy").body);
    assert_eq!(inuse(&p, "alloc_a"), A_BYTES as i64);
    assert_eq!(inuse(&p, "alloc_b"), 0);
    // The same window from options, exact.
    p = decode(&pprof::profile_now(
        &ProfileOptions::heap().since(deploy.clone()),
    ));
    assert_eq!(
        (
            inuse(&p, "alloc_a"),
            inuse(&p, "alloc_b"),
            inuse(&p, "alloc_c")
        ),
        (0, B_BYTES as i64, C_BYTES as i64)
    );
    // An unfiltered snapshot filtered per age bucket says so.
    let snap = leakscope::snapshot();
    p = decode(&pprof::profile(
        &snap,
        &ProfileOptions::heap().max_age(mins(5)),
    ));
    assert_eq!(inuse(&p, "alloc_a"), 0);
    assert_eq!(inuse(&p, "alloc_c"), C_BYTES as i64);
    let last = p.string_table[*p.comment.last().unwrap() as usize].as_str();
    assert!(
        last.starts_with("leakscope filter (per age bucket of an unfiltered snapshot): heap born at most 5m ago (max_age=5m): "),
        "{last}"
    );
    drop(snap);
}

/// In-use bytes of the samples whose stack has a frame of `func`.
fn inuse(p: &proto::Profile, func: &str) -> i64 {
    let s = |i: i64| p.string_table[i as usize].as_str();
    let has = |smp: &proto::Sample| {
        smp.location_id.iter().any(|&l| {
            p.location[l as usize - 1]
                .line
                .iter()
                .any(|ln| s(p.function[ln.function_id as usize - 1].name).ends_with(func))
        })
    };
    p.sample
        .iter()
        .filter(|smp| has(smp))
        .map(|smp| smp.value[3])
        .sum()
}

/// Bytes as leakscope writes them (`format.rs`).
fn fmt_b(b: u64) -> String {
    if b < 1024 {
        return format!("{b} B");
    }
    let units = ["KiB", "MiB", "GiB"];
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}
