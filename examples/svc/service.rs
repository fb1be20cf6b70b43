//! The service of the service-level benchmark (issue 16), shared by the
//! `svc_*` examples: each variant is a `main_*.rs` with its own
//! `#[global_allocator]` that includes this file with `#[path]`, so all of
//! them run the same code.
//!
//! `POST /work` takes a 1–2 KiB JSON order (see `svc_loadgen`), parses it
//! into typed structs, looks its `key` up in a bounded cache (CLOCK, a
//! second-chance approximation of LRU, at most [`CACHE_CAP`] entries),
//! computes and inserts the entry on a miss, and answers a ~1 KiB JSON
//! document. Everything runs on one tokio current-thread runtime, so the
//! service uses one CPU; a tracking variant's debug server has its own
//! threads, which the benchmark pins to the same CPU.
//!
//! Prints `listening on http://ADDR` (and `debug on http://ADDR` for a
//! variant with the debug server) on stdout, then serves until killed.
//! The first argument is the service address (default `127.0.0.1:0`).

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt as _;
use axum::Router;
use serde::{Deserialize, Serialize};

/// The most entries the cache holds.
pub const CACHE_CAP: usize = 4096;

#[derive(Debug, Deserialize)]
struct WorkRequest {
    request_id: u64,
    user: String,
    key: String,
    region: String,
    items: Vec<Item>,
    tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Item {
    sku: String,
    qty: u32,
    price_cents: u64,
    note: String,
}

/// What the cache keeps per key: computed once on a miss.
#[derive(Debug)]
struct Entry {
    profile: String,
    segments: Vec<String>,
    score: u64,
    referenced: bool,
}

/// A CLOCK cache: a hit sets `referenced`; eviction walks the queue from
/// the front, giving referenced entries a second chance.
#[derive(Debug, Default)]
struct Cache {
    map: HashMap<String, Entry>,
    queue: VecDeque<String>,
    hits: u64,
    misses: u64,
}

impl Cache {
    /// Returns the entry for `key`, computing it with `make` on a miss,
    /// and whether it was a hit.
    fn get_or_insert(&mut self, key: &str, make: impl FnOnce() -> Entry) -> (&Entry, bool) {
        let hit = self.map.contains_key(key);
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
            while self.map.len() >= CACHE_CAP {
                let Some(k) = self.queue.pop_front() else {
                    break;
                };
                match self.map.get_mut(&k) {
                    Some(e) if e.referenced => {
                        e.referenced = false;
                        self.queue.push_back(k);
                    }
                    _ => {
                        self.map.remove(&k);
                    }
                }
            }
            self.map.insert(key.to_string(), make());
            self.queue.push_back(key.to_string());
        }
        let e = self.map.get_mut(key).expect("just looked up or inserted");
        if hit {
            e.referenced = true;
        }
        (e, hit)
    }
}

#[derive(Debug, Serialize)]
struct WorkResponse<'a> {
    request_id: u64,
    user: &'a str,
    key: &'a str,
    region: &'a str,
    cache: &'static str,
    cache_size: usize,
    item_count: usize,
    units: u64,
    total_cents: u64,
    score: u64,
    profile: &'a str,
    segments: &'a [String],
    lines: Vec<Line<'a>>,
    tags: &'a [String],
}

#[derive(Debug, Serialize)]
struct Line<'a> {
    sku: &'a str,
    qty: u32,
    cents: u64,
}

/// A cheap deterministic hash (FNV-1a) standing in for real work on a miss.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn make_entry(req: &WorkRequest) -> Entry {
    let h = fnv(&req.key);
    Entry {
        profile: format!("profile:{}:{}:{:016x}", req.key, req.region, h),
        segments: (0..6)
            .map(|i| format!("segment-{}-{:08x}", i, (h >> (i * 8)) as u32))
            .collect(),
        score: h % 10_000,
        referenced: false,
    }
}

async fn work(State(cache): State<Arc<Mutex<Cache>>>, body: Bytes) -> Response {
    let req: WorkRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad request: {e}\n")).into_response(),
    };
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    let cache_size = cache.map.len();
    let (entry, hit) = cache.get_or_insert(&req.key, || make_entry(&req));
    let lines: Vec<Line<'_>> = req
        .items
        .iter()
        .map(|i| Line {
            sku: &i.sku,
            qty: i.qty,
            cents: i.price_cents * u64::from(i.qty) + (i.note.len() as u64 % 3),
        })
        .collect();
    let resp = WorkResponse {
        request_id: req.request_id,
        user: &req.user,
        key: &req.key,
        region: &req.region,
        cache: if hit { "hit" } else { "miss" },
        cache_size,
        item_count: req.items.len(),
        units: req.items.iter().map(|i| u64::from(i.qty)).sum(),
        total_cents: lines.iter().map(|l| l.cents).sum(),
        score: entry.score,
        profile: &entry.profile,
        segments: &entry.segments,
        lines,
        tags: &req.tags,
    };
    match serde_json::to_vec(&resp) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Runs the service; with `debug_server`, also leakscope's debug server on
/// an ephemeral loopback port. Never returns unless binding fails.
pub fn run(debug_server: bool) {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr.as_str()).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("svc: cannot bind {addr}: {e}");
                std::process::exit(1);
            }
        };
        let local = listener.local_addr().expect("local address");
        // As a latency-minded service does: no Nagle delay on the answers.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        // Kept for the life of the process: dropping it stops the server.
        let _debug = if debug_server {
            match leakscope::server::serve("127.0.0.1:0") {
                Ok(s) => {
                    println!("debug on http://{}", s.local_addr());
                    Some(s)
                }
                Err(e) => {
                    eprintln!("svc: cannot start the debug server: {e}");
                    std::process::exit(1);
                }
            }
        } else {
            None
        };
        println!("listening on http://{local}");
        let _ = std::io::stdout().flush();
        let app = Router::new()
            .route("/work", post(work))
            .with_state(Arc::new(Mutex::new(Cache::default())));
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("svc: {e}");
            std::process::exit(1);
        }
    });
}
