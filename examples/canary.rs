//! A canary service: leakscope's tracking allocator, a small workload with
//! a slow leak, and the debug server on loopback.
//!
//! ```text
//! cargo run --example canary -- --duration 30 --addr 127.0.0.1:6060
//! curl -s localhost:6060/debug/leaks
//! go tool pprof http://localhost:6060/debug/pprof/heap
//! ```
//!
//! Prints `listening on http://<addr>` once the server is up (with the real
//! port when `--addr` has port 0), runs for `--duration` seconds (default
//! 30), then shuts the server down and exits.

use std::collections::VecDeque;
use std::io::Write as _;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// What a request handler keeps while it runs.
#[derive(Debug)]
struct RequestCtx {
    id: u64,
    scratch: Vec<u8>,
}

/// A per-caller session shared with a deadline timer (the seed story: the
/// timer's clone keeps it alive).
#[derive(Debug)]
struct Session {
    deadline_ms: u64,
}

const CALLERS: [&str; 3] = ["billing", "search", "checkout"];

fn main() {
    let mut duration = Duration::from_secs(30);
    let mut addr = String::from("127.0.0.1:6060");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--duration" => {
                let v = args.next().and_then(|v| v.parse::<f64>().ok());
                match v {
                    Some(s) if s.is_finite() && s >= 0.0 => duration = Duration::from_secs_f64(s),
                    _ => usage("--duration takes a number of seconds"),
                }
            }
            "--addr" => {
                addr = args
                    .next()
                    .unwrap_or_else(|| usage("--addr takes host:port"))
            }
            _ => usage(&format!("unknown argument {a:?}")),
        }
    }
    // Sample often so a short run has sites to show.
    leakscope::set_sample_rate(16 * 1024);

    let server = match leakscope::server::serve(addr.as_str()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("canary: cannot serve on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on http://{}", server.local_addr());
    let _ = std::io::stdout().flush();

    let start = Instant::now();
    let mut leaked: Vec<Vec<u8>> = Vec::new();
    let mut leaked_ctx = Vec::new();
    let mut in_flight = VecDeque::new();
    let mut timers = VecDeque::new();
    let mut forgotten_timers = Vec::new();
    let mut id = 0u64;
    let mut round = 0u64;
    while start.elapsed() < duration {
        round += 1;
        for _ in 0..50 {
            id += 1;
            let ctx = leakscope::track!(
                RequestCtx {
                    id,
                    scratch: vec![0u8; 512 + (id % 7) as usize * 256],
                },
                "request"
            );
            in_flight.push_back(ctx);
            if in_flight.len() > 20 {
                drop(in_flight.pop_front());
            }
        }
        // Sessions: the handler drops its handle, a timer keeps a clone;
        // timers normally fire (drop), but one in 25 is forgotten.
        let caller = CALLERS[(round % 3) as usize];
        let session = leakscope::track_arc!(Session { deadline_ms: 250 }, caller = caller);
        let timer = session.clone();
        drop(session);
        if round.is_multiple_of(25) {
            forgotten_timers.push(timer);
        } else {
            timers.push_back(timer);
            if timers.len() > 10 {
                drop(timers.pop_front());
            }
        }
        // The slow leak: some buffers and contexts are kept.
        if round.is_multiple_of(20) || leaked.len() < 8 {
            leaked.push(vec![1u8; 64 * 1024]);
            if let Some(c) = in_flight.pop_front() {
                leaked_ctx.push(c);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let kept: usize = leaked.iter().map(Vec::len).sum::<usize>()
        + leaked_ctx.iter().map(|c| c.scratch.len()).sum::<usize>();
    let last_leaked_id = leaked_ctx.iter().map(|c| c.id).max().unwrap_or(0);
    let pending_ms: u64 = forgotten_timers.iter().map(|t| t.deadline_ms).sum();
    println!(
        "canary: done, {kept} bytes leaked on purpose (last leaked request {last_leaked_id}), {} forgotten timers ({pending_ms} ms of deadlines)",
        forgotten_timers.len()
    );
    println!("{}", leakscope::snapshot().summary());
    server.shutdown();
}

fn usage(msg: &str) -> ! {
    eprintln!("canary: {msg}\nusage: canary [--duration SECONDS] [--addr HOST:PORT]");
    std::process::exit(2);
}
