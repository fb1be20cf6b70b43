//! The hardened HTTP listener that both the debug server
//! ([`crate::server`]) and the Prometheus installer (`prometheus::install`)
//! serve through: one background thread running a single-threaded tokio
//! runtime that accepts connections, parses requests with hyper under hard
//! limits, and hands each request to a bounded pool of blocking workers.
//!
//! It knows nothing of routes: it answers every request with a [`Handler`]
//! (path and query in, [`Response`] out). Its options are [`ServerBuilder`];
//! the running listener is a [`Server`].
//!
//! ```text
//!  accept ──► slot free? ──yes──────────────────────────────┐
//!               │no (at max_connections)                     │
//!               ▼                                            │
//!  wait ≤ 500 ms (≤ 32 waiting, past that: close):           │
//!    a slot frees, or evict one connection that is           │
//!    not busy and was admitted ≥ 200 ms ago:                 │
//!    fresh (sent nothing) first, then in-head, oldest first ─┤
//!    nothing to evict by then: one of 4 scrape slots ────────┤
//!      (it serves /metrics only: anything else ► 503)        │
//!    no scrape slot free either ──► "503", close             │
//!                                                            ▼
//!  [fresh] hyper http1: head ≤ 16 KiB, ≤ 64 headers, within header_timeout
//!  [head]       │ (431 / 400 / close, by hyper)
//!               ▼
//!  [busy]  method, body, Host, token checks (405 / 413 / 403 / 401)
//!               │
//!               ▼
//!  worker permit (≤ workers; /metrics has its own) ──► spawn_blocking(handler) ──► body
//!               │
//!               ▼
//!  body ≤ 256 KiB, or fits the response byte budget? ──no──► 503 + Retry-After
//!               │yes (charged until its last byte is written)
//!               ▼
//!  write response, close
//!  └──────────── whole request within request_timeout, else close ───┘
//! ```
//!
//! # Admission
//!
//! A slow or idle client must never lock the scrape out. Connections serve
//! one request each and are *fresh* (nothing sent yet), *in their head*
//! (part of a request head sent) or *busy* (a request in flight). At the
//! cap, a new connection takes the slot of a connection that is not busy:
//! 64 idle connections, or 64 that trickle one byte of a head now and then,
//! give way to a scrape within the 200 ms grace (which in turn keeps a
//! connection that has just arrived from being evicted before it could send
//! its head). Busy connections are never evicted; they are bounded by the
//! workers, the request timeout and the response byte budget. When all
//! slots are busy (say, 64 complete requests for heavy routes queued for
//! the workers), a new connection that waited 500 ms takes one of four
//! *scrape slots* kept aside, which answer `/metrics` and nothing else
//! (`503` for any other path); with those taken too, it gets `503`. A
//! `/metrics` request also has a worker of its own, so it never queues
//! behind heavy renders. An evicted connection is closed without an answer. Details in
//! `listener/admission.rs`; [`Server::stats`] counts evictions and
//! refusals.
//!
//! # Byte budget
//!
//! Handlers return whole bodies; a client that never reads would keep its
//! body in the process until the request timeout. Bodies rendered and not
//! yet written are charged against [`ServerBuilder::response_budget`]
//! (default 64 MiB) until their last byte reaches the socket; one that does
//! not fit is freed at once and answered `503` with `Retry-After`
//! (counted). Bodies up to 256 KiB are never refused (a scrape is not
//! refused because of others' large responses), and a body larger than the
//! whole budget is served when nothing else is held. So unsent responses
//! hold at most the budget plus one body plus `max_connections` x 256 KiB;
//! rendering adds at most `workers` bodies being built. Details in
//! `listener/budget.rs`.
//!
//! # Whose memory
//!
//! The server thread holds leakscope's re-entrancy guard for its whole
//! body, and its blocking workers hold it for their whole life, so what a
//! scrape allocates (the runtime, connection buffers, snapshots, rendered
//! bodies) is booked as leakscope's metadata and never moves the
//! application's `live_bytes` or `peak_live_bytes`. A block crosses sides
//! only once per server: the configuration and handler the application
//! built (a few hundred bytes) are freed by the server thread at shutdown,
//! as metadata. The workers are all started with the server and live as
//! long as it does: std's thread start-up runs before tokio's
//! `on_thread_start` hook, outside the guard (a worker spawned mid-scrape
//! moved the application's live bytes by a few bytes of thread name). An
//! application that mounts the handlers in its own server renders on its
//! own threads, into its own memory.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

