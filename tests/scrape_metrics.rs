//! Issue 16: a scrape reads maintained state and costs the application
//! nothing it can see (own process, `harness = false`, sample rate 1).
//!
//! - `/metrics` renders byte-identical text from the light read
//!   (maintained per-stack sums, cached first frames) and from a full
//!   snapshot of the same quiescent state;
//! - a `/metrics` scrape copies, under the tables' lock, one row per
//!   interned stack (at most 3072 + 1) and no live sample; a heap profile
//!   copies at most the live table's capacity: a bound counted, not timed;
//! - 50 scrapes of `/metrics` and of the heap profile leave the
//!   application's `live_bytes` and `peak_live_bytes` where they were;
//! - the symbolizer holds less than its budget.

use std::hint::black_box;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

const LEVELS: u32 = 8;
/// 256 distinct stacks (8 binary choices), 4 live blocks each.
const STACKS: u32 = 1 << LEVELS;

#[inline(never)]
fn left(i: u32, level: u32, out: &mut Vec<Vec<u8>>) {
    step(i, level + 1, out);
    black_box(());
}

#[inline(never)]
fn right(i: u32, level: u32, out: &mut Vec<Vec<u8>>) {
    step(i, level + 1, out);
    black_box(());
}

#[inline(never)]
fn step(i: u32, level: u32, out: &mut Vec<Vec<u8>>) {
    if level == LEVELS {
        for k in 0..4 {
            out.push(vec![1u8; 100 + (i as usize * 7 + k) % 300]);
        }
    } else if i >> level & 1 == 0 {
        left(i, level, out);
    } else {
        right(i, level, out);
    }
}

fn workload() -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(STACKS as usize * 4);
    for i in 0..STACKS {
        step(i, 0, &mut out);
    }
    // Some freed blocks too (allocated-only sites, lifetimes).
    for i in 0..64 {
        drop(black_box(vec![0u8; 32 + i]));
    }
    out
}

fn metrics_identical_on_both_paths() {
    // Warm-up: every stack symbolized (the full path fills the first-frame
    // cache), the exporter's state seen once by both paths.
    let _ = leakscope::testing::metrics_both_paths();
    let (full, light) = leakscope::testing::metrics_both_paths();
    assert!(full.contains("leakscope_heap_site_live_bytes{function=\""));
    assert!(!light.contains("[unsymbolized stack"), "{light}");
    if full != light {
        for (a, b) in full.lines().zip(light.lines()) {
            if a != b {
                eprintln!("full:  {a}\nlight: {b}");
            }
        }
        panic!("the two paths differ");
    }
    // The user's sites are there, by name.
    assert!(full.contains("function=\"scrape_metrics::step\""), "{full}");
}

fn metrics_scrape_copies_no_live_sample() {
    let r = leakscope::server::route("/metrics", "");
    assert_eq!(r.status, 200);
    let (stacks, live) = leakscope::testing::last_table_read();
    assert_eq!(live, 0, "a /metrics scrape copied live samples");
    assert!(stacks >= u64::from(STACKS), "{stacks}");
    assert!(stacks <= 3072 + 1, "{stacks}");
    let r = leakscope::server::route("/debug/pprof/heap", "");
    assert_eq!(r.status, 200);
    let (stacks2, live2) = leakscope::testing::last_table_read();
    let live_samples = leakscope::heap_stats().live_samples;
    assert!(stacks2 <= 3072 + 1);
    assert!(
        live2 >= u64::from(STACKS) * 4 && live2 <= 114_688,
        "{live2}"
    );
    assert!(live2 <= live_samples + 16, "{live2} > {live_samples}");
}

fn scrapes_do_not_move_user_numbers() {
    // Set the peak well above the current live bytes: the body a route
    // returns is the caller's memory (it goes to the socket), so while held
    // it counts; what must not count is the work behind it.
    drop(black_box(vec![0u8; 4 << 20]));
    let before = leakscope::heap_stats();
    for _ in 0..50 {
        drop(leakscope::server::route("/metrics", ""));
    }
    for _ in 0..5 {
        drop(leakscope::server::route("/debug/pprof/heap", ""));
        drop(leakscope::server::route("/debug/pprof/allocs", ""));
    }
    let after = leakscope::heap_stats();
    assert_eq!(after.live_bytes, before.live_bytes, "{before:?}\n{after:?}");
    assert_eq!(after.peak_live_bytes, before.peak_live_bytes);
    assert!(after.symbolizer_bytes > 0);
    assert!(after.symbolizer_bytes <= after.symbolizer_budget_bytes);
    assert_eq!(after.symbolizer_budget_bytes, 64 << 20);
    let text = String::from_utf8(leakscope::server::route("/metrics", "").body).unwrap();
    assert!(text.contains("leakscope_symbolizer_bytes "), "{text}");
    assert!(text.contains("leakscope_symbolizer_budget_bytes 67108864\n"));
}

fn main() {
    leakscope::set_sample_rate(1);
    let kept = workload();
    leakscope::set_sample_rate(0);
    metrics_identical_on_both_paths();
    println!("test metrics_identical_on_both_paths ... ok");
    metrics_scrape_copies_no_live_sample();
    println!("test metrics_scrape_copies_no_live_sample ... ok");
    leakscope::set_sample_rate(1);
    scrapes_do_not_move_user_numbers();
    println!("test scrapes_do_not_move_user_numbers ... ok");
    drop(kept);
    println!("test result: ok. 3 passed; 0 failed");
}
