//! The flame graph SVG of a known (synthetic) heap: in-use stacks drawn with
//! their byte counts, freed-only stacks absent, odd names survive.
#![cfg(feature = "flamegraph")]

use leakscope::flamegraph;
use leakscope::{Frame, HeapSite, Snapshot};

fn site(frames: &[&str], live: u64, allocated: u64) -> HeapSite {
    let mut s = HeapSite::default();
    s.frames = frames.iter().map(|f| Frame::new(*f, None, None)).collect();
    s.live_bytes = live;
    s.live_objects = u64::from(live > 0);
    s.allocated_bytes = allocated;
    s.allocated_objects = 1;
    s
}

fn snapshot() -> Snapshot {
    let mut snap = Snapshot::default();
    snap.heap.sample_rate = 1;
    snap.heap.live_bytes = 3 << 20;
    snap.heap.sites = vec![
        site(
            &["app::cache::insert", "app::handle", "main"],
            2 << 20,
            2 << 20,
        ),
        site(
            &["<[u8; 32] as Clone>::clone", "app::handle", "main"],
            1 << 20,
            1 << 20,
        ),
        site(&["app::scratch", "main"], 0, 5 << 20),
    ];
    snap
}

#[test]
fn svg_shows_in_use_stacks_with_bytes() {
    let svg = String::from_utf8(flamegraph::heap_svg(&snapshot()).expect("render")).expect("utf-8");
    assert!(svg.starts_with("<?xml"), "{}", &svg[..80.min(svg.len())]);
    assert!(svg.contains("</svg>"));
    assert!(svg.contains("app::cache::insert"));
    assert!(svg.contains("app::handle"));
    // inferno's tooltip: "<name> (<count> bytes, <pct>%)".
    assert!(
        svg.contains("app::cache::insert (2,097,152 bytes, 66.67%)"),
        "tooltip with bytes"
    );
    assert!(svg.contains("main (3,145,728 bytes, 100.00%)"));
    // `;` in a name must not split the frame.
    assert!(svg.contains("&lt;[u8: 32] as Clone&gt;::clone"));
    // Freed-only stacks are not in-use memory.
    assert!(!svg.contains("app::scratch"));
}

#[test]
fn folded_lines_match_the_sites() {
    let lines = flamegraph::folded(&snapshot());
    assert_eq!(
        lines,
        [
            "main;app::handle;app::cache::insert 2097152",
            "main;app::handle;<[u8: 32] as Clone>::clone 1048576",
        ]
    );
}
