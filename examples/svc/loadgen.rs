//! The load generator of the service-level benchmark (issue 16), for the
//! `svc_*` example services (`POST /work`).
//!
//! ```text
//! svc_loadgen --target 127.0.0.1:PORT --rate 2000 --secs 20 [--warmup 3]
//!             [--conns 32] [--pid SERVER_PID] [--debug 127.0.0.1:PORT]
//!             [--label NAME] [--json FILE] [--spin]
//! svc_loadgen --target 127.0.0.1:PORT --max [--secs 3] [--conns 16]
//! ```
//!
//! **Open loop.** Request `i` is due at `start + i / rate`, whatever the
//! server did before: a dispatcher hands it to an idle keep-alive connection
//! (of `--conns`) at that time, and its latency is measured from that
//! *scheduled* time to the end of the response, so a stall of the server
//! counts for every request that was due during it (no coordinated
//! omission). If every connection is busy the request waits, and that wait
//! is part of its latency. The due times come from a timer thread sleeping
//! with a 1-ns timer slack (on time to tens of microseconds on an idle CPU,
//! and cheap, so the scheduler of a busy machine treats the generator as a
//! sleeper that runs when woken). `--spin` instead has the dispatcher spin
//! (yielding to the runtime) for the last 2 ms before each due time: on
//! time to a few microseconds when the generator has a CPU of its own, but
//! on a busy machine the scheduler then treats it as a CPU hog and it runs
//! late by tens of milliseconds.
//!
//! The first `--warmup` seconds are sent but not measured. Over the
//! `--secs` measured seconds it reports latency percentiles, the achieved
//! rate, errors, and how many of the 100-ms windows (by scheduled time)
//! held a request slower than 10 ms, and how late the dispatcher itself was
//! at its due times (its timer and its CPU): when that is more than a
//! fraction of a millisecond, the generator, not the server, shaped the
//! latencies. With `--pid`, the server's CPU time
//! (`utime + stime` of `/proc/PID/stat`, all threads) over the measured
//! part divided by the requests completed in it, and its peak RSS
//! (`VmHWM`). With `--debug`, scrapes leakscope's debug server as a canary
//! is scraped: `GET /metrics` every second and `GET /debug/pprof/heap`
//! every ten, from the start of the measured part, each timed from connect
//! to the last byte.
//!
//! `--max` instead runs closed-loop (each connection sends as soon as its
//! last answer arrived) for `--secs` seconds and prints `max_rate=N`, the
//! completed requests per second after the first second, with the CPU
//! shares of the server (`--pid`) and of the generator over that part.
//!
//! The request bodies are 1–2 KiB JSON orders; half of the keys come from a
//! hot set of 2,000 and half from 50,000, so the service's 4,096-entry cache
//! both hits and evicts.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A stall: a request slower than this marks its 100-ms window.
const STALL: Duration = Duration::from_millis(10);
const WINDOW: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Args {
    target: SocketAddr,
    rate: f64,
    max: bool,
    secs: f64,
    warmup: f64,
    conns: usize,
    pid: Option<u32>,
    debug: Option<SocketAddr>,
    label: String,
    json: Option<String>,
    spin: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("svc_loadgen: {msg}");
    eprintln!(
        "usage: svc_loadgen --target HOST:PORT (--rate N | --max) [--secs S] [--warmup S] \
         [--conns N] [--pid PID] [--debug HOST:PORT] [--label NAME] [--json FILE] [--spin]"
    );
    std::process::exit(2);
}

fn resolve(s: &str) -> SocketAddr {
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| usage(&format!("cannot resolve {s:?}")))
}

