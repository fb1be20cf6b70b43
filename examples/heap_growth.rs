//! A leak inside a dependency's data, next to a large stable table and
//! request noise, read off the heap report alone (no `track!`).
//!
//! - a 16 MiB lookup table allocated at start-up and never touched again;
//! - a cache of parsed JSON documents (`serde_json::Value`, parsed by the
//!   real `serde_json`), keyed by request id, that is never evicted: the
//!   leak, about 1 MiB per 10 s;
//! - request noise: buffers and parsed documents that live for one request.
//!
//! The clock is leakscope's controlled one (`testing::advance_clock`):
//! 16 steps of 10 s run in well under a second of real time. The report's
//! first site is the leak, flagged `SUSPECTED LEAK`; the table is listed
//! after it, not suspected.
//!
//! ```text
//! cargo run --release --example heap_growth
//! ```
//!
//! `tests/heap_growth.rs` runs the same scenario and checks that.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// The stable table: filled once at start-up.
#[inline(never)]
pub fn build_lookup_table() -> Vec<u64> {
    (0..(2u64 << 20)).map(|i| i.wrapping_mul(0x9E37)).collect()
}

/// The service's response cache: never evicts (the leak).
#[derive(Default)]
pub struct ResponseCache {
    docs: HashMap<u64, serde_json::Value>,
}

impl ResponseCache {
    /// Parses and keeps a response body.
    #[inline(never)]
    pub fn remember(&mut self, id: u64, body: &str) {
        let doc: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        self.docs.insert(id, doc);
    }
}

/// One request: a buffer and a parsed body, both gone when it returns.
#[inline(never)]
pub fn handle_request(id: u64, body: &str) -> usize {
    let buf = black_box(vec![id as u8; 8 << 10]);
    let doc: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    black_box(&doc);
    buf.len()
}

/// A response body of about 1.6 KiB once parsed.
fn body(id: u64) -> String {
    format!(
        r#"{{"id":{id},"user":"user-{id}","tags":["a","b","c"],"payload":"{}"}}"#,
        "x".repeat(1024)
    )
}

/// Runs the scenario: returns the snapshot taken at the end (and keeps the
/// table and the cache alive until then).
pub fn scenario() -> leakscope::Snapshot {
    leakscope::set_sample_rate(64 << 10);
    leakscope::testing::set_sample_seed(7);
    let table = black_box(build_lookup_table());
    let mut cache = ResponseCache::default();
    let mut id = 0u64;
    for _step in 0..16 {
        leakscope::testing::advance_clock(Duration::from_secs(10));
        for _ in 0..1200 {
            id += 1;
            let b = body(id);
            black_box(handle_request(id, &b));
            if id.is_multiple_of(2) {
                cache.remember(id, &b);
            }
        }
    }
    let snap = leakscope::snapshot();
    black_box((&table, &cache.docs.len()));
    snap
}

#[allow(dead_code)] // `tests/heap_growth.rs` includes this file for `scenario`
fn main() {
    let snap = scenario();
    print!("{snap}");
}
