//! The routing table of the debug server and its handlers: each route is a
//! plain function from a raw query string to a [`Response`], so an
//! application with its own HTTP server can mount them one by one.

#[cfg(feature = "flamegraph")]
use crate::listener::SVG;
use crate::listener::{Response, JSON, OCTET_STREAM, TEXT};
use crate::SnapshotOptions;

use super::index::index;
use super::query::Query;

/// What answers one route: the raw query string in, the response out.
type RouteHandler = fn(&str) -> Response;

/// The routing table: every route of the debug server with its handler, in
/// the order the module docs list them.
pub(crate) const ROUTES: [(&str, RouteHandler); 9] = [
    ("/", |_| index()),
    ("/metrics", metrics),
    ("/debug/pprof/heap", pprof_heap),
    ("/debug/pprof/allocs", pprof_allocs),
    ("/debug/pprof/heap.svg", heap_svg),
    ("/debug/leaks", leaks),
    ("/debug/leaks.json", leaks_json),
    ("/debug/memory", memory),
    ("/debug/memory.json", memory_json),
];

/// Dispatches a request by path to the handler of that route: the whole
/// debug server as one function. Unknown paths get a `404`.
///
/// `query` is the raw query string without the `?` (may be empty).
///
/// Statuses: `200`; `400` with a one-line reason for a bad query (every
/// route but `/`, which ignores its query), including a `since`/`until`
/// mark that is not set and a self-contradictory time window; `404` for an unknown path;
/// `500` should a rendering fail, `501` for the flame graph without the
/// `flamegraph` feature. It never panics on any path or query (fuzzed:
/// `fuzz/fuzz_targets/route.rs`).
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
    match ROUTES.iter().find(|(p, _)| *p == path) {
        Some((_, handler)) => handler(query),
        None => Response::error(404, "not found (the routes are listed at /)"),
    }
}

fn parse(query: &str) -> Result<Query, Response> {
    Query::parse(query).map_err(|e| Response::error(400, &e.to_string()))
}

/// A query and the snapshot options of its time window, the marks it
/// names resolved: a `400` for a mark that is not set, or a
/// self-contradictory window.
fn parse_window(query: &str) -> Result<(Query, SnapshotOptions), Response> {
    let q = parse(query)?;
    let bad = |e: String| Response::error(400, &e);
    let mark = |name: &Option<String>| {
        name.as_deref()
            .map(crate::marks::find)
            .transpose()
            .map_err(|e| bad(e.to_string()))
    };
    let opts = SnapshotOptions {
        min_age: q.min_age,
        max_age: q.max_age,
        since: mark(&q.since)?,
        until: mark(&q.until)?,
        ..SnapshotOptions::new()
    };
    opts.check().map_err(|e| bad(e.to_string()))?;
    Ok((q, opts))
}

/// `/metrics`: every leakscope metric in the Prometheus text format.
///
/// Read from maintained state, not a full snapshot (see
/// `crate::alloc::heap_metrics`): no walk of the live samples, no
/// symbolization of known stacks; the work is leakscope's memory, only the
/// body the caller's.
pub fn metrics(query: &str) -> Response {
    if let Err(r) = parse(query) {
        return r;
    }
    Response::ok(
        crate::prometheus::CONTENT_TYPE,
        crate::prometheus::render_metrics(&crate::prometheus::Limits::default()),
    )
}

/// `/debug/pprof/heap`: the heap profile (gzipped `profile.proto`, as Go's
/// `/debug/pprof/heap`); `debug=1` for text, `min_age` for the leak view.
///
/// A full read of the live samples (ages are per sample), but no
/// snapshot: known stacks' frames come from the per-stack cache, not the
/// symbolizer (see `crate::pprof::profile_now`); the work is leakscope's
/// memory.
pub fn pprof_heap(query: &str) -> Response {
    profile(query, false)
}

/// `/debug/pprof/allocs`: like [`pprof_heap`] with the all-time allocation
/// samples as the default sample type (Go's `/debug/pprof/allocs`).
pub fn pprof_allocs(query: &str) -> Response {
    profile(query, true)
}

