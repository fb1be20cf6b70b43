//! The debug HTTP server: leak reports, pprof profiles and Prometheus metrics
//! where curl, `go tool pprof`, Parca, Pyroscope and Prometheus look.
//!
//! # Routes
//!
//! | route | content |
//! |-------|---------|
//! | `/` | an index page linking the rest |
//! | `/metrics` | Prometheus text format ([`crate::prometheus::render`]) |
//! | `/debug/pprof/heap` | gzipped `profile.proto` of live sampled allocations; `?debug=1` for text, `?min_age=1h` for the leak view |
//! | `/debug/pprof/allocs` | the same profile with the all-time allocation samples first (Go's `allocs`) |
//! | `/debug/pprof/heap.svg` | a flame graph of live sampled bytes (feature `flamegraph`) |
//! | `/debug/leaks` | the text leak report (`?min_age=` filters the heap part) |
//! | `/debug/leaks.json` | the whole [`Snapshot`] as JSON |
//!
//! `min_age` takes Go-style durations (`90s`, `1h30m`, `250ms`, `1.5h`) or
//! plain seconds (`3600`); `debug` takes `0` or `1`. A bad value is a `400`
//! with a one-line reason; unknown parameters are ignored, as Go does, except
//! `seconds` (delta profiles), which is refused rather than ignored.
//!
//! # Safe by default
//!
//! - [`serve`] only binds loopback addresses; listening elsewhere takes an
//!   explicit [`ServerBuilder::allow_remote`], best with a
//!   [`ServerBuilder::bearer_token`] (`Authorization: Bearer <token>`,
//!   compared in constant time; `401` otherwise).
//! - Request heads are capped at 16 KiB (`431`) and 64 headers, must arrive
//!   within [`ServerBuilder::header_timeout`] (default 5 s), and each request
//!   is answered within [`ServerBuilder::request_timeout`] (default 30 s) or
//!   the connection is closed. Request bodies are refused (`413`); only `GET`
//!   and `HEAD` are served (`405`). One request per connection.
//! - At most [`ServerBuilder::max_connections`] (default 64) connections at
//!   once; the next one gets an immediate `503`. At most
//!   [`ServerBuilder::workers`] (default 2) handlers run at once, on their
//!   own threads, so a flood of scrapes costs the application at most that
//!   many cores.
//! - I/O runs on one background thread (`leakscope-http`, a single-threaded
//!   tokio runtime owned by the server, separate from any runtime of the
//!   application): a slow or broken client holds a connection slot until its
//!   timeout, never a thread, and never blocks the application.
//!
//! # Mounting the handlers elsewhere
//!
//! Every route is a plain function from query string to [`Response`]
//! ([`route`] dispatches by path), so an application with its own axum or
//! hyper server can mount them; see `examples/mount_handlers.rs`.
//!
//! # Examples
//!
//! ```no_run
//! let server = leakscope::server::serve("127.0.0.1:6060")?;
//! println!("curl http://{}/debug/leaks", server.local_addr());
//! // ... the application runs ...
//! server.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::snapshot::Snapshot;
use crate::SnapshotOptions;

mod listen;
mod query;

pub use listen::Server;
pub use query::{parse_duration, Query, QueryError};

