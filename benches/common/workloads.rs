//! Workloads shared by the System and TrackingAllocator benchmark binaries
//! (a global allocator is per binary, so each allocator gets its own bench
//! target running exactly these functions).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;

/// Operations per measured iteration of the churn workloads.
pub const CHURN_OPS: usize = 1000;

/// Small alloc/free churn: a ring of 64 live buffers, each iteration
/// replaces one with a new, initialised buffer of 16–256 bytes (the old one
/// is freed).
pub fn churn(ring: &mut [Option<Vec<u8>>; 64], ops: usize, salt: usize) {
    for i in 0..ops {
        let size = 16 + (i.wrapping_mul(37).wrapping_add(salt)) % 241;
        let slot = (i.wrapping_mul(13).wrapping_add(salt)) % 64;
        ring[slot] = Some(black_box(vec![salt as u8; size]));
    }
}

/// One request-like unit: a few strings, a 1–4 KiB body, a small header map.
pub fn request(i: usize) -> usize {
    // black_box: LLVM can see through System's malloc and, since only the
    // length of this String is used, remove its allocation altogether; a
    // tracking allocator's call cannot be removed, so without this the two
    // binaries would not do the same work.
    let method = black_box(String::from("GET"));
    let path = format!("/api/v1/items/{}", i % 1000);
    // black_box: otherwise LLVM sees the zeroed body is never read and, for
    // System only (whose calloc it can see through), drops the zeroing.
    let body = black_box(vec![0u8; 1024 + (i * 97) % 3072]);
    let mut headers: HashMap<String, String> = HashMap::with_capacity(4);
    headers.insert("host".to_string(), "example.internal".to_string());
    headers.insert("x-request-id".to_string(), format!("{i:016x}"));
    headers.insert("accept".to_string(), "application/json".to_string());
    black_box(method.len() + path.len() + body.len() + headers.len())
}

fn churn_threads(threads: usize, iters: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut ring: [Option<Vec<u8>>; 64] = std::array::from_fn(|_| None);
                for k in 0..iters {
                    churn(&mut ring, CHURN_OPS, t * 7919 + k as usize);
                }
            });
        }
    });
    start.elapsed()
}

/// Registers the three workloads under `name` (e.g. "system", "tracking").
pub fn register(c: &mut Criterion, name: &str) {
    let mut g = c.benchmark_group("churn_1t");
    g.bench_function(name, |b| {
        let mut ring: [Option<Vec<u8>>; 64] = std::array::from_fn(|_| None);
        let mut k = 0;
        b.iter(|| {
            k += 1;
            churn(&mut ring, CHURN_OPS, k)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("churn_2t");
    g.bench_function(name, |b| b.iter_custom(|iters| churn_threads(2, iters)));
    g.finish();

    let mut g = c.benchmark_group("request_mix");
    g.bench_function(name, |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            request(i)
        })
    });
    g.finish();
}

/// Criterion settings for these benches: short, since the machine is small.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .noise_threshold(0.02)
}