fn parse_args() -> Args {
    let mut a = Args {
        target: SocketAddr::from(([127, 0, 0, 1], 0)),
        rate: 0.0,
        max: false,
        secs: 20.0,
        warmup: 3.0,
        conns: 32,
        pid: None,
        debug: None,
        label: String::from("run"),
        json: None,
        spin: false,
    };
    let mut target = None;
    let mut conns = None;
    let mut secs = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .unwrap_or_else(|| usage(&format!("{name} takes a value")))
        };
        fn num(name: &str, v: &str) -> f64 {
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x >= 0.0 => x,
                _ => usage(&format!("{name} takes a non-negative number, not {v:?}")),
            }
        }
        match flag.as_str() {
            "--target" => target = Some(resolve(&val("--target"))),
            "--rate" => a.rate = num("--rate", &val("--rate")),
            "--max" => a.max = true,
            "--secs" => secs = Some(num("--secs", &val("--secs"))),
            "--warmup" => a.warmup = num("--warmup", &val("--warmup")),
            "--conns" => conns = Some(num("--conns", &val("--conns")).max(1.0) as usize),
            "--pid" => a.pid = Some(num("--pid", &val("--pid")) as u32),
            "--debug" => a.debug = Some(resolve(&val("--debug"))),
            "--label" => a.label = val("--label"),
            "--json" => a.json = Some(val("--json")),
            "--spin" => a.spin = true,
            _ => usage(&format!("unknown argument {flag:?}")),
        }
    }
    a.target = target.unwrap_or_else(|| usage("--target is required"));
    if !a.max && a.rate <= 0.0 {
        usage("give --rate N (requests per second) or --max");
    }
    a.secs = secs.unwrap_or(if a.max { 3.0 } else { 20.0 });
    a.conns = conns.unwrap_or(if a.max { 16 } else { 32 });
    a
}

/// xorshift64*: deterministic request contents without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const REGIONS: [&str; 4] = ["eu-west-1", "us-east-2", "ap-south-1", "sa-east-1"];
const WORDS: [&str; 8] = [
    "express",
    "gift",
    "fragile",
    "bulk",
    "return",
    "priority",
    "backorder",
    "sample",
];

/// A ready `POST /work` request (head and a 1–2 KiB JSON body) whose
/// request id (20 bytes, right-aligned after blanks, which JSON allows) and
/// key digits (5 bytes) are patched in per request, so the generator does
/// not spend its CPU formatting JSON.
struct Template {
    bytes: Vec<u8>,
    id_at: usize,
    key_at: usize,
}

/// How many distinct templates the connections draw from.
const TEMPLATES: usize = 512;

fn template(rng: &mut Rng) -> Template {
    use std::fmt::Write as _;
    let mut body = String::new();
    let _ = write!(
        body,
        r#"{{"request_id":{:>20},"user":"user-{:05}","key":"k-{:05}","region":"{}","items":["#,
        0,
        rng.below(100_000),
        0,
        REGIONS[rng.below(4) as usize],
    );
    let items = 9 + rng.below(7);
    for i in 0..items {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"sku":"SKU-{:06}","qty":{},"price_cents":{},"note":"{} {} item, handle per policy {:04}"}}"#,
            rng.below(1_000_000),
            1 + rng.below(9),
            99 + rng.below(20_000),
            WORDS[rng.below(8) as usize],
            WORDS[rng.below(8) as usize],
            rng.below(10_000),
        );
    }
    body.push_str(r#"],"tags":["#);
    for i in 0..4 {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#""{}-{}""#,
            WORDS[rng.below(8) as usize],
            rng.below(100)
        );
    }
    body.push_str("]}");
    let head = format!(
        "POST /work HTTP/1.1\r\nhost: svc\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let id_at = head.len() + body.find(r#""request_id":"#).expect("written above") + 13;
    let key_at = head.len() + body.find(r#""key":"k-"#).expect("written above") + 9;
    Template {
        bytes: [head.as_bytes(), body.as_bytes()].concat(),
        id_at,
        key_at,
    }
}

/// Writes `v` right-aligned into `field`, filling the rest with `pad`.
fn put_num(field: &mut [u8], mut v: u64, pad: u8) {
    for (i, b) in field.iter_mut().rev().enumerate() {
        *b = if v > 0 || i == 0 {
            b'0' + (v % 10) as u8
        } else {
            pad
        };
        v /= 10;
    }
}

/// Writes request `seq` to `out`: a template with its id and a key patched
/// in. Half of the keys come from a hot set of 2,000, half from 50,000.
fn build_request(rng: &mut Rng, templates: &[Template], seq: u64, out: &mut Vec<u8>) {
    let t = &templates[rng.below(templates.len() as u64) as usize];
    let key = if rng.below(2) == 0 {
        rng.below(2_000)
    } else {
        rng.below(50_000)
    };
    out.clear();
    out.extend_from_slice(&t.bytes);
    put_num(&mut out[t.id_at..t.id_at + 20], seq, b' ');
    put_num(&mut out[t.key_at..t.key_at + 5], key, b'0');
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1.1 response with a `content-length` body from `stream`
/// (`buf` keeps what was read past it). Returns the status and whether the
/// server will close the connection.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, bool)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head is not UTF-8"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut len = None;
    let mut close = false;
    for line in head.split("\r\n").skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close")
            {
                close = true;
            }
        }
    }
    let len = len.ok_or_else(|| bad("no content-length"))?;
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..head_end + len);
    Ok((status, close))
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// One request on `conn` (connecting first if it has none).
async fn exchange(
    conn: &mut Option<TcpStream>,
    addr: SocketAddr,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<u16> {
    if conn.is_none() {
        buf.clear();
        *conn = Some(connect(addr).await?);
    }
    let s = conn.as_mut().expect("connected above");
    s.write_all(req).await?;
    let (status, close) = read_response(s, buf).await?;
    if close {
        *conn = None;
    }
    Ok(status)
}

#[derive(Debug, Clone, Copy)]
struct Job {
    seq: u64,
    due: Instant,
}

#[derive(Debug)]
struct Done {
    conn: usize,
    job: Job,
    end: Instant,
    ok: bool,
}

/// A keep-alive connection: takes jobs, answers with a [`Done`] each.
async fn conn_task(
    id: usize,
    addr: SocketAddr,
    templates: Rc<[Template]>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    done: mpsc::UnboundedSender<Done>,
) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((id as u64 + 1) << 17));
    let (mut req, mut buf) = (Vec::new(), Vec::new());
    let mut conn = connect(addr).await.ok();
    while let Some(job) = jobs.recv().await {
        build_request(&mut rng, &templates, job.seq, &mut req);
        let ok = match exchange(&mut conn, addr, &req, &mut buf).await {
            Ok(status) => status == 200,
            Err(_) => {
                conn = None;
                false
            }
        };
        let d = Done {
            conn: id,
            job,
            end: Instant::now(),
            ok,
        };
        if done.send(d).is_err() {
            break;
        }
    }
}

