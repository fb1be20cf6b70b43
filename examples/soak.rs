//! A soak of leakscope inside a busy process, for `scripts/soak.sh` (not a
//! CI test): for the given time it keeps up, at once,
//!
//! - threads created and ended (each allocates, tracks objects, exits);
//! - forks and double forks from the main thread: the child samples,
//!   snapshots and exits; every other child first forks a grandchild that
//!   does the same. A child (or grandchild) still running after 10 s is
//!   killed and counted as a failure (`hung`), never waited on for ever;
//! - a signal storm: `SIGUSR1` sent to the allocating threads every
//!   millisecond, with a handler that allocates and frees;
//! - snapshots in a loop (plain, and windowed by age and by mark), marks,
//!   memory readings, and scrapes of the debug server (`/metrics`,
//!   `/debug/pprof/heap`, `/debug/memory`, windowed leak reports) over
//!   plain `TcpStream` GETs;
//! - blocks grown by `realloc` (the sampled path's resized samples);
//! - a dumper checking every 50 ms (heap growth and suspected-leak rules)
//!   into a temporary directory, under its rate limit and caps.
//!
//! Then it stops everything, joins, and prints what it did and the final
//! reconciliation: live bytes against the baseline, live tracked objects,
//! metadata, dropped samples and RSS. It exits non-zero on a failed child,
//! a failed scrape, or a reconciliation out of bounds.
//!
//! ```text
//! cargo run --release --example soak -- SECONDS [SAMPLE_RATE]
//! ```
//!
//! `SOAK_SIGNALS=0` leaves the signal storm out (to tell its effect on the
//! reconciliation from the rest's; see scripts/soak.sh).
//!
//! About the signal handler: it allocates through the global allocator,
//! i.e. leakscope over malloc. glibc's malloc is not re-entrant: a handler
//! that mallocs while its thread is inside malloc deadlocks on the arena
//! lock, leakscope or not (a first version of this soak did, in glibc). So
//! leakscope here wraps `System` in `MarkedSystem`, which marks the
//! thread while it is inside malloc, and the handler allocates only when
//! its thread is not inside malloc (else it counts a skip). It still
//! interrupts leakscope's own path anywhere outside malloc: with its guard
//! held, its table lock held, its unwinder mid-walk, its counters
//! mid-fold, which is what the storm is for.
//!
//! A watchdog ends the process (exit 2, counters printed) if the soak is
//! still running two minutes after its time is up.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Inside glibc's malloc (see the module docs).
    static IN_MALLOC: Cell<bool> = const { Cell::new(false) };
}

/// `System`, marking the thread while it is inside malloc.
struct MarkedSystem;

/// Marks the thread for its lifetime; restores the previous mark.
struct Mark(bool);

// The fences: the signal handler reads the mark on this thread, and the
// compiler knows malloc reads no user memory, so without them it may drop
// the store of `true` (overwritten by the restore after the call).
impl Mark {
    fn enter() -> Mark {
        let old = IN_MALLOC.try_with(|m| m.replace(true)).unwrap_or(true);
        compiler_fence(Ordering::SeqCst);
        Mark(old)
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        let _ = IN_MALLOC.try_with(|m| m.set(self.0));
    }
}

// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for MarkedSystem {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _m = Mark::enter();
        // SAFETY: forwarded with the caller's contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let _m = Mark::enter();
        // SAFETY: forwarded with the caller's contract.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let _m = Mark::enter();
        // SAFETY: forwarded with the caller's contract.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _m = Mark::enter();
        // SAFETY: forwarded with the caller's contract.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator<MarkedSystem> =
    leakscope::TrackingAllocator::new(MarkedSystem);

static STOP: AtomicBool = AtomicBool::new(false);
static THREADS: AtomicU64 = AtomicU64::new(0);
static SIGNALS_SENT: AtomicU64 = AtomicU64::new(0);
static SIGNALS_HANDLED: AtomicU64 = AtomicU64::new(0);
static SNAPSHOTS: AtomicU64 = AtomicU64::new(0);
static SCRAPES: AtomicU64 = AtomicU64::new(0);
static SCRAPE_FAILURES: AtomicU64 = AtomicU64::new(0);
static ROUNDS: AtomicU64 = AtomicU64::new(0);

/// A tracked request-like object, created and dropped by the churn.
#[derive(Debug)]
struct Request {
    _body: Vec<u8>,
}

