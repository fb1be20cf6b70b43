//! The `/` page: an HTML index linking every route, with the snapshot's
//! one-line summary.

use std::fmt::Write as _;

use crate::listener::{Response, HTML};

/// `/`: an HTML index linking every route.
pub fn index() -> Response {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>leakscope</title></head><body>\n<h1>leakscope</h1>\n<ul>\n",
    );
    let items: [(&str, &str); 11] = [
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
        ("/debug/memory", "where the memory is: RSS by part"),
        ("/debug/memory.json", "where the memory is, JSON"),
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