/// A response of one of the handlers: plain data, ready to be written by any
/// HTTP server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// Further headers (e.g. `Content-Disposition` for profiles).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A `200` response.
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// An error response: `status` with a one-line plain-text reason.
    pub fn error(status: u16, reason: &str) -> Self {
        let line: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Response {
            status,
            content_type: TEXT,
            headers: Vec::new(),
            body: format!("{line}\n").into_bytes(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// `text/plain; charset=utf-8`.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// `text/html; charset=utf-8`.
pub const HTML: &str = "text/html; charset=utf-8";
/// `application/json`.
pub const JSON: &str = "application/json";
/// `application/octet-stream`, what Go serves pprof profiles as.
pub const OCTET_STREAM: &str = "application/octet-stream";
/// `image/svg+xml`.
pub const SVG: &str = "image/svg+xml";

/// Every route of the debug server, as [`route`] knows them.
pub const ROUTES: [&str; 7] = [
    "/",
    "/metrics",
    "/debug/pprof/heap",
    "/debug/pprof/allocs",
    "/debug/pprof/heap.svg",
    "/debug/leaks",
    "/debug/leaks.json",
];

/// Dispatches a request by path to the handler of that route: the whole
/// debug server as one function. Unknown paths get a `404`.
///
/// `query` is the raw query string without the `?` (may be empty).
///
/// # Examples
///
/// ```
/// let r = leakscope::server::route("/debug/leaks", "");
/// assert_eq!(r.status, 200);
/// let r = leakscope::server::route("/debug/leaks", "min_age=banana");
/// assert_eq!(r.status, 400);
/// assert_eq!(leakscope::server::route("/nope", "").status, 404);
/// ```
pub fn route(path: &str, query: &str) -> Response {
    match path {
        "/" => index(),
        "/metrics" => metrics(query),
        "/debug/pprof/heap" => pprof_heap(query),
        "/debug/pprof/allocs" => pprof_allocs(query),
        "/debug/pprof/heap.svg" => heap_svg(query),
        "/debug/leaks" => leaks(query),
        "/debug/leaks.json" => leaks_json(query),
        _ => Response::error(404, "not found (the routes are listed at /)"),
    }
}

/// `/`: an HTML index linking every route.
pub fn index() -> Response {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>leakscope</title></head><body>\n<h1>leakscope</h1>\n<ul>\n",
    );
    let items: [(&str, &str); 9] = [
        ("/metrics", "Prometheus metrics"),
        ("/debug/pprof/heap", "heap profile (go tool pprof)"),
        ("/debug/pprof/heap?debug=1", "heap profile, text"),
        (
            "/debug/pprof/heap?min_age=1h",
            "heap profile, live for an hour or more",
        ),
        ("/debug/pprof/allocs", "allocation profile (go tool pprof)"),
        ("/debug/pprof/heap.svg", "flame graph of live heap"),
        ("/debug/leaks", "leak report"),
        (
            "/debug/leaks?min_age=1h",
            "leak report, heap live for an hour or more",
        ),
        ("/debug/leaks.json", "leak report, JSON"),
    ];
    for (href, what) in items {
        let _ = writeln!(html, "<li><a href=\"{href}\">{href}</a>: {what}</li>");
    }
    let _ = writeln!(
        html,
        "</ul>\n<p>{}</p>\n</body></html>",
        html_escape(&crate::snapshot().summary())
    );
    Response::ok(HTML, html)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn parse(query: &str) -> Result<Query, Response> {
    Query::parse(query).map_err(|e| Response::error(400, &e.to_string()))
}

fn snapshot_for(q: &Query) -> Snapshot {
    let mut opts = SnapshotOptions::new();
    if let Some(a) = q.min_age {
        opts = opts.min_age(a);
    }
    crate::snapshot_with(&opts)
}

/// `/metrics`: every leakscope metric in the Prometheus text format.
pub fn metrics(query: &str) -> Response {
    if let Err(r) = parse(query) {
        return r;
    }
    Response::ok(
        crate::prometheus::CONTENT_TYPE,
        crate::prometheus::render(&crate::snapshot()),
    )
}

/// `/debug/pprof/heap`: the heap profile (gzipped `profile.proto`, as Go's
/// `/debug/pprof/heap`); `debug=1` for text, `min_age` for the leak view.
pub fn pprof_heap(query: &str) -> Response {
    profile(query, false)
}

/// `/debug/pprof/allocs`: like [`pprof_heap`] with the all-time allocation
/// samples as the default sample type (Go's `/debug/pprof/allocs`).
pub fn pprof_allocs(query: &str) -> Response {
    profile(query, true)
}

fn profile(query: &str, allocs: bool) -> Response {
    let q = match parse(query) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let mut opts = if allocs {
        crate::pprof::ProfileOptions::allocs()
    } else {
        crate::pprof::ProfileOptions::heap()
    };
    if let Some(a) = q.min_age {
        opts = opts.min_age(a);
    }
    let snap = snapshot_for(&q);
    if q.debug {
        return Response::ok(TEXT, crate::pprof::text(&snap, &opts));
    }
    let name = if allocs { "allocs" } else { "heap" };
    Response::ok(OCTET_STREAM, crate::pprof::profile(&snap, &opts)).with_header(
        "content-disposition",
        format!("attachment; filename=\"{name}\""),
    )
}

/// `/debug/pprof/heap.svg`: a flame graph of the live sampled heap (needs
/// the `flamegraph` feature; `501` without it).
pub fn heap_svg(query: &str) -> Response {
    let q = match parse(query) {
        Ok(q) => q,
        Err(r) => return r,
    };
    #[cfg(feature = "flamegraph")]
    {
        match crate::flamegraph::heap_svg(&snapshot_for(&q)) {
            Ok(svg) => Response::ok(SVG, svg),
            Err(e) => Response::error(500, &format!("flame graph failed: {e}")),
        }
    }
    #[cfg(not(feature = "flamegraph"))]
    {
        let _ = q;
        Response::error(501, "built without the flamegraph feature")
    }
}

/// `/debug/leaks`: the text leak report ([`Snapshot`]'s `Display`).
pub fn leaks(query: &str) -> Response {
    match parse(query) {
        Ok(q) => Response::ok(TEXT, snapshot_for(&q).to_string()),
        Err(r) => r,
    }
}

/// `/debug/leaks.json`: the whole [`Snapshot`] as JSON.
pub fn leaks_json(query: &str) -> Response {
    let q = match parse(query) {
        Ok(q) => q,
        Err(r) => return r,
    };
    match serde_json::to_vec_pretty(&snapshot_for(&q)) {
        Ok(mut body) => {
            body.push(b'\n');
            Response::ok(JSON, body)
        }
        Err(e) => Response::error(500, &format!("json encoding failed: {e}")),
    }
}

/// Starts the debug server on `addr` with the default limits (see the
/// module docs) on its own background thread.
///
/// `addr` must be a loopback address (`127.0.0.1:6060`, `[::1]:6060`,
/// `localhost:6060`); port 0 picks a free port ([`Server::local_addr`]
/// tells which). Use [`ServerBuilder`] to listen elsewhere.
///
/// The server stops when [`Server::shutdown`] is called or the [`Server`]
/// is dropped, so keep it: `let _debug = serve(..)?;`.
///
/// # Errors
///
/// `InvalidInput` for an address that does not resolve or is not loopback;
/// the bind error (`AddrInUse`, ...) otherwise.
pub fn serve(addr: impl ToSocketAddrs) -> io::Result<Server> {
    ServerBuilder::new().serve(addr)
}

/// Options of the debug server; [`serve`] uses the defaults.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// let server = leakscope::server::ServerBuilder::new()
///     .allow_remote(true)
///     .bearer_token("s3cret")
///     .request_timeout(Duration::from_secs(10))
///     .serve("0.0.0.0:6060")?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct ServerBuilder {
    pub(crate) allow_remote: bool,
    pub(crate) bearer_token: Option<String>,
    pub(crate) max_connections: usize,
    pub(crate) workers: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) request_timeout: Duration,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("allow_remote", &self.allow_remote)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("max_connections", &self.max_connections)
            .field("workers", &self.workers)
            .field("header_timeout", &self.header_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            allow_remote: false,
            bearer_token: None,
            max_connections: 64,
            workers: 2,
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerBuilder {
    /// The defaults: loopback only, no token, 64 connections, 2 workers,
    /// 5 s to send the request head, 30 s per request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows listening on a non-loopback address. Anyone who can reach it
    /// can read your heap's stack traces and type names: pair it with
    /// [`ServerBuilder::bearer_token`] or a firewall.
    pub fn allow_remote(mut self, yes: bool) -> Self {
        self.allow_remote = yes;
        self
    }

    /// Requires `Authorization: Bearer <token>` on every request (`401`
    /// otherwise). An empty token is ignored.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        let t = token.into();
        self.bearer_token = if t.is_empty() { None } else { Some(t) };
        self
    }

    /// Most connections open at once (at least 1); the next one gets `503`.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Most handlers running at once (at least 1), each on its own thread.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// How long a client may take to send its request head (at least 1 ms).
    pub fn header_timeout(mut self, d: Duration) -> Self {
        self.header_timeout = d.max(Duration::from_millis(1));
        self
    }

    /// How long a whole request may take, head to last byte of the response
    /// (at least 1 ms); the connection is closed after that.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d.max(Duration::from_millis(1));
        self
    }

    /// Starts the debug server on `addr` (see [`serve`]).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an address that does not resolve, or that is not
    /// loopback without [`ServerBuilder::allow_remote`]; the bind error
    /// otherwise.
    pub fn serve(self, addr: impl ToSocketAddrs) -> io::Result<Server> {
        self.serve_with(addr, std::sync::Arc::new(route))
    }

    /// Starts a server on `addr` that answers every request with `handler`.
    pub(crate) fn serve_with(
        self,
        addr: impl ToSocketAddrs,
        handler: listen::Handler,
    ) -> io::Result<Server> {
        let addrs = self.check_addrs(addr)?;
        listen::start(&addrs, self, handler)
    }

    fn check_addrs(&self, addr: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad address: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "address resolved to nothing",
            ));
        }
        if !self.allow_remote {
            if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "refusing to listen on non-loopback address {a}: use ServerBuilder::allow_remote(true), ideally with a bearer_token"
                    ),
                ));
            }
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_opt_in() {
        let e = ServerBuilder::new().check_addrs("0.0.0.0:0").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("allow_remote"), "{e}");
        assert!(ServerBuilder::new().check_addrs("127.0.0.1:0").is_ok());
        assert!(ServerBuilder::new().check_addrs("[::1]:0").is_ok());
        assert!(ServerBuilder::new()
            .allow_remote(true)
            .check_addrs("0.0.0.0:0")
            .is_ok());
    }

    #[test]
    fn error_response_is_one_line() {
        let r = Response::error(400, "bad\nthing\r");
        assert_eq!(r.body, b"bad thing \n");
        assert_eq!(r.content_type, TEXT);
    }

    #[test]
    fn router_knows_every_route() {
        for p in ROUTES {
            let r = route(p, "min_age=banana");
            if p == "/" {
                assert_eq!(r.status, 200);
            } else {
                assert_eq!(r.status, 400, "{p}");
            }
        }
        assert_eq!(route("/debug/pprof/heap.svgx", "").status, 404);
    }

    #[test]
    fn builder_debug_hides_token() {
        let b = ServerBuilder::new().bearer_token("hunter2");
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
