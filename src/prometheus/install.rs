//! `prometheus::install`: the exporter's recorder as the global recorder,
//! served with leakscope's exact families by a hardened listener.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::{render_with, Limits, CONTENT_TYPE};
use crate::listener::{Response, Server, ServerBuilder};

/// Why [`install`] failed.
#[derive(Debug)]
pub struct InstallError {
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    /// A global `metrics` recorder was already installed.
    RecorderInstalled,
    /// The listener could not start (bad address, port in use, ...).
    Io(io::Error),
}

impl InstallError {
    /// `true` when a global `metrics` recorder was installed already (by
    /// the application or an earlier `install`).
    pub fn is_recorder_installed(&self) -> bool {
        matches!(self.kind, ErrorKind::RecorderInstalled)
    }

    /// The I/O error of the listener, if that is what failed.
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            ErrorKind::RecorderInstalled => None,
        }
    }
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::RecorderInstalled => {
                f.write_str("a global metrics recorder is already installed")
            }
            ErrorKind::Io(e) => write!(f, "cannot start the metrics listener: {e}"),
        }
    }
}

impl std::error::Error for InstallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            ErrorKind::RecorderInstalled => None,
        }
    }
}

/// Installs the Prometheus exporter and serves `/metrics` on `addr` (a
/// loopback address; see [`InstallBuilder`] for the rest), refreshing
/// leakscope's values every 5 seconds.
///
/// `metrics-exporter-prometheus`' recorder becomes the global `metrics`
/// recorder, so the application's own `counter!`/`gauge!`/`histogram!`
/// calls land in it; `/metrics` serves its rendering followed by every
/// leakscope metric, histograms exact. Do not also call
/// [`publish`](super::publish) (the names would appear twice).
///
/// The listener is the debug server's (same limits); the exporter's own
/// listener is not used because it cannot append exact histograms.
///
/// # Errors
///
/// [`InstallError::is_recorder_installed`] when a global recorder exists
/// already (nothing is started then); an I/O error when the listener
/// cannot start. Never panics.
///
/// # Examples
///
/// ```no_run
/// let metrics = leakscope::prometheus::install("127.0.0.1:9187")?;
/// println!("scrape http://{}/metrics", metrics.local_addr());
/// # Ok::<(), leakscope::prometheus::InstallError>(())
/// ```
pub fn install(addr: impl ToSocketAddrs) -> Result<Installed, InstallError> {
    InstallBuilder::new().install(addr)
}

/// Options of [`install`].
#[derive(Debug, Clone)]
#[must_use]
pub struct InstallBuilder {
    interval: Duration,
    limits: Limits,
    server: ServerBuilder,
}

impl Default for InstallBuilder {
    fn default() -> Self {
        InstallBuilder {
            interval: Duration::from_secs(5),
            limits: Limits::default(),
            server: ServerBuilder::new(),
        }
    }
}

impl InstallBuilder {
    /// Defaults: every 5 s, default [`Limits`], default [`ServerBuilder`].
    pub fn new() -> Self {
        Self::default()
    }

    /// How often leakscope's values are refreshed (at least 10 ms).
    pub fn interval(mut self, every: Duration) -> Self {
        self.interval = every.max(Duration::from_millis(10));
        self
    }

    /// Cardinality limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Listener options (remote access, bearer token, timeouts).
    pub fn server(mut self, server: ServerBuilder) -> Self {
        self.server = server;
        self
    }

    /// Installs (see [`install`]).
    ///
    /// # Errors
    ///
    /// See [`install`].
    pub fn install(self, addr: impl ToSocketAddrs) -> Result<Installed, InstallError> {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let shared = Arc::new(Fresh {
            text: Mutex::new(String::new()),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        shared.refresh(&handle, &self.limits);

        let (h, s) = (handle.clone(), shared.clone());
        let server = self
            .server
            .serve_with(
                addr,
                Arc::new(move |path: &str, _query: &str| -> Response {
                    match path {
                        "/metrics" => {
                            let mut body = h.render();
                            body.push_str(&s.text.lock().unwrap_or_else(PoisonError::into_inner));
                            Response::ok(CONTENT_TYPE, body)
                        }
                        _ => Response::error(404, "not found (metrics are at /metrics)"),
                    }
                }),
            )
            .map_err(|e| InstallError {
                kind: ErrorKind::Io(e),
            })?;

        if metrics::set_global_recorder(recorder).is_err() {
            server.shutdown();
            return Err(InstallError {
                kind: ErrorKind::RecorderInstalled,
            });
        }

        let (h, s, limits, every) = (handle.clone(), shared.clone(), self.limits, self.interval);
        let publisher = std::thread::Builder::new()
            .name("leakscope-metrics".into())
            .spawn(move || loop {
                let stop = s.stop.lock().unwrap_or_else(PoisonError::into_inner);
                let (stop, _) = s
                    .wake
                    .wait_timeout_while(stop, every, |stop| !*stop)
                    .unwrap_or_else(PoisonError::into_inner);
                if *stop {
                    return;
                }
                drop(stop);
                s.refresh(&h, &limits);
            })
            .map_err(|e| InstallError {
                kind: ErrorKind::Io(e),
            })?;
        Ok(Installed {
            handle,
            addr: server.local_addr(),
            server: Some(server),
            shared,
            publisher: Some(publisher),
        })
    }
}

/// What the publisher thread and the listener share.
struct Fresh {
    /// leakscope's families, rendered at the last refresh.
    text: Mutex<String>,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Fresh {
    fn refresh(&self, handle: &PrometheusHandle, limits: &Limits) {
        // The light snapshot (maintained state), as the debug server's
        // `/metrics`; all of it leakscope's memory but the text.
        let text =
            crate::alloc::as_metadata(|| render_with(&crate::snapshot::metrics_snapshot(), limits));
        *self.text.lock().unwrap_or_else(PoisonError::into_inner) = text;
        handle.run_upkeep();
    }
}

/// The installed exporter (see [`install`]).
///
/// Dropping it leaves the listener and the publisher running for the rest
/// of the process (the recorder is global and stays installed);
/// [`Installed::shutdown`] stops both.
pub struct Installed {
    handle: PrometheusHandle,
    addr: SocketAddr,
    server: Option<Server>,
    shared: Arc<Fresh>,
    publisher: Option<JoinHandle<()>>,
}

impl fmt::Debug for Installed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Installed")
            .field("local_addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Installed {
    /// The listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The exporter's handle (renders the application's metrics alone).
    pub fn handle(&self) -> &PrometheusHandle {
        &self.handle
    }

    /// Stops the listener and the publisher thread. The recorder stays
    /// installed (the `metrics` facade cannot uninstall one).
    pub fn shutdown(mut self) {
        *self
            .shared
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        if let Some(p) = self.publisher.take() {
            let _ = p.join();
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.detach();
        }
    }
}