/// Sends `i` at `start + i * period` for every `i < n`, from its own
/// thread, sleeping in between with the finest timer slack.
fn ticker(start: Instant, period: f64, n: u64, tx: mpsc::UnboundedSender<u64>) {
    // SAFETY: PR_SET_TIMERSLACK takes a number and only changes the timer
    // slack of the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 * period);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if tx.send(i).is_err() {
            return;
        }
    }
}

/// Waits until `t` by spinning: a timer sleep while more than 2 ms are
/// left, then yields to the runtime (which polls the sockets) until `t`.
async fn spin_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > Duration::from_millis(2) {
            tokio::time::sleep(left - Duration::from_millis(2)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// What the measured part recorded.
#[derive(Debug, Default)]
struct Record {
    /// Latencies of the measured successful requests, in nanoseconds.
    lat_ns: Vec<u64>,
    /// Slowest latency (any outcome) per 100-ms window of due times.
    window_max: Vec<Duration>,
    errors: u64,
    /// How late the dispatcher itself was at each measured due time (its
    /// timer and its CPU, before waiting for a free connection), in ns.
    late_ns: Vec<u64>,
    /// Completions of any request between the two CPU readings.
    completed_in_cpu_span: u64,
    last_end: Option<Instant>,
}

struct Pool {
    jobs: Vec<mpsc::UnboundedSender<Job>>,
    done: mpsc::UnboundedReceiver<Done>,
    idle: Vec<usize>,
    outstanding: usize,
}

impl Pool {
    fn new(addr: SocketAddr, n: usize) -> Pool {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let templates: Rc<[Template]> = (0..TEMPLATES).map(|_| template(&mut rng)).collect();
        let (done_tx, done) = mpsc::unbounded_channel();
        let mut jobs = Vec::with_capacity(n);
        for id in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            let t = Rc::clone(&templates);
            tokio::task::spawn_local(conn_task(id, addr, t, rx, done_tx.clone()));
            jobs.push(tx);
        }
        Pool {
            jobs,
            done,
            idle: (0..n).rev().collect(),
            outstanding: 0,
        }
    }

    fn send(&mut self, conn: usize, job: Job) {
        self.outstanding += 1;
        let _ = self.jobs[conn].send(job);
    }

    fn finish(&mut self, d: &Done) {
        self.outstanding -= 1;
        self.idle.push(d.conn);
    }
}

/// CPU time (`utime + stime`, all threads) of `pid`, in seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some((utime + stime) as f64 / hz)
}

