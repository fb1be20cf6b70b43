//! Responses held for clients that never read are bounded by the listener's
//! byte budget: 64 such clients of the heaviest route, on a process with a
//! sizeable snapshot, keep the process's RSS within a stated bound, get a
//! `503` with `Retry-After` past the budget, and normal clients are served
//! all along and afterwards. Its own test binary: RSS is per process.

#![cfg(feature = "http")]

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::get;
use leakscope::server::ServerBuilder;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// A heap site per path through a binary tree of two functions: 2^depth
/// distinct stacks, each keeping one small block alive.
#[inline(never)]
fn left(bits: u32, depth: u32, keep: &mut Vec<Vec<u8>>) {
    grow(bits, depth, keep);
    std::hint::black_box(());
}

#[inline(never)]
fn right(bits: u32, depth: u32, keep: &mut Vec<Vec<u8>>) {
    grow(bits, depth, keep);
    std::hint::black_box(());
}

#[inline(never)]
fn grow(bits: u32, depth: u32, keep: &mut Vec<Vec<u8>>) {
    if depth == 0 {
        keep.push(std::hint::black_box(vec![1u8; 96]));
        return;
    }
    if bits & 1 == 0 {
        left(bits >> 1, depth - 1, keep);
    } else {
        right(bits >> 1, depth - 1, keep);
    }
}

/// A client socket with a tiny receive buffer, so that the kernel takes
/// little of a response off the server's hands.
fn tiny_client(addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 expected")
    };
    // SAFETY: plain socket calls on a descriptor this function owns; on
    // success it is handed to TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let small: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::from_ref(&small).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            std::ptr::from_ref(&sin).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let s = TcpStream::from_raw_fd(fd);
        assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        s
    }
}

const MIB: u64 = 1 << 20;

#[test]
fn non_reading_clients_of_the_heaviest_route_are_bounded() {
    leakscope::set_sample_rate(1);
    let mut keep = Vec::new();
    for bits in 0..512 {
        grow(bits, 10, &mut keep);
    }
    // BUDGET_MIB=100000 shows the process without a working budget (586 MiB
    // over the baseline when this was written, against the 90 MiB bound).
    let budget = std::env::var("BUDGET_MIB").map_or(16, |v| v.parse().unwrap()) * MIB;
    let srv = ServerBuilder::new()
        .response_budget(budget as usize)
        .request_timeout(Duration::from_secs(300))
        .serve("127.0.0.1:0")
        .expect("serve");
    let addr = srv.local_addr();

    // The heaviest route, read normally: its size, and a warm baseline.
    let first = get(addr, "/debug/leaks.json");
    assert_eq!(first.status, 200);
    let body = first.body.len() as u64;
    drop(first);
    let t = Instant::now();
    let _ = get(addr, "/debug/leaks.json");
    eprintln!("one leaks.json: {:?}", t.elapsed());
    let base = rss();
    eprintln!(
        "leaks.json: {:.1} MiB; RSS before: {:.1} MiB",
        body as f64 / MIB as f64,
        base as f64 / MIB as f64
    );
    // Big enough that 64 bodies held at once (64 x 6 = 384 MiB) would be
    // far past the bound below (about 80 MiB at this size).
    assert!(
        body >= 6 * MIB,
        "snapshot too small for the test: {body} bytes"
    );

    // RSS, sampled while the clients hang.
    let peak = Arc::new(AtomicU64::new(base));
    let stop = Arc::new(AtomicBool::new(false));
    let (p, s) = (peak.clone(), stop.clone());
    let sampler = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            p.fetch_max(rss(), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
    });

    // 64 clients that ask for the heaviest route and never read.
    let t = Instant::now();
    let lazy: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut c = tiny_client(addr);
            c.write_all(b"GET /debug/leaks.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .expect("write");
            c
        })
        .collect();
    // Until every request was answered (served within the budget, or
    // refused past it), at most 300 s (64 renders of ~8 MiB on 2 workers
    // take 30-100 s on a loaded 2-core machine).
    loop {
        let st = srv.stats();
        let held = st.held_bytes / body.max(1);
        if st.over_budget + held >= 64 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(300), "stuck: {st:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    let st = srv.stats();
    let grew = peak.saturating_sub(base);
    // Held bodies stay within the budget (plus at most one body: a
    // response is admitted whenever nothing is held), rendering adds at most
    // `workers` (2) bodies being built (JSON grows by doubling: 2x each),
    // plus slack for the allocator and the sockets' bookkeeping.
    let bound = budget + body + 2 * 2 * body + 32 * MIB;
    eprintln!(
        "64 non-reading clients in {:?}: RSS peak {:.1} MiB, +{:.1} MiB over the baseline (bound {:.1} MiB); {st:?}",
        t.elapsed(),
        peak as f64 / MIB as f64,
        grew as f64 / MIB as f64,
        bound as f64 / MIB as f64,
    );
    assert!(st.over_budget >= 64 - budget / body - 1, "{st:?}");
    assert!(st.held_bytes <= budget.max(body), "{st:?}");
    assert!(grew <= bound, "RSS grew {grew} bytes, bound {bound}");

    // The scrape is served while the bodies are held (small bodies are
    // never charged), and a refused client gets a clear 503.
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(addr, "/debug/leaks.json");
    assert!(
        r.status == 503 || r.status == 200,
        "{} {}",
        r.status,
        r.text()
    );
    if r.status == 503 {
        assert!(r.text().contains("budget"), "{}", r.text());
        assert!(r.headers.contains_key("retry-after"));
    }

    // The lazy clients leave: their bodies are released, normal clients get
    // the heaviest route again.
    drop(lazy);
    let t = Instant::now();
    loop {
        let r = get(addr, "/debug/leaks.json");
        if r.status == 200 {
            assert!(r.body.len() as u64 >= body / 2);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "never served again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = Instant::now();
    while srv.stats().held_bytes != 0 {
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", srv.stats());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(keep);
}
