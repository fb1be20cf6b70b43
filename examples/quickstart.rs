//! The quick start: install the tracking allocator, allocate in a few
//! functions (one of them "leaks" by keeping its buffers), print the report.
//!
//! `cargo run --release --example quickstart`

use std::collections::HashMap;
use std::time::Duration;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// Keeps every buffer it makes: the leak.
#[inline(never)]
fn cache_forever(store: &mut Vec<Vec<u8>>, n: usize) {
    for i in 0..n {
        store.push(vec![i as u8; 64 * 1024]);
    }
}

/// Allocates and frees: churn, no leak.
#[inline(never)]
fn handle_requests(n: usize) -> usize {
    let mut total = 0;
    for i in 0..n {
        let mut headers: HashMap<String, String> = HashMap::new();
        headers.insert("x-request-id".into(), format!("req-{i}"));
        let body = vec![0u8; 1024 + (i % 3072)];
        total += body.len() + headers.len();
    }
    total
}

/// A long-lived pool allocated once at start-up.
#[inline(never)]
fn build_pool() -> Vec<String> {
    (0..20_000)
        .map(|i| format!("pooled connection #{i}"))
        .collect()
}

fn main() {
    leakscope::set_sample_rate(64 * 1024);
    let pool = build_pool();
    let mut leaked = Vec::new();
    let before = leakscope::snapshot();
    for _ in 0..5 {
        cache_forever(&mut leaked, 40);
        handle_requests(20_000);
        std::thread::sleep(Duration::from_millis(200));
    }
    let snap = leakscope::snapshot();
    println!("{}", snap.summary_since(&before));
    println!();
    println!("{snap}");
    println!(
        "pool of {} strings, {} leaked buffers",
        pool.len(),
        leaked.len()
    );
}
