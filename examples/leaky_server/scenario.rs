//! The incident of "Always Be Closing", rebuilt in Rust: a small request
//! framework whose per-request contexts are kept alive by deadline timers
//! that nobody cancels.
//!
//! Shared by `examples/leaky_server` (the demo) and the end-to-end tests.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leakscope::TrackedArc;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Per-request metadata: what the framework attaches to every request.
#[derive(Debug)]
#[allow(dead_code)] // realistic metadata: carried, not all read
pub struct RequestCtx {
    pub caller: String,
    pub request_id: String,
    pub headers: HashMap<String, String>,
    pub payload: Vec<u8>,
    pub deadline: Duration,
    cancelled: AtomicBool,
}

impl RequestCtx {
    /// Marks the context as done (deadline passed or request finished).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

/// One parsed request line: `CALLER TIMEOUT_MS PAYLOAD_BYTES`.
#[derive(Debug)]
pub struct Request {
    pub caller: String,
    pub timeout: Duration,
    pub payload_len: usize,
}

impl Request {
    fn parse(line: &str) -> Option<Request> {
        let mut it = line.split_whitespace();
        let caller = it.next()?.to_string();
        let timeout_ms: u64 = it.next()?.parse().ok()?;
        let payload_len: usize = it.next()?.parse().ok()?;
        Some(Request {
            caller,
            timeout: Duration::from_millis(timeout_ms.min(86_400_000)),
            payload_len: payload_len.min(1 << 20),
        })
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Builds the per-request metadata (strings, a header map, a payload
/// buffer): the memory that piles up when contexts leak.
#[inline(never)]
pub fn build_request_context(req: &Request) -> RequestCtx {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut headers = HashMap::with_capacity(4);
    headers.insert("x-request-id".to_string(), format!("req-{id:08}"));
    headers.insert("x-caller".to_string(), req.caller.clone());
    headers.insert(
        "x-deadline-ms".to_string(),
        req.timeout.as_millis().to_string(),
    );
    headers.insert(
        "user-agent".to_string(),
        format!("{}-client/1.0", req.caller),
    );
    RequestCtx {
        caller: req.caller.clone(),
        request_id: format!("req-{id:08}"),
        headers,
        payload: black_box(vec![(id % 251) as u8; req.payload_len]),
        deadline: req.timeout,
        cancelled: AtomicBool::new(false),
    }
}

/// A deadline timer: holds a clone of the context until the deadline fires,
/// then cancels it. Dropping or aborting the timer releases the clone.
pub struct DeadlineTimer {
    task: JoinHandle<()>,
}

impl DeadlineTimer {
    /// Cancels the timer, releasing its clone of the context.
    pub fn cancel(self) {
        self.task.abort();
    }
}

/// Schedules the context's cancellation at its deadline (Go's
/// `context.WithTimeout` registering a runtime timer). The timer is a
/// tracked task: the report lists live timers by this spawn site, with how
/// long they have not been polled.
pub fn spawn_deadline_timer(ctx: &TrackedArc<RequestCtx>) -> DeadlineTimer {
    let held = ctx.clone(); // the timer's reference: the holder in the report
    let deadline = held.deadline;
    let timer = leakscope::track!(
        async move {
            tokio::time::sleep(deadline).await;
            held.cancel();
        },
        "deadline timer"
    );
    let task = tokio::spawn(timer);
    DeadlineTimer { task }
}

/// The application's handler: fast, returns long before most deadlines.
async fn call_handler(ctx: &RequestCtx) -> usize {
    tokio::task::yield_now().await;
    ctx.payload.len() + ctx.headers.len()
}

/// Why the framework retires a context: the request is over.
pub const RETIRE_REASON: &str = "response written";

/// The framework's request path: builds the context, arms its deadline
/// timer, calls the handler and writes the response.
pub async fn handle_request<W: AsyncWrite + Unpin>(
    req: Request,
    fixed: bool,
    w: &mut W,
) -> std::io::Result<()> {
    let ctx = leakscope::track_arc!(build_request_context(&req), caller = req.caller.clone());
    let timer = spawn_deadline_timer(&ctx);
    let n = call_handler(&ctx).await;
    let written = w.write_all(format!("ok {n}\n").as_bytes()).await;
    if fixed {
        // The fix: cancel the deadline timer when the request completes.
        timer.cancel();
    }
    // The framework knows the context is finished once the response is
    // written, and says so: leakscope reports it if anything still holds it
    // after the grace period. The bug (without --fixed): the timer is
    // neither cancelled nor awaited; it keeps its clone of `ctx`, and all
    // the metadata, until the deadline.
    TrackedArc::retire(ctx, RETIRE_REASON);
    written
}

async fn serve_conn(stream: TcpStream, fixed: bool) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let done = match Request::parse(&line) {
            Some(req) => handle_request(req, fixed, &mut w).await,
            None => w.write_all(b"error bad request\n").await,
        };
        if done.is_err() {
            break;
        }
    }
}

/// A simulated caller: one connection, `rate` requests per second, each
/// asking for a deadline of `timeout`.
async fn caller(addr: std::net::SocketAddr, name: &'static str, timeout_ms: u64, rate: u32) {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return;
    };
    let (r, mut w) = stream.into_split();
    let mut replies = BufReader::new(r).lines();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    loop {
        tick.tick().await;
        let line = format!("{name} {timeout_ms} 16384\n");
        if w.write_all(line.as_bytes()).await.is_err() {
            return;
        }
        match replies.next_line().await {
            Ok(Some(_)) => {}
            _ => return,
        }
    }
}

/// The two callers of the story.
pub const GOOD_CALLER: &str = "checkout-web";
/// The caller whose client timeout is in seconds instead of milliseconds.
pub const BAD_CALLER: &str = "billing-batch";

/// How a run is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// Cancel deadline timers when requests complete (the story's fix).
    pub fixed: bool,
    /// The well-configured caller's timeout.
    pub good_timeout: Duration,
    /// The misconfigured caller's timeout (seconds where milliseconds were
    /// meant; scaled down so the demo shows the leak within seconds).
    pub bad_timeout: Duration,
    /// Requests per second from the well-configured caller.
    pub good_rate: u32,
    /// Requests per second from the misconfigured caller.
    pub bad_rate: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fixed: false,
            good_timeout: Duration::from_millis(50),
            bad_timeout: Duration::from_secs(8),
            good_rate: 150,
            bad_rate: 50,
        }
    }
}

