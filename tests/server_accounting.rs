//! What the debug server allocates to answer a scrape is leakscope's memory,
//! not the application's: scraping every route many times moves neither the
//! application's live bytes nor its peak.
//!
//! `harness = false`: this file asserts exact process-wide numbers, and
//! libtest's own threads would allocate inside the measured window.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// Distinct stacks (one per depth), so the scrapes have many sites to
/// render and their bodies are large.
#[inline(never)]
fn keep_at_depth(depth: usize, out: &mut Vec<Vec<u8>>) {
    if depth == 0 {
        out.push(vec![1u8; 4096]);
    } else {
        keep_at_depth(depth - 1, out);
        black_box(&out);
    }
}

/// GET `path` with a plain socket, reading into a buffer allocated once by
/// the caller: the client itself allocates nothing per request.
fn scrape(addr: SocketAddr, path: &str, buf: &mut [u8], req: &mut Vec<u8>) -> usize {
    req.clear();
    write!(
        req,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(req).expect("send");
    // The status line arrives first; the rest is read over it.
    let mut head = [0u8; 12];
    s.read_exact(&mut head).expect("status line");
    assert_eq!(&head, b"HTTP/1.1 200", "{path}");
    let mut total = head.len();
    loop {
        match s.read(buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("reading {path}: {e}"),
        }
    }
    total
}

fn scrapes_are_booked_as_leakscope_memory() {
    leakscope::set_sample_rate(1);
    let mut kept = Vec::new();
    for depth in 0..300 {
        keep_at_depth(depth, &mut kept);
    }
    let server = leakscope::server::serve("127.0.0.1:0").expect("serve");
    let addr = server.local_addr();
    let mut buf = vec![0u8; 1 << 20];
    let mut req = Vec::with_capacity(256);
    // One warm-up round: first-time work (symbol caches, the runtime's
    // connection buffers) is leakscope's too, but keep the measured window
    // to steady state.
    let routes = [
        "/metrics",
        "/debug/pprof/heap",
        "/debug/pprof/allocs",
        "/debug/leaks",
        "/debug/leaks.json",
    ];
    for r in routes {
        scrape(addr, r, &mut buf, &mut req);
    }
    let before = leakscope::heap_stats();
    let mut served = 0;
    for _ in 0..10 {
        for r in routes {
            served += scrape(addr, r, &mut buf, &mut req);
        }
    }
    let after = leakscope::heap_stats();
    assert!(served > 2 << 20, "the scrapes were small: {served} bytes");
    // Live bytes: the scrapes allocated and freed nothing of the
    // application's.
    assert_eq!(
        after.live_bytes, before.live_bytes,
        "scrapes moved the application's live bytes"
    );
    // Peak: the peak is checked at each thread's slow path, so it can miss
    // the true one by up to 256 KiB per thread; the scrapes' bodies are
    // megabytes.
    assert!(
        after.peak_live_bytes <= before.peak_live_bytes + (512 << 10),
        "scrapes raised the application's peak from {} to {}",
        before.peak_live_bytes,
        after.peak_live_bytes
    );
    server.shutdown();
    black_box(kept);
    leakscope::set_sample_rate(leakscope::alloc::DEFAULT_SAMPLE_RATE);
}

fn main() {
    scrapes_are_booked_as_leakscope_memory();
    println!("test scrapes_are_booked_as_leakscope_memory ... ok");
    println!("test result: ok. 1 passed; 0 failed");
}
