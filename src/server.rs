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
//! | `/debug/leaks` | the text leak report (`?min_age=`, `?max_age=`, `?since=`, `?until=` filter the heap part) |
//! | `/debug/leaks.json` | the whole [`Snapshot`](crate::Snapshot) as JSON |
//! | `/debug/memory` | where the memory is: RSS by part ([`crate::memory()`]) |
//! | `/debug/memory.json` | the same as JSON |
//!
//! `min_age` takes Go-style durations (`90s`, `1h30m`, `250ms`, `1.5h`) or
//! plain seconds (`3600`); `debug` takes `0` or `1`.
//!
//! The heap routes (profiles, flame graph, leak report and JSON) take a time
//! window over the live heap: `min_age` (at least this old), `max_age` (at
//! most this old; `min_age=10m&max_age=1h` is the live memory born between
//! an hour and ten minutes ago), `since=<mark>` (born at or after a
//! [mark](crate::mark)) and `until=<mark>` (born before it), intersected
//! when combined. A filtered view says so (the report's `filter:` line, the
//! JSON's `heap.filter`, the profile's comments and `debug=1` header). The
//! window is refused (`400`) when `min_age` is above `max_age`, when a
//! mark is not set (the message lists the marks that are), or when the
//! `since` mark was set after the `until` mark. `/` lists the marks. A bad value is a `400`
//! with a one-line reason; unknown parameters are ignored, as Go does, except
//! `seconds` (delta profiles), which is refused rather than ignored.
//!
//! # Safe by default
//!
//! - [`serve`] only binds loopback addresses; listening elsewhere takes an
//!   explicit [`ServerBuilder::allow_remote`], best with a
//!   [`ServerBuilder::bearer_token`] (`Authorization: Bearer <token>`,
//!   the scheme matched case-insensitively, the token compared in constant
//!   time; `401` otherwise).
//! - Against DNS rebinding (a web page on the same machine pointing its own
//!   name at `127.0.0.1`), a server without `allow_remote` answers only
//!   requests whose `Host` is `localhost`, a name under `.localhost`, or an
//!   IP literal (`127.0.0.1`, `[::1]`), each with an optional port; any
//!   other `Host` gets `403` with a one-line reason. Behind a reverse proxy
//!   that forwards its own `Host`, use `allow_remote(true)`.
//! - Request heads are capped at 16 KiB (`431`) and 64 headers, must arrive
//!   within [`ServerBuilder::header_timeout`] (default 5 s), and each request
//!   is answered within [`ServerBuilder::request_timeout`] (default 30 s) or
//!   the connection is closed; a timeout too large for the clock (up to
//!   `Duration::MAX`) means none. Request bodies are refused (`413`); only `GET`
//!   and `HEAD` are served (`405`). One request per connection.
//! - At most [`ServerBuilder::max_connections`] (default 64) connections at
//!   once. At the cap, a connection that has sent nothing or only part of a
//!   request head (and is older than 200 ms) is closed to admit the new one,
//!   so idle and trickling clients never lock Prometheus out; when every
//!   connection has a request in flight, the new one gets a `503` after
//!   waiting up to 500 ms for a slot. At most
//!   [`ServerBuilder::workers`] (default 2) handlers run at once, on their
//!   own threads, so a flood of scrapes costs the application at most that
//!   many cores.
//! - Response bodies waiting for slow or non-reading clients hold at most
//!   [`ServerBuilder::response_budget`] (default 64 MiB) together; past it,
//!   `503` with `Retry-After` (bodies up to 256 KiB, like `/metrics`, are
//!   never refused). [`Server::stats`] counts evictions and refusals.
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
//! # Where things are
//!
//! `server/routes.rs` holds the routing table and the handlers,
//! `server/index.rs` the HTML index, `server/query.rs` the query strings.
//! The listener itself (limits, workers, timeouts) is the crate-private
//! `listener` module, which `prometheus::install` serves through as well.
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

use std::io;
use std::net::ToSocketAddrs;

mod index;
mod query;
mod routes;

pub use crate::listener::{Response, Server, ServerBuilder, ServerStats};
pub use index::index;
pub use query::{parse_duration, Query, QueryError};
pub use routes::{heap_svg, leaks, leaks_json, metrics, pprof_allocs, pprof_heap, route};
pub use routes::{memory, memory_json};

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

impl ServerBuilder {
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
}

/// Entry points for the fuzz targets in `fuzz/` (not part of the API).
#[doc(hidden)]
pub mod __fuzz {
    /// Whether a loopback-only server accepts this `Host` value (the DNS
    /// rebinding check).
    pub fn host_allowed(host: &str) -> bool {
        crate::listener::host::host_allowed(host)
    }
}