mod admission;
mod budget;
mod builder;
pub(crate) mod host;
mod response;

pub use builder::ServerBuilder;
pub use response::Response;
#[cfg(feature = "flamegraph")]
pub(crate) use response::SVG;
pub(crate) use response::{HTML, JSON, OCTET_STREAM, TEXT};

/// What answers requests: path and raw query in, response out. Runs on a
/// blocking worker thread.
pub(crate) type Handler = Arc<dyn Fn(&str, &str) -> Response + Send + Sync>;

/// Largest request head (start line plus headers) accepted. Larger than
/// the longest accepted query (1 KiB) so that a long query gets a `400`
/// with a reason rather than a bare `431`.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most request headers accepted.
const MAX_HEADERS: usize = 64;
/// How long shutdown waits for in-flight requests before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Counters of a running server: what it refused or cut short to stay
/// within its limits ([`Server::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections closed at the connection cap to admit a new one (they
    /// had sent nothing or only part of a request head).
    pub evicted: u64,
    /// Connections turned away at the cap (`503` or closed): every slot
    /// was busy with a request in flight.
    pub rejected: u64,
    /// Responses refused with `503` because the bodies already waiting for
    /// their clients were at the response byte budget
    /// ([`ServerBuilder::response_budget`]).
    pub over_budget: u64,
    /// Bytes of response bodies held now, rendered and not yet written to
    /// their clients (charged against the budget).
    pub held_bytes: u64,
}

#[derive(Default)]
struct Counters {
    evicted: AtomicU64,
    rejected: AtomicU64,
    over_budget: AtomicU64,
}

struct Stop {
    flag: AtomicBool,
    notify: Notify,
}

/// A running debug server (see [`serve`](crate::server::serve)).
///
/// Dropping it shuts it down, like [`Server::shutdown`].
#[must_use = "the server shuts down when this handle is dropped"]
pub struct Server {
    addr: SocketAddr,
    stats: Arc<Counters>,
    budget: Arc<budget::Budget>,
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
    thread_id: Option<ThreadId>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.addr)
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl Server {
    /// The address the server listens on (with the real port when it was
    /// started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, gives in-flight requests up to 2 s to
    /// finish, closes the rest and joins the server thread. The port is free
    /// when this returns.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// What the server refused or cut short so far (see [`ServerStats`]).
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            evicted: self.stats.evicted.load(Ordering::Relaxed),
            rejected: self.stats.rejected.load(Ordering::Relaxed),
            over_budget: self.stats.over_budget.load(Ordering::Relaxed),
            held_bytes: self.budget.held(),
        }
    }

    /// Leaves the server running for the rest of the process.
    pub(crate) fn detach(mut self) {
        self.thread = None;
    }

    fn stop_and_join(&mut self) {
        self.stop.flag.store(true, Ordering::SeqCst);
        self.stop.notify.notify_one();
        if let Some(t) = self.thread.take() {
            // Never join ourselves (a handler dropping its own server).
            if Some(std::thread::current().id()) != self.thread_id {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_and_join();
        }
    }
}

struct Shared {
    cfg: ServerBuilder,
    handler: Handler,
    stats: Arc<Counters>,
    budget: Arc<budget::Budget>,
    slots: Arc<admission::Slots>,
    conns: Arc<Semaphore>,
    rejects: Arc<Semaphore>,
    workers: Arc<Semaphore>,
    /// Connection slots beyond the cap, for `/metrics` only.
    scrape_slots: Arc<Semaphore>,
    /// The worker `/metrics` runs on, beside the general ones.
    scrape_worker: Arc<Semaphore>,
}