/// A running scenario: the framework's server and its two callers.
pub struct Scenario {
    runtime: tokio::runtime::Runtime,
    /// The framework's listening address (127.0.0.1).
    pub addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Scenario {
    /// Starts the server on 127.0.0.1 and both callers.
    pub fn start(cfg: &Config) -> std::io::Result<Scenario> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let fixed = cfg.fixed;
        let s = stop.clone();
        runtime.spawn(async move {
            while !s.load(Ordering::Relaxed) {
                match listener.accept().await {
                    Ok((conn, _)) => {
                        tokio::spawn(serve_conn(conn, fixed));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
        let good = cfg.good_timeout.as_millis() as u64;
        let bad = cfg.bad_timeout.as_millis() as u64;
        runtime.spawn(caller(addr, GOOD_CALLER, good, cfg.good_rate));
        runtime.spawn(caller(addr, BAD_CALLER, bad, cfg.bad_rate));
        Ok(Scenario {
            runtime,
            addr,
            stop,
        })
    }

    /// Stops everything (pending timers are dropped with the runtime).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

/// The tracked-object site of the request contexts, if it has run.
pub fn ctx_site(snap: &leakscope::Snapshot) -> Option<&leakscope::ObjectSite> {
    snap.objects
        .iter()
        .find(|o| o.type_name.ends_with("RequestCtx"))
}

/// The spawn site of the deadline timers (a tracked task), if it has run.
pub fn timer_site(snap: &leakscope::Snapshot) -> Option<&leakscope::ObjectSite> {
    snap.objects
        .iter()
        .find(|o| o.name.as_deref() == Some("deadline timer"))
}