static SIGNALS_SKIPPED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigusr1(_: libc::c_int) {
    if IN_MALLOC.try_with(|m| m.get()).unwrap_or(true) {
        // Interrupted inside glibc's malloc: allocating would deadlock
        // there (see the module docs).
        SIGNALS_SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // Allocates and frees inside the handler: a box, and a vector that
    // grows (realloc).
    let b = Box::new([0u64; 4]);
    let mut v: Vec<u32> = Vec::with_capacity(2);
    v.extend_from_slice(&[1, 2, 3]);
    black_box((&b, &v));
    SIGNALS_HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// Allocations of mixed sizes and lifetimes, tracked objects among them.
fn churn(round: u64, keep: &mut Vec<Vec<u8>>) {
    for i in 0..32u64 {
        let size = 8 + ((round * 131 + i * 17) % 4096) as usize;
        let v = vec![i as u8; size];
        if i % 8 == 0 {
            keep.push(v);
        } else {
            black_box(v);
        }
    }
    let r = leakscope::track!(Request {
        _body: vec![0; 256]
    });
    let s = format!("{round}{:?}", black_box(&r));
    black_box(s);
    // A buffer grown by realloc: sampled blocks carry their growth count.
    let mut grown: Vec<u8> = Vec::with_capacity(16);
    for k in 0..(64 + round % 512) {
        grown.push(k as u8);
    }
    if round.is_multiple_of(16) {
        keep.push(grown);
    } else {
        black_box(grown);
    }
    if keep.len() > 256 {
        keep.drain(..128);
    }
    ROUNDS.fetch_add(1, Ordering::Relaxed);
}

/// A long-lived allocating thread (a signal target); returns its pthread.
fn worker(id: u64) -> (std::thread::JoinHandle<()>, libc::pthread_t) {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::Builder::new()
        .name(format!("soak-worker-{id}"))
        .spawn(move || {
            // SAFETY: `pthread_self` has no preconditions.
            tx.send(unsafe { libc::pthread_self() }).unwrap();
            let mut keep = Vec::new();
            let mut round = id << 32;
            while !STOP.load(Ordering::Relaxed) {
                churn(round, &mut keep);
                round += 1;
            }
        })
        .unwrap();
    let t = rx.recv().unwrap();
    (h, t)
}

/// Creates and ends short-lived threads, a few at a time.
fn thread_churn() {
    let mut round = 0u64;
    while !STOP.load(Ordering::Relaxed) {
        let hs: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut keep = Vec::new();
                    for r in 0..20 {
                        churn((round << 8) + (t << 5) + r, &mut keep);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        THREADS.fetch_add(4, Ordering::Relaxed);
        round += 1;
    }
}

fn snapshots() {
    let mut i = 0u64;
    while !STOP.load(Ordering::Relaxed) {
        let s = match i % 4 {
            0 => leakscope::snapshot(),
            1 => leakscope::snapshot_with(
                &leakscope::SnapshotOptions::new().max_age(Duration::from_millis(500)),
            ),
            2 => match leakscope::SnapshotOptions::new().since_mark("soak-phase") {
                Ok(o) => leakscope::snapshot_with(&o),
                Err(_) => leakscope::snapshot(),
            },
            _ => {
                black_box(leakscope::memory());
                leakscope::mark("soak-phase").expect("a valid mark name");
                leakscope::snapshot()
            }
        };
        i += 1;
        black_box(s.heap.sites.len());
        SNAPSHOTS.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plain HTTP/1.1 GET; the status and the body's length.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, usize)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no response head"))?;
    let status = std::str::from_utf8(&buf[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, buf.len() - head_end - 4))
}

fn scrapes(addr: SocketAddr) {
    let mut i = 0u64;
    while !STOP.load(Ordering::Relaxed) {
        let path = match i % 6 {
            0 | 2 | 4 => "/metrics",
            1 => "/debug/pprof/heap",
            3 => "/debug/memory",
            _ => "/debug/leaks?since=soak-start&max_age=1h",
        };
        match get(addr, path) {
            Ok((200, n)) if n > 0 => {
                SCRAPES.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                SCRAPE_FAILURES.fetch_add(1, Ordering::Relaxed);
                eprintln!("soak: scrape {path}: {other:?}");
            }
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a forked child (or grandchild) does: sample, snapshot, exit.
/// Exit status 0: fine; 3: nothing sampled; 4: its grandchild failed.
fn in_child(depth: u32, round: u64) -> ! {
    let mut keep = Vec::new();
    for r in 0..50 {
        churn(round + r, &mut keep);
    }
    black_box(leakscope::snapshot());
    black_box(leakscope::memory());
    black_box(leakscope::marks::marks());
    let mut code = if leakscope::heap_stats().samples > 0 {
        0
    } else {
        3
    };
    if depth == 0 && round.is_multiple_of(2) {
        match fork_and_wait(depth + 1, round) {
            ForkResult::Ok => {}
            _ => code = 4,
        }
    }
    // SAFETY: ends the child without running the parent's destructors or
    // atexit handlers.
    unsafe { libc::_exit(code) }
}

#[derive(Debug, PartialEq)]
enum ForkResult {
    Ok,
    Failed(i32),
    Hung,
}

/// Forks a child running `in_child` and waits at most 10 s for it; a
/// child still running then is killed and reported as hung.
fn fork_and_wait(depth: u32, round: u64) -> ForkResult {
    // SAFETY: the child only allocates, snapshots, forks and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        in_child(depth, round);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` a valid local.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                ForkResult::Ok
            } else {
                ForkResult::Failed(status)
            };
        }
        if Instant::now() >= deadline {
            // SAFETY: `pid` is our child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return ForkResult::Hung;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().map_or(60, |s| s.parse().expect("SECONDS"));
    let rate: usize = args
        .next()
        .map_or(4096, |s| s.parse().expect("SAMPLE_RATE"));
    leakscope::set_sample_rate(rate);

    // SAFETY: installs a plain handler (no SA_SIGINFO) for SIGUSR1;
    // `on_sigusr1` has the signature `sa_sigaction` expects then.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }

    let server = leakscope::server::serve("127.0.0.1:0").expect("debug server");
    let addr = server.local_addr();
    // Warm up once (stdout's buffer, the tracked site's registration,
    // symbol caches, the server's first render), then read the baseline.
    println!("soak: starting");
    leakscope::mark("soak-start").expect("a valid mark name");
    churn(0, &mut Vec::new());
    get(addr, "/metrics").expect("first scrape");
    get(addr, "/debug/pprof/heap").expect("first scrape");
    black_box(leakscope::snapshot());
    let base = leakscope::heap_stats();
    let rss0 = rss_kib();
    println!(
        "soak: {secs} s, sample rate {rate}, server on {addr}; baseline: live {} bytes, metadata {} bytes, RSS {rss0} KiB",
        base.live_bytes, base.metadata_bytes
    );

    // A dumper polling fast under its limits: its thread, its files and
    // its reads of the heap run beside everything else.
    let dump_dir = std::env::temp_dir().join(format!("leakscope-soak-{}", std::process::id()));
    let dumper = leakscope::dumps::Dumper::builder(&dump_dir)
        .heap_growth(1 << 20, Duration::from_secs(5))
        .on_suspected_leak()
        .poll_interval(Duration::from_millis(50))
        .min_gap(Duration::from_secs(1))
        .max_per_hour(3600)
        .max_files(16)
        .max_bytes(64 << 20)
        .start()
        .expect("dumper");

    let started = Instant::now();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs + 120));
        println!(
            "soak: FAIL: still running {} s after its time: {} threads, {} signals, {} snapshots, {} scrapes (hang)",
            120,
            THREADS.load(Ordering::Relaxed),
            SIGNALS_HANDLED.load(Ordering::Relaxed),
            SNAPSHOTS.load(Ordering::Relaxed),
            SCRAPES.load(Ordering::Relaxed)
        );
        // SAFETY: ends the process at once.
        unsafe { libc::_exit(2) }
    });
    let workers: Vec<_> = (0..2).map(worker).collect();
    let targets: Vec<libc::pthread_t> = workers.iter().map(|w| w.1).collect();
    let mut helpers = vec![
        std::thread::spawn(thread_churn),
        std::thread::spawn(snapshots),
        std::thread::spawn(move || scrapes(addr)),
    ];
    // SOAK_SIGNALS=0: no signal storm (to tell its effects from the rest).
    let storm = std::env::var("SOAK_SIGNALS").map_or(true, |v| v != "0");
    helpers.push(std::thread::spawn(move || {
        let mut i = 0usize;
        while storm && !STOP.load(Ordering::Relaxed) {
            // SAFETY: the workers are alive until STOP is set and they are
            // joined, which happens after this thread is joined.
            unsafe { libc::pthread_kill(targets[i % targets.len()], libc::SIGUSR1) };
            SIGNALS_SENT.fetch_add(1, Ordering::Relaxed);
            i += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
    }));

    // Forks from the main thread, one every 200 ms.
    let (mut forks, mut double, mut failed, mut hung) = (0u64, 0u64, 0u64, 0u64);
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut last_report = Instant::now();
    let mut round = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        let r = fork_and_wait(0, round);
        forks += 1;
        if round.is_multiple_of(2) {
            double += 1;
        }
        match r {
            ForkResult::Ok => {}
            ForkResult::Hung => {
                hung += 1;
                failures
                    .lock()
                    .unwrap()
                    .push(format!("round {round}: child hung, killed after 10 s"));
                println!("soak: fork round {round}: child HUNG (killed after 10 s)");
            }
            ForkResult::Failed(status) => {
                failed += 1;
                failures
                    .lock()
                    .unwrap()
                    .push(format!("round {round}: child status {status:#x}"));
                println!("soak: fork round {round}: child failed, wait status {status:#x}");
            }
        }
        round += 1;
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            let s = leakscope::heap_stats();
            println!(
                "soak: {:>4} s: {} threads, {} forks ({} failed, {} hung), {} signals, {} snapshots, {} scrapes, live {} bytes, metadata {} bytes, RSS {} KiB",
                started.elapsed().as_secs(),
                THREADS.load(Ordering::Relaxed),
                forks,
                failed,
                hung,
                SIGNALS_HANDLED.load(Ordering::Relaxed),
                SNAPSHOTS.load(Ordering::Relaxed),
                SCRAPES.load(Ordering::Relaxed),
                s.live_bytes,
                s.metadata_bytes,
                rss_kib()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    STOP.store(true, Ordering::Relaxed);
    for h in helpers {
        h.join().unwrap();
    }
    for (h, _) in workers {
        h.join().unwrap();
    }
    let dumps = dumper.stats();
    drop(dumper);
    let _ = std::fs::remove_dir_all(&dump_dir);
    let elapsed = started.elapsed();
    // Read before the server is dropped: its handle is the application's
    // (allocated before the baseline), its threads' memory leakscope's.
    let s = leakscope::heap_stats();
    let snap = leakscope::snapshot();
    drop(server);
    let tracked_live: u64 = snap
        .objects
        .iter()
        .filter(|o| o.type_name.contains("Request"))
        .map(|o| o.live)
        .sum();
    let tracked_created: u64 = snap
        .objects
        .iter()
        .filter(|o| o.type_name.contains("Request"))
        .map(|o| o.created)
        .sum();
    let delta = s.live_bytes as i64 - base.live_bytes as i64;
    println!("soak: ran {:.0?}", elapsed);
    println!(
        "soak: did: {} threads created and ended, {} forks ({} double forks), {} failed, {} hung; {} signals sent, {} handled ({} of them inside malloc, skipped); {} snapshots; {} scrapes ({} failed); {} churn rounds",
        THREADS.load(Ordering::Relaxed),
        forks,
        double,
        failed,
        hung,
        SIGNALS_SENT.load(Ordering::Relaxed),
        SIGNALS_HANDLED.load(Ordering::Relaxed) + SIGNALS_SKIPPED.load(Ordering::Relaxed),
        SIGNALS_SKIPPED.load(Ordering::Relaxed),
        SNAPSHOTS.load(Ordering::Relaxed),
        SCRAPES.load(Ordering::Relaxed),
        SCRAPE_FAILURES.load(Ordering::Relaxed),
        ROUNDS.load(Ordering::Relaxed),
    );
    println!(
        "soak: reconciliation: live bytes {} (baseline {}, {:+}), live allocations {} (baseline {}), tracked Request objects {} created, {} live (expected 0)",
        s.live_bytes, base.live_bytes, delta, s.live_allocations, base.live_allocations, tracked_created, tracked_live
    );
    println!(
        "soak: reconciliation: samples {}, live samples {}, dropped samples {}, system unwinds {}, metadata {} bytes (baseline {}), peak live {} bytes, RSS {} KiB (baseline {rss0})",
        s.samples, s.live_samples, s.dropped_samples, s.system_unwinds, s.metadata_bytes, base.metadata_bytes, s.peak_live_bytes, rss_kib()
    );
    println!(
        "soak: dumps: {} checks, {} written, {} failed, {} held back, {} files removed by the caps",
        dumps.checks, dumps.written, dumps.failed, dumps.suppressed, dumps.removed_files
    );
    let mut bad = Vec::new();
    if dumps.failed > 0 || dumps.checks == 0 {
        bad.push(format!("dumper: {dumps:?}"));
    }
    // Everything the soak made is freed; what may remain is what the
    // runtime keeps for the process (thread-local caches, the snapshot
    // just taken is not counted yet: taken after `s`).
    if delta > (1 << 20) {
        bad.push(format!(
            "live bytes {delta:+} over the baseline (1 MiB allowed)"
        ));
    }
    if s.live_bytes >= 1 << 40 || s.metadata_bytes >= 1 << 40 {
        bad.push("a counter went negative".to_string());
    }
    if s.live_allocations != s.allocations - s.frees
        || s.live_bytes != s.allocated_bytes - s.freed_bytes
    {
        bad.push(format!("inconsistent totals: {s:?}"));
    }
    if tracked_live != 0 {
        bad.push(format!("{tracked_live} tracked objects still live"));
    }
    if failed + hung > 0 {
        bad.push(format!(
            "{} forked children failed or hung: {:?}",
            failed + hung,
            failures.lock().unwrap()
        ));
    }
    if SCRAPE_FAILURES.load(Ordering::Relaxed) > 0 {
        bad.push("scrapes failed".to_string());
    }
    if bad.is_empty() {
        println!("soak: OK");
    } else {
        for b in &bad {
            println!("soak: FAIL: {b}");
        }
        std::process::exit(1);
    }
}
