//! The `/` page: an HTML index linking every route, with the snapshot's
//! one-line summary and the marks ([`crate::mark`]) with their ages, each
//! linking the leak report since it.

use std::fmt::Write as _;

use crate::listener::{Response, HTML};

/// `/`: an HTML index linking every route.
pub fn index() -> Response {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>leakscope</title></head><body>\n<h1>leakscope</h1>\n<ul>\n",
    );
    let items: [(&str, &str); 13] = [
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
        (
            "/debug/leaks?min_age=10m&amp;max_age=1h",
            "leak report, heap born between an hour and ten minutes ago",
        ),
        ("/debug/leaks.json", "leak report, JSON"),
        (
            "/debug/pprof/heap?min_age=10m&amp;max_age=1h",
            "heap profile, born between an hour and ten minutes ago",
        ),
        ("/debug/memory", "where the memory is: RSS by part"),
        ("/debug/memory.json", "where the memory is, JSON"),
    ];
    for (href, what) in items {
        let _ = writeln!(html, "<li><a href=\"{href}\">{href}</a>: {what}</li>");
    }
    // The summary line needs the totals and the object sites only: the
    // light read `/metrics` uses, not a walk of every live sample (the
    // index is the page anyone can reload).
    let snap = crate::snapshot::snapshot_with(&crate::SnapshotOptions::metrics());
    let _ = writeln!(html, "</ul>");
    write_marks(&mut html, &crate::marks::marks(), snap.taken_at_ns);
    let _ = writeln!(
        html,
        "<p>{}</p>\n</body></html>",
        html_escape(&snap.summary())
    );
    Response::ok(HTML, html)
}

/// The marks, newest first, each with its age and links to the heap live
/// since it and born before it.
fn write_marks(html: &mut String, marks: &[crate::Mark], now: u64) {
    let dropped = crate::marks::dropped();
    if marks.is_empty() {
        let _ = writeln!(
            html,
            "<p>No marks (<code>leakscope::mark(\"deploy\")</code> sets one; then <code>?since=deploy</code> or <code>?until=deploy</code> on the heap routes).</p>"
        );
        return;
    }
    let _ = writeln!(
        html,
        "<h2>Marks</h2>\n<p>{} of at most {}{}; <code>?since=NAME</code> keeps the live heap born at or after a mark, <code>?until=NAME</code> born before it.</p>\n<ul>",
        marks.len(),
        crate::marks::MAX_MARKS,
        if dropped > 0 {
            format!(", {dropped} older dropped")
        } else {
            String::new()
        }
    );
    for m in marks.iter().rev() {
        let name = html_escape(&m.name);
        let q = url_escape(&m.name);
        let _ = writeln!(
            html,
            "<li>{name}: {} ago: <a href=\"/debug/leaks?since={q}\">since</a>, <a href=\"/debug/leaks?until={q}\">until</a>, <a href=\"/debug/pprof/heap?since={q}\">profile since</a></li>",
            crate::format::fmt_duration(m.age(now))
        );
    }
    let _ = writeln!(html, "</ul>");
}

/// Percent-encodes a mark name for a query string.
fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_names_are_escaped() {
        assert_eq!(url_escape("v1.2+3&x=y"), "v1.2%2B3%26x%3Dy");
        assert_eq!(html_escape("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }
}
