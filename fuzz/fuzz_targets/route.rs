//! The request-head path: the `Host` check, then `server::route` with an
//! arbitrary path and query. Never panics, and answers only the documented
//! statuses: `200`, `400` (bad query or unknown mark, one line), `404`
//! (unknown path).

#![no_main]

use arbitrary::Arbitrary;
use leakscope::server::{self, Query};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Head {
    host: String,
    path: String,
    query: String,
    /// Use a known route instead of `path` (most paths are 404s otherwise).
    known: Option<u8>,
}

const ROUTES: [&str; 9] = [
    "/",
    "/metrics",
    "/debug/pprof/heap",
    "/debug/pprof/allocs",
    "/debug/pprof/heap.svg",
    "/debug/leaks",
    "/debug/leaks.json",
    "/debug/memory",
    "/debug/memory.json",
];

fuzz_target!(|h: Head| {
    let allowed = server::__fuzz::host_allowed(&h.host);
    if allowed {
        // Only loopback names and IP literals: never a name with a dot
        // that does not end in `.localhost` (optionally with `.`/port).
        let name = h.host.rsplit_once(':').map_or(h.host.as_str(), |(n, _)| n);
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        assert!(
            h.host.starts_with('[')
                || name == "localhost"
                || name.ends_with(".localhost")
                || name.parse::<std::net::Ipv4Addr>().is_ok(),
            "{:?} allowed",
            h.host
        );
    }
    let path = match h.known {
        Some(i) => ROUTES[usize::from(i) % ROUTES.len()],
        None => h.path.as_str(),
    };
    let r = server::route(path, &h.query);
    let known = ROUTES.contains(&path);
    // The heap routes take a time window; one naming a mark is refused
    // there, since no mark is set here. `/metrics` and `/debug/memory` take
    // no window: they check the query's syntax and ignore the rest.
    let windowed = path.starts_with("/debug/pprof/") || path.starts_with("/debug/leaks");
    let bad_query = Query::parse(&h.query)
        .map_or(true, |q| windowed && (q.since.is_some() || q.until.is_some()));
    let want = match (known, path == "/", bad_query) {
        (false, _, _) => 404,
        (true, true, _) => 200,
        (true, false, true) => 400,
        (true, false, false) => 200,
    };
    assert_eq!(r.status, want, "{path:?}?{:?}", h.query);
    if r.status != 200 {
        let body = std::str::from_utf8(&r.body).expect("error bodies are text");
        assert!(body.ends_with('\n') && body.lines().count() == 1, "{body:?}");
    }
});
