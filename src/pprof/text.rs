//! The Go-like `?debug=1` text form of a heap profile: the same parts as
//! the protobuf, one record per stack, largest in-use bytes first.

use std::fmt::Write as _;

use crate::snapshot::{HeapSite, HeapSnapshot, Snapshot};

use super::values::{site_parts, Values};
use super::{Filter, ProfileOptions};

/// A Go-like `?debug=1` text form of the heap profile.
///
/// The header and records read as Go's (`inuse_objects: inuse_bytes
/// [alloc_objects: alloc_bytes] @ addresses`, then `#` lines with each
/// frame), largest in-use bytes first, with one `# age <= X: objects: bytes`
/// line per age bucket, and leakscope's exact totals at the end. Values are
/// the already-scaled estimates; the header says `heap/2` (a rate of 1) so
/// pprof's legacy text parser does not scale them again.
pub fn text(snapshot: &Snapshot, opts: &ProfileOptions) -> String {
    let heap = &snapshot.heap;
    let filter = Filter::new(heap, opts, snapshot.taken_at_ns);
    let mut parts = Vec::new();
    let mut live = (0u64, 0u64);
    // (summed values, (bucket, in-use objects, in-use bytes) per age, site)
    type Record<'a> = (Values, Vec<(usize, u64, u64)>, &'a HeapSite);
    let mut records: Vec<Record<'_>> = Vec::new();
    for site in &heap.sites {
        site_parts(site, filter.bounds, &mut parts);
        live = (
            live.0.saturating_add(site.live_objects),
            live.1.saturating_add(site.live_bytes),
        );
        if parts.is_empty() {
            continue;
        }
        let mut sum = Values::default();
        let mut ages = Vec::new();
        for p in &parts {
            sum.add(p.values);
            if let Some(i) = p.bucket {
                ages.push((i, p.values.inuse_objects, p.values.inuse_bytes));
            }
        }
        records.push((sum, ages, site));
    }
    records.sort_by(|a, b| {
        (b.0.inuse_bytes)
            .cmp(&a.0.inuse_bytes)
            .then(b.0.alloc_bytes.cmp(&a.0.alloc_bytes))
    });
    let mut total = Values::default();
    for (sum, _, _) in &records {
        total.add(*sum);
    }

    let mut out = String::new();
    // `write!` into a String cannot fail.
    let _ = writeln!(
        out,
        "heap profile: {}: {} [{}: {}] @ heap/2",
        total.inuse_objects, total.inuse_bytes, total.alloc_objects, total.alloc_bytes
    );
    let _ = writeln!(
        out,
        "# leakscope: unbiased estimates from allocations sampled every ~{} bytes (already scaled)",
        heap.sample_rate,
    );
    // A filtered profile says so, and what it kept.
    if let Some(statement) = filter.statement((total.inuse_objects, total.inuse_bytes), live) {
        let _ = writeln!(out, "# {statement}");
    }
    for (sum, ages, site) in &records {
        let _ = write!(
            out,
            "{}: {} [{}: {}] @",
            sum.inuse_objects, sum.inuse_bytes, sum.alloc_objects, sum.alloc_bytes
        );
        // One address per location: inlined frames share their caller's.
        for f in site.frames.iter().filter(|f| !f.inlined) {
            let _ = write!(out, " {:#x}", f.address);
        }
        out.push('\n');
        for f in &site.frames {
            let _ = writeln!(
                out,
                "#\t{:#x}\t{}\t{}:{}",
                f.address,
                f.function,
                f.file.as_deref().unwrap_or("?"),
                f.line.unwrap_or(0)
            );
        }
        for &(i, objs, bytes) in ages {
            let _ = writeln!(
                out,
                "# age <= {}: {}: {}",
                crate::histogram::bound_label(i),
                objs,
                bytes
            );
        }
        out.push('\n');
    }
    write_stats(&mut out, heap);
    out
}

fn write_stats(out: &mut String, h: &HeapSnapshot) {
    let _ = writeln!(out, "# leakscope.HeapStats (exact)");
    for (name, v) in [
        ("Allocations", h.allocations),
        ("Frees", h.frees),
        ("Reallocs", h.reallocs),
        ("AllocatedBytes", h.allocated_bytes),
        ("FreedBytes", h.freed_bytes),
        ("LiveBytes", h.live_bytes),
        ("LiveAllocations", h.live_allocations),
        ("PeakLiveBytes", h.peak_live_bytes),
        ("SampleRate", h.sample_rate),
        ("Samples", h.samples),
        ("DroppedSamples", h.dropped_samples),
        ("MetadataBytes", h.metadata_bytes),
    ] {
        let _ = writeln!(out, "# {name} = {v}");
    }
}
