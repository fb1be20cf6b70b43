//! Flame graphs (SVG) of the sampled heap, rendered with [`inferno`].
//!
//! [`heap_svg`] draws estimated in-use bytes by allocation stack from the
//! same [`Snapshot`] data as the pprof profiles: the callers at the bottom,
//! the allocating function on top, widths proportional to live bytes.
//! Inlined functions appear as frames of their own.
//!
//! Needs the `flamegraph` feature (on by default).
//!
//! [`inferno`]: https://docs.rs/inferno

use core::fmt;
use std::fmt::Write as _;

use crate::format::fmt_bytes;
use crate::snapshot::Snapshot;

/// Why a flame graph could not be rendered.
#[derive(Debug)]
pub struct Error {
    source: std::io::Error,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot render the flame graph: {}", self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The folded-stack lines (`outer;...;inner bytes`) of a snapshot's live
/// heap, one per sampled stack with live bytes; the input format of
/// `inferno` and Brendan Gregg's `flamegraph.pl`.
///
/// `;` inside a function name (array types such as `[u8; 32]`) becomes `:`
/// so it does not split the frame.
pub fn folded(snapshot: &Snapshot) -> Vec<String> {
    let mut lines = Vec::with_capacity(snapshot.heap.sites.len());
    for site in &snapshot.heap.sites {
        if site.live_bytes == 0 {
            continue;
        }
        let mut line = String::new();
        for (i, f) in site.frames.iter().rev().enumerate() {
            if i > 0 {
                line.push(';');
            }
            line.extend(f.function.chars().map(|c| match c {
                ';' => ':',
                '\n' | '\r' => ' ',
                c => c,
            }));
        }
        if site.frames.is_empty() {
            line.push_str("[unknown stack]");
        }
        // Writing into a String cannot fail.
        let _ = write!(line, " {}", site.live_bytes);
        lines.push(line);
    }
    lines
}

/// An SVG flame graph of estimated in-use bytes by allocation stack.
///
/// A heap with no live samples gives a small SVG that says so.
///
/// # Errors
///
/// When `inferno` fails to render (it reports malformed input as an I/O
/// error); the stacks leakscope produces are well-formed.
///
/// # Examples
///
/// ```
/// let svg = leakscope::flamegraph::heap_svg(&leakscope::snapshot()).unwrap();
/// assert!(svg.starts_with(b"<?xml"));
/// ```
pub fn heap_svg(snapshot: &Snapshot) -> Result<Vec<u8>, Error> {
    let lines = folded(snapshot);
    let title = format!(
        "leakscope: in-use heap, {} live (exact), sampled every ~{} bytes",
        fmt_bytes(snapshot.heap.live_bytes),
        snapshot.heap.sample_rate
    );
    // A filtered view says so (the time window and what it kept).
    let subtitle = snapshot.heap.filter.as_ref().map(ToString::to_string);
    if lines.is_empty() {
        return Ok(empty_svg(&title, subtitle.as_deref()));
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title;
    opts.subtitle = subtitle;
    opts.count_name = "bytes".to_owned();
    opts.colors =
        inferno::flamegraph::Palette::Basic(inferno::flamegraph::color::BasicPalette::Mem);
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut out)
        .map_err(|source| Error { source })?;
    Ok(out)
}

fn empty_svg(title: &str, subtitle: Option<&str>) -> Vec<u8> {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"1200\" height=\"80\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <text x=\"600\" y=\"24\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"17\">{}</text>\n\
         <text x=\"600\" y=\"44\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"12\">{}</text>\n\
         <text x=\"600\" y=\"64\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"12\">no sampled allocation is live</text>\n\
         </svg>\n",
        esc(title),
        esc(subtitle.unwrap_or(""))
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Frame, HeapSite};

    #[test]
    fn folded_lines_are_outermost_first_and_escape_semicolons() {
        let mut snap = Snapshot::default();
        snap.heap.sites.push(HeapSite {
            frames: vec![
                Frame::new("alloc_buf<[u8; 32]>", None, None),
                Frame::new("main", None, None),
            ],
            live_bytes: 4096,
            ..Default::default()
        });
        snap.heap.sites.push(HeapSite {
            frames: vec![Frame::new("freed_only", None, None)],
            live_bytes: 0,
            allocated_bytes: 10,
            ..Default::default()
        });
        assert_eq!(
            folded(&snap),
            vec!["main;alloc_buf<[u8: 32]> 4096".to_owned()]
        );
    }

    #[test]
    fn empty_heap_gives_a_valid_svg() {
        let svg = String::from_utf8(heap_svg(&Snapshot::default()).unwrap()).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.contains("no sampled allocation is live"));
    }

    /// A time-filtered graph states its window, empty or not.
    #[test]
    fn a_filtered_graph_says_so() {
        let mut snap = Snapshot::default();
        snap.heap.filter = Some(crate::snapshot::HeapFilter {
            min_age: Some(core::time::Duration::from_secs(600)),
            youngest: Some(core::time::Duration::from_secs(600)),
            kept_bytes: 4096,
            total_bytes: 8192,
            ..Default::default()
        });
        let empty = String::from_utf8(heap_svg(&snap).unwrap()).unwrap();
        assert!(empty.contains("min_age=10m"), "{empty}");
        snap.heap.sites.push(HeapSite {
            frames: vec![Frame::new("main", None, None)],
            live_bytes: 4096,
            ..Default::default()
        });
        let svg = String::from_utf8(heap_svg(&snap).unwrap()).unwrap();
        assert!(svg.contains("min_age=10m"), "{svg}");
        assert!(svg.contains("4.0 KiB of 8.0 KiB"), "{svg}");
        let unfiltered = Snapshot {
            heap: crate::snapshot::HeapSnapshot {
                filter: None,
                ..snap.heap.clone()
            },
            ..snap.clone()
        };
        let plain = String::from_utf8(heap_svg(&unfiltered).unwrap()).unwrap();
        assert!(!plain.contains("min_age"), "{plain}");
    }
}
