//! The listener's options: address checks (loopback unless told
//! otherwise), bearer token, connection and worker caps, timeouts.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::{Handler, Server};

/// Options of the listener (the debug server's, and `prometheus::install`'s);
/// [`serve`](crate::server::serve) uses the defaults.
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
    pub(crate) response_budget: usize,
    /// Test hook: `start` fails once the runtime is built.
    #[cfg(test)]
    pub(crate) fail_after_runtime: bool,
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
            .field("response_budget", &self.response_budget)
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
            response_budget: 64 << 20,
            #[cfg(test)]
            fail_after_runtime: false,
        }
    }
}

impl ServerBuilder {
    /// The defaults: loopback only, no token, 64 connections, 2 workers,
    /// 5 s to send the request head, 30 s per request, 64 MiB of responses
    /// in flight.
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

    /// Most connections open at once (at least 1). At the cap, a connection
    /// without a request in flight (nothing or part of a head sent, for at
    /// least 200 ms) is closed to admit the next one; if every connection
    /// has a request in flight, the next one gets `503`.
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
    /// A duration too large for the clock (e.g. `Duration::MAX`) means no
    /// timeout.
    pub fn header_timeout(mut self, d: Duration) -> Self {
        self.header_timeout = d.max(Duration::from_millis(1));
        self
    }

    /// How long a whole request may take, head to last byte of the response
    /// (at least 1 ms); the connection is closed after that. A duration too
    /// large for the clock (e.g. `Duration::MAX`) means no timeout.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d.max(Duration::from_millis(1));
        self
    }

    /// Most bytes of response bodies held in the process at once, rendered
    /// but not yet written to their clients (default 64 MiB). A response
    /// that would go over gets `503` with `Retry-After` instead (counted in
    /// [`ServerStats::over_budget`](super::ServerStats::over_budget)).
    /// Bodies up to 256 KiB (`/metrics`, errors) are never refused, and a
    /// body larger than the whole budget is served when nothing else is
    /// held.
    pub fn response_budget(mut self, bytes: usize) -> Self {
        self.response_budget = bytes;
        self
    }

    /// Starts a server on `addr` that answers every request with `handler`.
    pub(crate) fn serve_with(
        self,
        addr: impl ToSocketAddrs,
        handler: Handler,
    ) -> io::Result<Server> {
        let addrs = self.check_addrs(addr)?;
        super::start(&addrs, self, handler)
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
    fn builder_debug_hides_token() {
        let b = ServerBuilder::new().bearer_token("hunter2");
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