/// Peak resident set size (`VmHWM`) of `pid`, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[derive(Debug)]
struct Scrape {
    /// Seconds from the start of the measured part.
    at: f64,
    ms: f64,
    status: u16,
    bytes: usize,
}

/// One `GET path` on a fresh connection (leakscope's debug server answers
/// one request per connection), read to the end.
fn fetch(addr: SocketAddr, path: &str) -> (u16, usize) {
    let attempt = || -> std::io::Result<(u16, usize)> {
        let mut s = StdTcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: debug\r\nconnection: close\r\n\r\n"
        )?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let head_end = find(&resp, b"\r\n\r\n").map_or(resp.len(), |p| p + 4);
        let status = std::str::from_utf8(&resp[..head_end.min(resp.len())])
            .ok()
            .and_then(|h| h.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, resp.len() - head_end))
    };
    attempt().unwrap_or((0, 0))
}

/// Scrapes `path` every `period` from `t0` until `end` (a scrape that
/// overruns its period delays the next one, none is skipped).
fn scraper(
    addr: SocketAddr,
    path: &'static str,
    period: Duration,
    t0: Instant,
    end: Instant,
) -> Vec<Scrape> {
    let mut out = Vec::new();
    let mut next = t0;
    while next < end {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let start = Instant::now();
        let (status, bytes) = fetch(addr, path);
        out.push(Scrape {
            at: start.duration_since(t0).as_secs_f64(),
            ms: start.elapsed().as_secs_f64() * 1e3,
            status,
            bytes,
        });
        next += period;
    }
    out
}

/// The `p` quantile of sorted nanoseconds, in microseconds.
fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1e3
}

fn scrape_summary(s: &[Scrape]) -> serde_json::Value {
    let mut ms: Vec<f64> = s.iter().map(|x| x.ms).collect();
    ms.sort_by(f64::total_cmp);
    json!({
        "count": s.len(),
        "failed": s.iter().filter(|x| x.status != 200).count(),
        "first_ms": s.first().map(|x| x.ms),
        "median_ms": ms.get(ms.len() / 2),
        "max_ms": ms.last(),
        "bytes": s.last().map(|x| x.bytes),
        "each_ms": s.iter().map(|x| (x.ms * 100.0).round() / 100.0).collect::<Vec<_>>(),
        "at_s": s.iter().map(|x| (x.at * 100.0).round() / 100.0).collect::<Vec<_>>(),
    })
}

async fn run_max(a: &Args) {
    let mut pool = Pool::new(a.target, a.conns);
    let start = Instant::now();
    let from = start + Duration::from_secs(1).min(Duration::from_secs_f64(a.secs / 2.0));
    let end = start + Duration::from_secs_f64(a.secs);
    let (mut counted, mut errors, mut seq) = (0u64, 0u64, 0u64);
    let mut cpu_from = None;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= from && cpu_from.is_none() {
            cpu_from = Some((a.pid.and_then(cpu_secs), cpu_secs(std::process::id())));
        }
        if let Some(c) = pool.idle.pop() {
            pool.send(c, Job { seq, due: now });
            seq += 1;
            continue;
        }
        let Some(d) = pool.done.recv().await else {
            break;
        };
        pool.finish(&d);
        if d.end >= from && d.end < end {
            if d.ok {
                counted += 1;
            } else {
                errors += 1;
            }
        }
    }
    let secs = end.duration_since(from).as_secs_f64();
    let rate = counted as f64 / secs;
    // CPU shares over the counted part: a generator near 100% means the
    // maximum is the generator's, not the server's.
    let share = |start: Option<f64>, pid: Option<u32>| match (start, pid.and_then(cpu_secs)) {
        (Some(s), Some(e)) => format!("{:.0}", (e - s) * 100.0 / secs),
        _ => "?".to_string(),
    };
    let (srv0, gen0) = cpu_from.unwrap_or((None, None));
    println!(
        "max_rate={rate:.0} errors={errors} conns={} server_cpu_pct={} generator_cpu_pct={}",
        a.conns,
        share(srv0, a.pid),
        share(gen0, Some(std::process::id()))
    );
}

