//! Hostile clients: oversized, malformed, slow, many at once. Each test
//! checks the refusal and that the application (a worker thread doing its
//! own allocations) and the server keep working.

#![cfg(feature = "http")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{body_of, get, raw, status_of};
use leakscope::server::{Server, ServerBuilder};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// The "application": a thread that allocates and counts its iterations.
struct App {
    progress: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl App {
    fn start() -> App {
        let progress = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (progress.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let v: Vec<u64> = (0..256).collect();
                std::hint::black_box(&v);
                p.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        App {
            progress,
            stop,
            thread: Some(thread),
        }
    }

    /// The app made progress over the last 200 ms.
    fn assert_alive(&self) {
        let before = self.progress.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
        let after = self.progress.load(Ordering::Relaxed);
        assert!(after > before, "the application stalled");
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn server(b: ServerBuilder) -> (Server, SocketAddr) {
    let s = b.serve("127.0.0.1:0").expect("serve");
    let a = s.local_addr();
    (s, a)
}

fn quick() -> ServerBuilder {
    ServerBuilder::new()
        .header_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_secs(3))
}

fn assert_serves(addr: SocketAddr) {
    let r = get(addr, "/debug/leaks");
    assert_eq!(r.status, 200, "server no longer serves");
}

const T: Duration = Duration::from_secs(10);

#[test]
fn oversized_head_gets_431() {
    let app = App::start();
    let (_s, addr) = server(quick());
    let mut req = b"GET /debug/leaks HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 64 * 1024));
    req.extend(b"\r\n\r\n");
    let resp = raw(addr, &req, T);
    assert_eq!(
        status_of(&resp),
        Some(431),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    app.assert_alive();
    assert_serves(addr);
}

#[test]
fn too_many_headers_are_refused() {
    let app = App::start();
    let (_s, addr) = server(quick());
    let mut req = b"GET /debug/leaks HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..200 {
        req.extend(format!("X-H{i}: v\r\n").as_bytes());
    }
    req.extend(b"\r\n");
    let resp = raw(addr, &req, T);
    let status = status_of(&resp);
    assert!(
        matches!(status, Some(431) | Some(400)),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    app.assert_alive();
    assert_serves(addr);
}

#[test]
fn ten_kb_of_garbage_query_gets_400_with_a_reason() {
    let app = App::start();
    let (_s, addr) = server(quick());
    let garbage: String = (0..10_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    for route in ["/debug/leaks", "/debug/pprof/heap", "/metrics"] {
        let req = format!("GET {route}?{garbage} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let resp = raw(addr, req.as_bytes(), T);
        assert_eq!(status_of(&resp), Some(400), "{route}");
        let body = body_of(&resp);
        assert_eq!(body.lines().count(), 1, "{body}");
        assert!(body.contains("too long"), "{body}");
    }
    // Garbage that fits: bad percent-encoding, negative and absurd ages.
    for q in [
        "min_age=%G0",
        "min_age=-1",
        "min_age=banana",
        "min_age=1e400",
        "debug=%00",
    ] {
        let resp = raw(
            addr,
            format!("GET /debug/leaks?{q} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
            T,
        );
        assert_eq!(status_of(&resp), Some(400), "{q}");
        assert_eq!(body_of(&resp).lines().count(), 1, "{q}");
    }
    app.assert_alive();
    assert_serves(addr);
}

#[test]
fn malformed_requests_get_400_or_close() {
    let app = App::start();
    let (_s, addr) = server(quick());
    for junk in [
        &b"\x00\x01\x02\x03 garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /debug/leaks HTTP/9.9\r\n\r\n",
        b"GET /debug/leaks HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
        b"\r\n\r\n\r\n\r\n",
    ] {
        let resp = raw(addr, junk, T);
        let st = status_of(&resp);
        assert!(
            st.is_none() || st.is_some_and(|s| (400..500).contains(&s)),
            "{:?} -> {}",
            String::from_utf8_lossy(junk),
            String::from_utf8_lossy(&resp)
        );
    }
    app.assert_alive();
    assert_serves(addr);
}

#[test]
fn request_bodies_get_413() {
    let app = App::start();
    let (_s, addr) = server(quick());
    let resp = raw(
        addr,
        b"GET /debug/leaks HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\n\r\nabc",
        T,
    );
    assert_eq!(status_of(&resp), Some(413));
    let resp = raw(
        addr,
        b"GET /debug/leaks HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        T,
    );
    assert_eq!(status_of(&resp), Some(413));
    app.assert_alive();
    assert_serves(addr);
}

/// Opens a connection that sends half a request head and stalls.
fn stall(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /debug/leaks HTTP/1.1\r\nHost: localhost\r\nX-Slow:")
        .expect("write");
    s
}

#[test]
fn slow_clients_do_not_block_others_and_are_cut_off() {
    let app = App::start();
    let (_s, addr) = server(
        ServerBuilder::new()
            .header_timeout(Duration::from_millis(800))
            .max_connections(32),
    );
    let mut slow: Vec<TcpStream> = (0..16).map(|_| stall(addr)).collect();
    // Other clients are served while the slow ones hang.
    let t0 = Instant::now();
    assert_serves(addr);
    assert_serves(addr);
    assert!(
        t0.elapsed() < Duration::from_millis(800),
        "served only after the slow clients timed out"
    );
    app.assert_alive();
    // The slow ones are closed by the server after the head timeout.
    for s in &mut slow {
        s.set_read_timeout(Some(T)).unwrap();
        let mut buf = Vec::new();
        let t = Instant::now();
        let _ = s.read_to_end(&mut buf);
        assert!(t.elapsed() < T, "slow client not cut off");
    }
    assert_serves(addr);
}

#[test]
fn stalled_connections_at_the_cap_are_evicted_oldest_first() {
    let app = App::start();
    let (_s, addr) = server(
        ServerBuilder::new()
            .header_timeout(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(30))
            .max_connections(8),
    );
    let mut held: Vec<TcpStream> = (0..8).map(|_| stall(addr)).collect();
    std::thread::sleep(Duration::from_millis(100));
    // At the cap, the new request evicts the oldest stalled connection
    // instead of being turned away.
    let resp = raw(
        addr,
        b"GET /debug/leaks HTTP/1.1\r\nHost: localhost\r\n\r\n",
        T,
    );
    assert_eq!(
        status_of(&resp),
        Some(200),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    // The first one was closed (end of stream or reset, no answer).
    let first = &mut held[0];
    first.set_read_timeout(Some(T)).unwrap();
    let mut buf = Vec::new();
    let t = Instant::now();
    let _ = first.read_to_end(&mut buf);
    assert!(
        t.elapsed() < T,
        "the oldest stalled connection is still open"
    );
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    app.assert_alive();
    assert_serves(addr);
}

/// Reads what the server sends on an idle connection within `wait`:
/// `true` if it closed it.
fn closed_within(mut s: &TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    !matches!(s.read(&mut buf), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

#[test]
fn sixty_four_idle_connections_do_not_lock_out_the_scrape() {
    let app = App::start();
    // Long timeouts: the scrape must not be waiting for the idle
    // connections to time out.
    let (srv, addr) = server(
        ServerBuilder::new()
            .header_timeout(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(30)),
    );
    let idle: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    for round in 0..3 {
        let t = Instant::now();
        let r = get(addr, "/metrics");
        let took = t.elapsed();
        eprintln!(
            "scrape {round} with 64 idle connections: {} in {took:?}",
            r.status
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(took < Duration::from_secs(2), "scrape took {took:?}");
    }
    // One eviction made room (each later scrape took the slot the one
    // before it freed): the oldest connection's.
    assert!(closed_within(&idle[0], T), "the oldest connection is open");
    let stats = srv.stats();
    assert!(stats.evicted >= 1, "{stats:?}");
    app.assert_alive();
}

#[test]
fn trickling_connections_at_the_cap_do_not_lock_out_the_scrape() {
    let app = App::start();
    let (srv, addr) = server(
        ServerBuilder::new()
            .header_timeout(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(30)),
    );
    // 64 connections that each send a byte of a request head now and then:
    // not idle, never done.
    let stop = Arc::new(AtomicBool::new(false));
    let conns: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    for c in &conns {
        c.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    let writers: Vec<TcpStream> = conns.iter().map(|c| c.try_clone().unwrap()).collect();
    let s2 = stop.clone();
    let trickler = std::thread::spawn(move || {
        let head = b"GET /debug/leaks HTTP/1.1\r\nHost: localhost\r\nX-Trickle: ";
        let mut writers = writers;
        // Bounded: at most 5 s of trickling.
        for i in 0..50 {
            if s2.load(Ordering::Relaxed) {
                break;
            }
            for w in &mut writers {
                let _ = w.write_all(&[head.get(i).copied().unwrap_or(b'a')]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    for round in 0..3 {
        let t = Instant::now();
        let r = get(addr, "/metrics");
        let took = t.elapsed();
        eprintln!(
            "scrape {round} with 64 trickling connections: {} in {took:?}",
            r.status
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(took < Duration::from_secs(2), "scrape took {took:?}");
    }
    stop.store(true, Ordering::Relaxed);
    trickler.join().unwrap();
    // One eviction made room (each later scrape took the slot the one
    // before it freed): the oldest connection's.
    assert!(closed_within(&conns[0], T), "the oldest connection is open");
    let stats = srv.stats();
    assert!(stats.evicted >= 1, "{stats:?}");
    app.assert_alive();
    assert_serves(addr);
}

#[test]
fn a_flood_of_connections_is_bounded_and_survived() {
    let app = App::start();
    let (_s, addr) = server(quick().max_connections(16));
    let threads: Vec<_> = (0..64)
        .map(|_| {
            std::thread::spawn(move || {
                raw(
                    addr,
                    b"GET /debug/pprof/heap HTTP/1.1\r\nHost: localhost\r\n\r\n",
                    T,
                )
            })
        })
        .collect();
    let mut ok = 0;
    for t in threads {
        match status_of(&t.join().unwrap()) {
            Some(200) => ok += 1,
            Some(503) | None => {}
            Some(s) => panic!("unexpected status {s}"),
        }
    }
    assert!(ok >= 1, "nothing was served");
    app.assert_alive();
    assert_serves(addr);
}

#[test]
fn clients_that_never_read_are_dropped_after_the_request_timeout() {
    let app = App::start();
    let (_s, addr) = server(
        ServerBuilder::new()
            .request_timeout(Duration::from_secs(2))
            .max_connections(8),
    );
    // Send requests and never read the answers (each response sits in the
    // socket buffers); the server must not wait on them.
    let lazy: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /debug/leaks.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    assert_serves(addr);
    app.assert_alive();
    std::thread::sleep(Duration::from_millis(2500));
    // All slots are free again: 8 more connections are accepted and served.
    let results: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                status_of(&raw(addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", T))
            })
        })
        .collect();
    for r in results {
        assert_eq!(r.join().unwrap(), Some(200));
    }
    drop(lazy);
}

#[test]
fn shutdown_is_prompt_with_stalled_clients() {
    let app = App::start();
    let (s, addr) = server(
        ServerBuilder::new()
            .header_timeout(Duration::from_secs(60))
            .request_timeout(Duration::from_secs(60)),
    );
    let held: Vec<TcpStream> = (0..10).map(|_| stall(addr)).collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    s.shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    app.assert_alive();
    drop(held);
}

#[test]
fn ten_kb_of_binary_garbage_is_refused() {
    let app = App::start();
    let (_s, addr) = server(quick());
    // A deterministic pseudo-random byte soup, no request line in sight.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let junk: Vec<u8> = (0..10_240)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let resp = raw(addr, &junk, T);
    let st = status_of(&resp);
    assert!(
        st.is_none() || st == Some(400),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    app.assert_alive();
    assert_serves(addr);
}

#[test]
fn a_trickling_client_is_cut_off_at_the_head_deadline() {
    let app = App::start();
    let (_s, addr) = server(ServerBuilder::new().header_timeout(Duration::from_millis(600)));
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_write_timeout(Some(T)).unwrap();
    // One byte every 50 ms: each read is quick, the head never completes.
    let start = Instant::now();
    let head = b"GET /debug/leaks HTTP/1.1\r\nHost: localhost\r\nX-Trickle: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut_off = false;
    // ~1.2 s of trickling, twice the head timeout.
    for b in head.iter().take(24) {
        if s.write_all(&[*b]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !cut_off {
        // Closed by the server: a read sees the end of the stream (maybe
        // after an error response) or a reset; still open: it times out.
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 512];
        cut_off = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break false
                }
                Err(_) => break true,
            }
        };
    }
    assert!(
        cut_off,
        "trickling client still connected after {:?}",
        start.elapsed()
    );
    assert!(start.elapsed() < Duration::from_secs(4));
    app.assert_alive();
    assert_serves(addr);
}

/// One raw request with the given extra header lines; the status.
fn status_with(addr: SocketAddr, path: &str, headers: &str) -> Option<u16> {
    let req = format!("GET {path} HTTP/1.1\r\n{headers}\r\n");
    status_of(&raw(addr, req.as_bytes(), T))
}

#[test]
fn dns_rebinding_hosts_are_refused_on_loopback() {
    let app = App::start();
    let (_s, addr) = server(quick());
    let port = addr.port();
    // What a browser sends after DNS rebinding: the attacker's name.
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        "127.0.0.1.nip.io".into(),
        "localhost.evil.example".into(),
        "127.1".into(),
        "[::1".into(),
        "[evil]:80".into(),
        "localhost:http".into(),
    ] {
        let req = format!("GET /debug/leaks HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let resp = raw(addr, req.as_bytes(), T);
        assert_eq!(status_of(&resp), Some(403), "{host}");
        let body = body_of(&resp);
        assert_eq!(body.lines().count(), 1, "{body}");
        assert!(body.contains("Host"), "{body}");
    }
    // Loopback names and IP literals, with or without a port.
    for host in [
        "localhost".to_string(),
        "LocalHost".into(),
        format!("localhost:{port}"),
        "localhost.".into(),
        "app.localhost".into(),
        format!("127.0.0.1:{port}"),
        "10.1.2.3".into(),
        "[::1]".into(),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(
            status_with(addr, "/debug/leaks", &format!("Host: {host}\r\n")),
            Some(200),
            "{host}"
        );
    }
    // HTTP/1.0 without a Host header: not a browser, served.
    let resp = raw(addr, b"GET /debug/leaks HTTP/1.0\r\n\r\n", T);
    assert!(
        resp.starts_with(b"HTTP/1.0 200 "),
        "{}",
        String::from_utf8_lossy(&resp[..resp.len().min(200)])
    );
    app.assert_alive();
}

#[test]
fn any_host_is_served_when_remote_access_is_configured() {
    let (_s, addr) = server(quick().allow_remote(true));
    assert_eq!(
        status_with(addr, "/debug/leaks", "Host: debug.internal:6060\r\n"),
        Some(200)
    );
}

#[test]
fn the_bearer_scheme_matches_case_insensitively() {
    let (_s, addr) = server(quick().bearer_token("s3cret"));
    for auth in [
        "Bearer s3cret",
        "bearer s3cret",
        "BEARER s3cret",
        "bEaReR   s3cret",
    ] {
        assert_eq!(
            status_with(
                addr,
                "/debug/leaks",
                &format!("Host: localhost\r\nAuthorization: {auth}\r\n")
            ),
            Some(200),
            "{auth}"
        );
    }
    for auth in [
        "Bearer S3CRET",
        "Basic s3cret",
        "Bearers3cret",
        "s3cret",
        "",
    ] {
        assert_eq!(
            status_with(
                addr,
                "/debug/leaks",
                &format!("Host: localhost\r\nAuthorization: {auth}\r\n")
            ),
            Some(401),
            "{auth}"
        );
    }
}

#[test]
fn huge_timeouts_mean_no_timeout_not_a_panic() {
    let app = App::start();
    let (_s, addr) = server(
        ServerBuilder::new()
            .request_timeout(Duration::MAX)
            .header_timeout(Duration::MAX),
    );
    for _ in 0..3 {
        assert_eq!(
            status_with(addr, "/debug/leaks", "Host: localhost\r\n"),
            Some(200)
        );
    }
    app.assert_alive();
}

#[test]
fn serve_inside_a_tokio_runtime_returns_its_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("addr");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let e = leakscope::server::serve(busy).expect_err("the port is taken");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
        // And a good start and a shutdown from inside the runtime work too.
        let s = leakscope::server::serve("127.0.0.1:0").expect("serve");
        s.shutdown();
    });
    drop(taken);
}