fn profile(query: &str, allocs: bool) -> Response {
    let (q, w) = match parse_window(query) {
        Ok(qw) => qw,
        Err(r) => return r,
    };
    let opts = crate::pprof::ProfileOptions {
        min_age: w.min_age,
        max_age: w.max_age,
        since: w.since.clone(),
        until: w.until.clone(),
        ..if allocs {
            crate::pprof::ProfileOptions::allocs()
        } else {
            crate::pprof::ProfileOptions::heap()
        }
    };
    // The snapshot and the encoding are leakscope's memory; only the body
    // is the caller's.
    let body = crate::alloc::as_metadata(|| {
        if q.debug {
            crate::pprof::text(&crate::snapshot_with(&w), &opts).into_bytes()
        } else {
            // No snapshot: frames are read from the per-stack cache.
            crate::pprof::profile_now(&opts)
        }
    });
    if q.debug {
        return Response::ok(TEXT, body);
    }
    let name = if allocs { "allocs" } else { "heap" };
    Response::ok(OCTET_STREAM, body).with_header(
        "content-disposition",
        format!("attachment; filename=\"{name}\""),
    )
}

/// `/debug/pprof/heap.svg`: a flame graph of the live sampled heap (needs
/// the `flamegraph` feature; `501` without it).
///
/// Heavy: a full snapshot (every live sample copied, every stack's frames
/// symbolized) and a flame graph; not for frequent scraping.
pub fn heap_svg(query: &str) -> Response {
    let w = match parse_window(query) {
        Ok((_, w)) => w,
        Err(r) => return r,
    };
    #[cfg(feature = "flamegraph")]
    {
        match crate::flamegraph::heap_svg(&crate::snapshot_with(&w)) {
            Ok(svg) => Response::ok(SVG, svg),
            Err(e) => Response::error(500, &format!("flame graph failed: {e}")),
        }
    }
    #[cfg(not(feature = "flamegraph"))]
    {
        let _ = w;
        Response::error(501, "built without the flamegraph feature")
    }
}

/// `/debug/leaks`: the text leak report ([`Snapshot`](crate::Snapshot)'s `Display`).
pub fn leaks(query: &str) -> Response {
    match parse_window(query) {
        Ok((_, w)) => Response::ok(TEXT, crate::snapshot_with(&w).to_string()),
        Err(r) => r,
    }
}

/// `/debug/leaks.json`: the whole [`Snapshot`](crate::Snapshot) as JSON.
///
/// Heavy: a full snapshot and a body of every site with all its frames
/// (megabytes on a big service); not for frequent scraping.
pub fn leaks_json(query: &str) -> Response {
    let w = match parse_window(query) {
        Ok((_, w)) => w,
        Err(r) => return r,
    };
    match serde_json::to_vec_pretty(&crate::snapshot_with(&w)) {
        Ok(mut body) => {
            body.push(b'\n');
            Response::ok(JSON, body)
        }
        Err(e) => Response::error(500, &format!("json encoding failed: {e}")),
    }
}

/// `/debug/memory`: the process's memory from RSS down
/// ([`crate::memory()`]'s `Display`). Cheap: no snapshot, no
/// symbolization.
pub fn memory(query: &str) -> Response {
    match parse(query) {
        Ok(_) => Response::ok(
            TEXT,
            crate::alloc::as_metadata(|| crate::memory().to_string()),
        ),
        Err(r) => r,
    }
}

/// `/debug/memory.json`: [`crate::memory()`] as JSON.
pub fn memory_json(query: &str) -> Response {
    if let Err(r) = parse(query) {
        return r;
    }
    match serde_json::to_vec_pretty(&crate::memory()) {
        Ok(mut body) => {
            body.push(b'\n');
            Response::ok(JSON, body)
        }
        Err(e) => Response::error(500, &format!("json encoding failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_knows_every_route() {
        for (p, _) in ROUTES {
            let r = route(p, "min_age=banana");
            if p == "/" {
                assert_eq!(r.status, 200);
            } else {
                assert_eq!(r.status, 400, "{p}");
            }
        }
        assert_eq!(route("/debug/pprof/heap.svgx", "").status, 404);
    }
}