async fn run_rate(a: &Args) {
    let mut pool = Pool::new(a.target, a.conns);
    // Let the connections connect before the timetable starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let period = 1.0 / a.rate;
    let warm_n = (a.warmup * a.rate).round() as u64;
    let meas_n = (a.secs * a.rate).round() as u64;
    let start = Instant::now() + Duration::from_millis(10);
    let t0 = start + Duration::from_secs_f64(warm_n as f64 * period);
    let t_end = start + Duration::from_secs_f64((warm_n + meas_n) as f64 * period);
    let n_windows = (a.secs * 10.0).ceil() as usize;

    let scrapers = a.debug.map(|d| {
        let m =
            std::thread::spawn(move || scraper(d, "/metrics", Duration::from_secs(1), t0, t_end));
        let h = std::thread::spawn(move || {
            scraper(d, "/debug/pprof/heap", Duration::from_secs(10), t0, t_end)
        });
        (m, h)
    });

    let mut rec = Record {
        window_max: vec![Duration::ZERO; n_windows],
        ..Record::default()
    };
    let mut cpu_start = None;
    let mut gen_cpu_start = None;
    let mut counting = false;
    let handle = |d: Done, pool: &mut Pool, rec: &mut Record, counting: bool| {
        pool.finish(&d);
        if counting {
            rec.completed_in_cpu_span += 1;
        }
        if d.job.due < t0 {
            return;
        }
        let lat = d.end.saturating_duration_since(d.job.due);
        let w = (d.job.due.duration_since(t0).as_nanos() / WINDOW.as_nanos()) as usize;
        if let Some(m) = rec.window_max.get_mut(w) {
            *m = (*m).max(lat);
        }
        rec.last_end = Some(rec.last_end.map_or(d.end, |e| e.max(d.end)));
        if d.ok {
            rec.lat_ns.push(lat.as_nanos() as u64);
        } else {
            rec.errors += 1;
        }
    };

    let mut ticks = if a.spin {
        None
    } else {
        let (tx, rx) = mpsc::unbounded_channel();
        let n = warm_n + meas_n;
        std::thread::spawn(move || ticker(start, period, n, tx));
        Some(rx)
    };
    for i in 0..warm_n + meas_n {
        let due = start + Duration::from_secs_f64(i as f64 * period);
        match &mut ticks {
            None => spin_until(due).await,
            Some(rx) => {
                // The ticker sends every i in order, then hangs up.
                if rx.recv().await.is_none() {
                    break;
                }
            }
        }
        if i >= warm_n {
            rec.late_ns
                .push(Instant::now().saturating_duration_since(due).as_nanos() as u64);
        }
        if i == warm_n {
            cpu_start = a.pid.and_then(cpu_secs);
            gen_cpu_start = cpu_secs(std::process::id());
            counting = true;
        }
        while let Ok(d) = pool.done.try_recv() {
            handle(d, &mut pool, &mut rec, counting);
        }
        let conn = loop {
            if let Some(c) = pool.idle.pop() {
                break c;
            }
            match pool.done.recv().await {
                Some(d) => handle(d, &mut pool, &mut rec, counting),
                None => return,
            }
        };
        pool.send(conn, Job { seq: i, due });
    }
    // The last answers, for at most 10 s; whatever is still out is an error.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pool.outstanding > 0 {
        match tokio::time::timeout_at(deadline, pool.done.recv()).await {
            Ok(Some(d)) => handle(d, &mut pool, &mut rec, counting),
            _ => break,
        }
    }
    rec.errors += pool.outstanding as u64;
    let cpu_end = a.pid.and_then(cpu_secs);
    let gen_cpu = match (gen_cpu_start, cpu_secs(std::process::id())) {
        (Some(s), Some(e)) => Some(e - s),
        _ => None,
    };
    let hwm = a.pid.and_then(vm_hwm_kib);
    let (metrics, heap) = match scrapers {
        Some((m, h)) => (m.join().unwrap_or_default(), h.join().unwrap_or_default()),
        None => (Vec::new(), Vec::new()),
    };

    let mut lat = std::mem::take(&mut rec.lat_ns);
    lat.sort_unstable();
    let ok = lat.len() as u64;
    let span = rec
        .last_end
        .map_or(a.secs, |e| e.duration_since(t0).as_secs_f64().max(a.secs));
    let stalls = rec.window_max.iter().filter(|m| **m > STALL).count();
    let mut late = std::mem::take(&mut rec.late_ns);
    late.sort_unstable();
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let cpu = match (cpu_start, cpu_end) {
        (Some(s), Some(e)) => Some(e - s),
        _ => None,
    };
    let cpu_us_per_req = cpu.map(|c| c * 1e6 / rec.completed_in_cpu_span.max(1) as f64);
    let result = json!({
        "label": a.label,
        "rate": a.rate,
        "secs": a.secs,
        "conns": a.conns,
        "requests": ok,
        "errors": rec.errors,
        "achieved_rate": ok as f64 / span,
        "p50_us": pct(&lat, 0.50),
        "p90_us": pct(&lat, 0.90),
        "p99_us": pct(&lat, 0.99),
        "p999_us": pct(&lat, 0.999),
        "max_us": pct(&lat, 1.0),
        "stall_windows": stalls,
        "window_max_ms": rec.window_max.iter().map(|m| round2(m.as_secs_f64() * 1e3)).collect::<Vec<_>>(),
        "gen_late_p99_us": pct(&late, 0.99),
        "gen_late_max_us": pct(&late, 1.0),
        "windows": n_windows,
        "server_cpu_s": cpu,
        "server_cpu_pct": cpu.map(|c| round2(c * 100.0 / span)),
        "gen_cpu_us_per_req": gen_cpu.map(|c| c * 1e6 / rec.completed_in_cpu_span.max(1) as f64),
        "cpu_us_per_req": cpu_us_per_req,
        "vm_hwm_kib": hwm,
        "metrics": scrape_summary(&metrics),
        "heap": scrape_summary(&heap),
    });
    println!(
        "{}: {ok} requests at {:.0}/s (target {:.0}/s), {} errors; latency ms p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}; {stalls}/{n_windows} windows with a stall > 10 ms",
        a.label,
        ok as f64 / span,
        a.rate,
        rec.errors,
        pct(&lat, 0.50) / 1e3,
        pct(&lat, 0.90) / 1e3,
        pct(&lat, 0.99) / 1e3,
        pct(&lat, 0.999) / 1e3,
        pct(&lat, 1.0) / 1e3,
    );
    println!(
        "{}: generator late at its due times by p99 {:.3} ms, max {:.3} ms; its CPU {:.1} us/request",
        a.label,
        pct(&late, 0.99) / 1e3,
        pct(&late, 1.0) / 1e3,
        gen_cpu.map_or(0.0, |c| c * 1e6 / rec.completed_in_cpu_span.max(1) as f64)
    );
    if let Some(c) = cpu_us_per_req {
        let c_s = cpu.unwrap_or(0.0);
        println!(
            "{}: server CPU {c_s:.2} s ({:.0}% of one CPU), {c:.1} us/request; peak RSS {} KiB",
            a.label,
            c_s * 100.0 / span,
            hwm.map_or("?".into(), |h| h.to_string())
        );
    }
    for (name, s) in [("/metrics", &metrics), ("/debug/pprof/heap", &heap)] {
        if s.is_empty() {
            continue;
        }
        let mut ms: Vec<f64> = s.iter().map(|x| x.ms).collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "{}: {name}: {} scrapes ({} failed), first {:.1} ms, median {:.1} ms, max {:.1} ms, {} bytes",
            a.label,
            s.len(),
            s.iter().filter(|x| x.status != 200).count(),
            s[0].ms,
            ms[ms.len() / 2],
            ms[ms.len() - 1],
            s[s.len() - 1].bytes
        );
    }
    if let Some(path) = &a.json {
        let line = format!("{result}\n");
        let w = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = w {
            eprintln!("svc_loadgen: cannot write {path}: {e}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let a = parse_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        if a.max {
            run_max(&a).await;
        } else {
            run_rate(&a).await;
        }
    });
}