/// The path a scrape asks for: served from its own worker and, when every
/// connection slot is busy, from [`SCRAPE_SLOTS`] slots kept aside for it.
const SCRAPE_PATH: &str = "/metrics";
/// Connection slots kept aside for scrapes, beyond `max_connections`.
const SCRAPE_SLOTS: usize = 4;

/// Which requests a connection may make.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Admitted {
    /// A regular slot: any path.
    Any,
    /// A scrape slot: [`SCRAPE_PATH`] only.
    ScrapeOnly,
}

/// Most connections being turned away with a `503` at once.
const MAX_REJECTS: usize = 32;

/// Writes a `503` and drains what the client sent (so closing does not
/// reset the connection before the client reads the answer), all within
/// one second.
async fn reject(mut stream: tokio::net::TcpStream, _permit: OwnedSemaphorePermit) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const MSG: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\ncontent-length: 21\r\nconnection: close\r\n\r\ntoo many connections\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(MSG).await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 1024];
        while stream.read(&mut buf).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}

pub(crate) fn start(
    addrs: &[SocketAddr],
    cfg: ServerBuilder,
    handler: Handler,
) -> io::Result<Server> {
    let std_listener = std::net::TcpListener::bind(addrs)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let stop = Arc::new(Stop {
        flag: AtomicBool::new(false),
        notify: Notify::new(),
    });
    let stop2 = stop.clone();
    let stats = Arc::new(Counters::default());
    let stats2 = stats.clone();
    let budget = Arc::new(budget::Budget::new(cfg.response_budget));
    let budget2 = budget.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<io::Result<()>>(1);
    // The runtime is built, run and dropped on the server thread only, never
    // in the caller's context: the caller may be inside a runtime of its
    // own, where dropping another runtime (on a failed start) panics.
    let thread = std::thread::Builder::new()
        .name("leakscope-http".into())
        .spawn(move || {
            // Everything the server thread and its workers allocate (the
            // runtime, connections, snapshots, rendered bodies) is
            // leakscope's memory, never the application's: see the module
            // doc's "Whose memory" section.
            let _leakscope_thread = crate::alloc::guard::Guard::enter();
            let workers = cfg.workers;
            let setup = (|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    // The general workers plus the scrape's own.
                    .max_blocking_threads(workers + 1)
                    .thread_name("leakscope-http-worker")
                    .on_thread_start(crate::alloc::guard::enter_for_thread)
                    // Workers live as long as the server: a worker that
                    // exits and is respawned would run std's thread start-up
                    // before `on_thread_start`, outside the guard.
                    .thread_keep_alive(Duration::from_secs(24 * 3600))
                    .build()?;
                let listener = {
                    let _g = rt.enter();
                    TcpListener::from_std(std_listener)?
                };
                #[cfg(test)]
                if cfg.fail_after_runtime {
                    return Err(io::Error::other(
                        "test hook: failing after the runtime was built",
                    ));
                }
                Ok((rt, listener))
            })();
            let (rt, listener) = match setup {
                Ok(ok) => {
                    // Start every worker now (they live as long as the
                    // server), so that no thread is spawned while requests
                    // are served.
                    ok.0.block_on(async {
                        let started: Vec<_> = (0..workers + 1)
                            .map(|_| {
                                tokio::task::spawn_blocking(|| {
                                    std::thread::sleep(Duration::from_millis(5))
                                })
                            })
                            .collect();
                        for s in started {
                            let _ = s.await;
                        }
                    });
                    let _ = ready_tx.send(Ok(()));
                    ok
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let shared = Arc::new(Shared {
                stats: stats2,
                budget: budget2,
                slots: Arc::default(),
                conns: Arc::new(Semaphore::new(cfg.max_connections)),
                rejects: Arc::new(Semaphore::new(MAX_REJECTS)),
                workers: Arc::new(Semaphore::new(cfg.workers)),
                scrape_slots: Arc::new(Semaphore::new(SCRAPE_SLOTS)),
                scrape_worker: Arc::new(Semaphore::new(1)),
                cfg,
                handler,
            });
            rt.block_on(accept_loop(listener, shared.clone(), stop2));
            // Give in-flight connections a grace period, then drop them.
            let max = shared.cfg.max_connections;
            let conns = shared.conns.clone();
            rt.block_on(async move {
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, conns.acquire_many(max as u32)).await;
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => {
            let thread_id = Some(thread.thread().id());
            Ok(Server {
                addr,
                stats,
                budget,
                stop,
                thread: Some(thread),
                thread_id,
            })
        }
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(io::Error::other("the server thread ended while starting"))
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: Arc<Stop>) {
    loop {
        let accepted = {
            let mut notified = pin!(stop.notify.notified());
            std::future::poll_fn(|cx| {
                if stop.flag.load(Ordering::SeqCst) || notified.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                listener.poll_accept(cx).map(Some)
            })
            .await
        };
        let (stream, _peer) = match accepted {
            None => return,
            Some(Ok(s)) => s,
            Some(Err(_)) => {
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match shared.conns.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(serve_conn(stream, permit, shared.clone(), Admitted::Any));
            }
            Err(_) => {
                // At the connection cap: wait for a slot (evicting a
                // connection that is not busy) from a bounded set of
                // short-lived tasks; past that, just close.
                if let Ok(p) = shared.rejects.clone().try_acquire_owned() {
                    tokio::spawn(admit_at_cap(stream, p, shared.clone()));
                } else {
                    shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// A connection that arrived at the cap: takes a slot freed or evicted
/// within [`admission::ADMIT_WAIT`], else gets its `503`.
async fn admit_at_cap(
    stream: tokio::net::TcpStream,
    waiting: OwnedSemaphorePermit,
    shared: Arc<Shared>,
) {
    let deadline = tokio::time::Instant::now() + admission::ADMIT_WAIT;
    loop {
        if let Ok(permit) = shared.conns.clone().try_acquire_owned() {
            drop(waiting);
            return serve_conn(stream, permit, shared, Admitted::Any).await;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            // Every slot busy: a scrape slot, if one is free, so that
            // `/metrics` still answers.
            if let Ok(permit) = shared.scrape_slots.clone().try_acquire_owned() {
                drop(waiting);
                return serve_conn(stream, permit, shared, Admitted::ScrapeOnly).await;
            }
            shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return reject(stream, waiting).await;
        }
        let wake = match shared.slots.evict_one(now) {
            admission::Evict::Evicted => {
                shared.stats.evicted.fetch_add(1, Ordering::Relaxed);
                // The slot comes back when that connection's task ends;
                // look again soon should another waiter take it first.
                now + Duration::from_millis(50)
            }
            admission::Evict::NotBefore(at) => at,
            admission::Evict::Nothing => deadline,
        };
        let wake = wake.min(deadline);
        if let Ok(Ok(permit)) =
            tokio::time::timeout_at(wake, shared.conns.clone().acquire_owned()).await
        {
            drop(waiting);
            return serve_conn(stream, permit, shared, Admitted::Any).await;
        }
    }
}

/// Serves one admitted connection (one request) until it is done, timed
/// out or evicted.
async fn serve_conn(
    stream: tokio::net::TcpStream,
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    admitted: Admitted,
) {
    let _permit = permit;
    let reg = shared.slots.register();
    let slot = reg.slot.clone();
    let svc_shared = shared.clone();
    // Handlers must finish a little before the connection's deadline
    // so that the client gets a 503 rather than a closed connection.
    // A timeout too large for the clock means no timeout.
    let timeout = shared.cfg.request_timeout;
    let deadline = deadline_after(timeout);
    let handler_deadline = deadline_after(timeout - timeout / 10);
    let svc_slot = slot.clone();
    let svc = service_fn(move |req| {
        let s = svc_shared.clone();
        svc_slot.busy();
        async move { Ok::<_, Infallible>(respond(req, &s, handler_deadline, admitted).await) }
    });
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(
            deadline_after(shared.cfg.header_timeout).map(|_| shared.cfg.header_timeout),
        )
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(false);
    let io = admission::Watched {
        inner: stream,
        slot: slot.clone(),
    };
    let conn = b.serve_connection(TokioIo::new(io), svc);
    let conn = async {
        match deadline {
            Some(d) => {
                let _ = tokio::time::timeout_at(d, conn).await;
            }
            None => {
                let _ = conn.await;
            }
        }
    };
    // Whichever comes first: the connection ends, or it is evicted (then
    // dropping it closes the socket).
    let mut conn = pin!(conn);
    let mut evicted = pin!(slot.evicted());
    std::future::poll_fn(|cx| {
        if conn.as_mut().poll(cx).is_ready() || evicted.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        Poll::Pending
    })
    .await;
    drop(reg);
}

type HttpResponse = hyper::Response<Full<Bytes>>;

/// Longest timeout honoured; longer ones (up to `Duration::MAX`) mean none.
/// A century from now fits any clock's `Instant`, so adding it cannot
/// overflow (in our code or in hyper's).
const NO_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `now + d`, or `None` (no deadline) when `d` is too large to add.
fn deadline_after(d: Duration) -> Option<tokio::time::Instant> {
    if d >= NO_TIMEOUT {
        return None;
    }
    tokio::time::Instant::now().checked_add(d)
}

/// The credentials of an `Authorization: Bearer <token>` header: the scheme
/// matches case-insensitively (RFC 7235), one or more spaces follow.
fn bearer(v: &[u8]) -> Option<&[u8]> {
    let scheme = v.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || v.get(6) != Some(&b' ') {
        return None;
    }
    let rest = &v[6..];
    let start = rest.iter().position(|&b| b != b' ')?;
    Some(&rest[start..])
}

async fn respond(
    req: hyper::Request<Incoming>,
    s: &Shared,
    deadline: Option<tokio::time::Instant>,
    admitted: Admitted,
) -> HttpResponse {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return to_http(Response::error(405, "only GET and HEAD are served"))
            .map(|mut r| {
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                r
            })
            .unwrap_or_else(|| fallback(405));
    }
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return http(Response::error(413, "request bodies are not accepted"));
    }
    if !s.cfg.allow_remote {
        // DNS rebinding (see `host`): the absolute-form target's authority
        // stands for `Host` when there is one (RFC 9112, 3.2.2).
        let host = match req.uri().authority() {
            Some(a) => Some(a.as_str().as_bytes()),
            None => req.headers().get(header::HOST).map(HeaderValue::as_bytes),
        };
        let ok = host.is_none_or(|h| std::str::from_utf8(h).is_ok_and(host::host_allowed));
        if !ok {
            return http(Response::error(
                403,
                "Host is not a loopback name or an IP literal (DNS rebinding protection; see ServerBuilder::allow_remote)",
            ));
        }
    }
    if let Some(token) = &s.cfg.bearer_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
            .unwrap_or(b"");
        if !ct_eq(given, token.as_bytes()) {
            let r = http(Response::error(401, "missing or wrong bearer token"));
            let mut r = r;
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"leakscope\""),
            );
            return r;
        }
    }
    let scrape = req.uri().path() == SCRAPE_PATH;
    if admitted == Admitted::ScrapeOnly && !scrape {
        s.stats.rejected.fetch_add(1, Ordering::Relaxed);
        return http(
            Response::error(
                503,
                "too many connections: the slots kept aside serve /metrics only",
            )
            .with_header("retry-after", "1"),
        );
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let work = async {
        let workers = if scrape { &s.scrape_worker } else { &s.workers };
        let permit = match workers.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Response::error(503, "server is shutting down"),
        };
        let handler = s.handler.clone();
        let r = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            handler(&path, &query)
        })
        .await;
        match r {
            Ok(r) => r,
            // The handler panicked: the application goes on, the client learns.
            Err(_) => Response::error(500, "internal error in the handler"),
        }
    };
    let r = match deadline {
        Some(d) => tokio::time::timeout_at(d, work).await,
        None => Ok(work.await),
    };
    match r {
        Ok(mut r) => match s.budget.charge(std::mem::take(&mut r.body)) {
            Ok(body) => {
                let status = r.status;
                to_http_body(r, body).unwrap_or_else(|| fallback(status))
            }
            Err(_) => {
                // Freed here, not held for a client that may never read.
                s.stats.over_budget.fetch_add(1, Ordering::Relaxed);
                let r = Response::error(
                    503,
                    "busy: responses waiting for their clients are at the byte budget, retry later",
                )
                .with_header("retry-after", "2");
                http(r)
            }
        },
        // A handler still running keeps its worker permit until it returns,
        // so abandoned work never exceeds `workers` threads.
        Err(_) => http(Response::error(503, "busy: request timed out, retry later")),
    }
}

/// Compares in time independent of where the first difference is.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn http(r: Response) -> HttpResponse {
    let status = r.status;
    to_http(r).unwrap_or_else(|| fallback(status))
}

fn to_http(mut r: Response) -> Option<HttpResponse> {
    let body = Bytes::from(std::mem::take(&mut r.body));
    to_http_body(r, body)
}

/// `r` with `body` in place of its own (taken out of it).
fn to_http_body(r: Response, body: Bytes) -> Option<HttpResponse> {
    let mut b = hyper::Response::builder()
        .status(StatusCode::from_u16(r.status).ok()?)
        .header(header::CONTENT_TYPE, r.content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-content-type-options", "nosniff");
    for (k, v) in r.headers {
        b = b.header(k, v);
    }
    b.body(Full::new(body)).ok()
}

/// A response that cannot fail to build (used if a handler's headers are
/// not valid HTTP).
fn fallback(status: u16) -> HttpResponse {
    let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"invalid response\n")));
    *r.status_mut() = StatusCode::from_u16(status)
        .ok()
        .filter(|s| !s.is_success())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_is_a_500_and_the_server_goes_on() {
        let handler: Handler = Arc::new(|path: &str, _q: &str| {
            if path == "/boom" {
                panic!("handler bug");
            }
            Response::ok(TEXT, "fine")
        });
        let addrs = ["127.0.0.1:0".parse().expect("addr")];
        let srv = start(&addrs, ServerBuilder::new(), handler).expect("start");
        let r = ask(srv.local_addr(), "/boom");
        assert!(r.starts_with("HTTP/1.1 500"), "{r}");
        assert!(r.ends_with("internal error in the handler\n"), "{r}");
        let r = ask(srv.local_addr(), "/ok");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        srv.shutdown();
    }

    fn ask(addr: SocketAddr, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn at_most_workers_handlers_run_at_once() {
        use std::sync::atomic::AtomicUsize;
        let running = Arc::new(AtomicUsize::new(0));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let (r, m) = (running.clone(), max_seen.clone());
        let handler: Handler = Arc::new(move |_: &str, _: &str| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            r.fetch_sub(1, Ordering::SeqCst);
            Response::ok(TEXT, "done")
        });
        let addrs = ["127.0.0.1:0".parse().expect("addr")];
        let srv = start(&addrs, ServerBuilder::new().workers(2), handler).expect("start");
        let addr = srv.local_addr();
        let clients: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(move || ask(addr, "/")))
            .collect();
        for c in clients {
            let r = c.join().expect("client");
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        }
        let max = max_seen.load(Ordering::SeqCst);
        assert!((1..=2).contains(&max), "{max} handlers ran at once");
    }

    #[test]
    fn a_handler_past_its_deadline_is_a_503() {
        let handler: Handler = Arc::new(|path: &str, _: &str| {
            if path == "/slow" {
                std::thread::sleep(Duration::from_millis(1500));
            }
            Response::ok(TEXT, "done")
        });
        let addrs = ["127.0.0.1:0".parse().expect("addr")];
        let b = ServerBuilder::new().request_timeout(Duration::from_millis(500));
        let srv = start(&addrs, b, handler).expect("start");
        let r = ask(srv.local_addr(), "/slow");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.ends_with("busy: request timed out, retry later\n"), "{r}");
        assert!(ask(srv.local_addr(), "/fast").starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn a_failed_start_inside_a_runtime_returns_the_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut b = ServerBuilder::new();
            b.fail_after_runtime = true;
            let addrs = ["127.0.0.1:0".parse().expect("addr")];
            let handler: Handler = Arc::new(|_: &str, _: &str| Response::ok(TEXT, "x"));
            let e = start(&addrs, b, handler).expect_err("the hook fails the start");
            assert!(e.to_string().contains("test hook"), "{e}");
        });
    }

    /// A server with `max_connections(2)` and `workers(2)` whose handler
    /// blocks every path but `/metrics` until `release` (at most 10 s), and
    /// two such requests in flight: every regular slot and worker is busy.
    fn two_busy_requests(
        release: &Arc<AtomicBool>,
    ) -> (Server, SocketAddr, Vec<std::thread::JoinHandle<String>>) {
        use std::sync::atomic::AtomicUsize;
        let entered = Arc::new(AtomicUsize::new(0));
        let (r, e) = (release.clone(), entered.clone());
        let handler: Handler = Arc::new(move |path: &str, _: &str| {
            if path == SCRAPE_PATH {
                return Response::ok(TEXT, "metrics");
            }
            e.fetch_add(1, Ordering::SeqCst);
            for _ in 0..1000 {
                if r.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Response::ok(TEXT, "done")
        });
        let addrs = ["127.0.0.1:0".parse().expect("addr")];
        let b = ServerBuilder::new().workers(2).max_connections(2);
        let srv = start(&addrs, b, handler).expect("start");
        let addr = srv.local_addr();
        let busy: Vec<_> = (0..2)
            .map(|_| std::thread::spawn(move || ask(addr, "/")))
            .collect();
        let t = std::time::Instant::now();
        while entered.load(Ordering::SeqCst) < 2 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "requests did not arrive"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(
            2 * admission::GRACE.as_millis() as u64,
        ));
        (srv, addr, busy)
    }

    #[test]
    fn busy_connections_are_never_evicted_the_next_one_gets_503() {
        let release = Arc::new(AtomicBool::new(false));
        let (srv, addr, busy) = two_busy_requests(&release);
        let r = ask(addr, "/");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.contains("too many connections"), "{r}");
        assert_eq!(srv.stats().rejected, 1);
        assert_eq!(srv.stats().evicted, 0);
        release.store(true, Ordering::SeqCst);
        for c in busy {
            let r = c.join().expect("client");
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        }
        assert!(ask(addr, "/").starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn a_scrape_is_answered_when_every_slot_and_worker_is_busy() {
        let release = Arc::new(AtomicBool::new(false));
        let (srv, addr, busy) = two_busy_requests(&release);
        // Every regular slot holds a request in a handler, and both general
        // workers are taken: the scrape comes in through a scrape slot and
        // runs on the scrape's own worker.
        for _ in 0..3 {
            let r = ask(addr, "/metrics");
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            assert!(r.ends_with("metrics"), "{r}");
        }
        assert_eq!(srv.stats().rejected, 0);
        release.store(true, Ordering::SeqCst);
        for c in busy {
            assert!(c.join().expect("client").starts_with("HTTP/1.1 200"));
        }
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn bad_header_value_falls_back() {
        let r = Response::ok(TEXT, "x").with_header("x-bad", "a\nb");
        let h = http(r);
        assert_eq!(h.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
