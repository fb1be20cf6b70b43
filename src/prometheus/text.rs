//! The Prometheus text exposition format (version 0.0.4): [`render`] writes
//! every family of the model, histograms exact (`_bucket` with cumulative
//! `le`, `_sum`, `_count`).

use std::fmt::Write as _;

use crate::histogram::BOUNDS_NS;
use crate::snapshot::Snapshot;

use super::build::{build, with_state};
use super::model::{Family, Kind, Labels, Value};
use super::Limits;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every leakscope metric of `snap` in the Prometheus text format
/// (version 0.0.4, [`CONTENT_TYPE`]), with the default [`Limits`].
///
/// Every family has `# HELP` and `# TYPE` lines; the histograms are exact.
///
/// # Examples
///
/// ```
/// let text = leakscope::prometheus::render(&leakscope::snapshot());
/// assert!(text.contains("leakscope_heap_allocations_total "));
/// ```
pub fn render(snap: &Snapshot) -> String {
    render_with(snap, &Limits::default())
}

/// Like [`render`], with explicit [`Limits`].
///
/// The work runs as leakscope's metadata (under its re-entrancy guard):
/// only the returned text is the caller's memory.
pub fn render_with(snap: &Snapshot, limits: &Limits) -> String {
    crate::alloc::as_metadata(|| {
        let fams = with_state(|st| build(snap, limits, st));
        let mut out = String::with_capacity(4096);
        for f in &fams {
            write_family(&mut out, f);
        }
        out
    })
}

/// `/metrics`' text: [`render`] of the light snapshot (maintained state,
/// see [`crate::snapshot::HeapDetail::Metrics`]), all of the work as
/// leakscope's metadata, only the returned text the caller's.
#[cfg(feature = "http")]
pub(crate) fn render_metrics(limits: &Limits) -> String {
    crate::alloc::as_metadata(|| render_with(&crate::snapshot::metrics_snapshot(), limits))
}

/// Renders `/metrics` from a full snapshot and from the light one, back to
/// back under one guard with nothing else in between, each into a buffer
/// reserved before either runs (so both read the same metadata bytes).
/// For the test that they are identical.
pub(crate) fn render_both_paths() -> (String, String) {
    crate::alloc::as_metadata(|| {
        let limits = Limits::default();
        let mut full = String::with_capacity(1 << 20);
        let mut light = String::with_capacity(1 << 20);
        // RSS moves between two reads: both render one reading, taken
        // first (so it is held alike while each reads the metadata bytes).
        let memory = crate::memory();
        {
            let mut full_snap = crate::snapshot();
            full_snap.memory = Some(memory.clone());
            full.push_str(&render_with(&full_snap, &limits));
        }
        let mut light_snap = crate::snapshot::metrics_snapshot();
        light_snap.memory = Some(memory);
        light.push_str(&render_with(&light_snap, &limits));
        (full, light)
    })
}

pub(super) fn write_family(out: &mut String, f: &Family) {
    let ty = match f.kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    };
    let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
    let _ = writeln!(out, "# TYPE {} {ty}", f.name);
    for s in &f.samples {
        match &s.value {
            Value::Int(v) => {
                write_series(out, f.name, "", &s.labels, None);
                let _ = writeln!(out, " {v}");
            }
            Value::Float(v) => {
                write_series(out, f.name, "", &s.labels, None);
                let _ = writeln!(out, " {}", fmt_f64(*v));
            }
            Value::Hist(h) => {
                let cum = h.cumulative();
                for (i, c) in cum.iter().enumerate() {
                    let le = le_label(i);
                    write_series(out, f.name, "_bucket", &s.labels, Some(&le));
                    let _ = writeln!(out, " {c}");
                }
                write_series(out, f.name, "_sum", &s.labels, None);
                let _ = writeln!(out, " {}", fmt_f64(h.sum_seconds));
                write_series(out, f.name, "_count", &s.labels, None);
                let _ = writeln!(out, " {}", cum.last().copied().unwrap_or(0));
            }
        }
    }
}

/// The `le` label of bucket `i`: the bound in seconds, or `+Inf`.
pub(super) fn le_label(i: usize) -> String {
    match BOUNDS_NS.get(i) {
        Some(&ns) => fmt_f64(ns as f64 / 1e9),
        None => "+Inf".to_string(),
    }
}

fn write_series(out: &mut String, name: &str, suffix: &str, labels: &Labels, le: Option<&str>) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(le.map(|l| ("le", l)))
    {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label_into(out, v);
        out.push('"');
    }
    out.push('}');
}

fn escape_label_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}
