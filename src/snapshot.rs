//! Point-in-time views of everything leakscope knows: the heap (exact totals
//! plus sampled sites) and the tracked objects.
//!
//! A [`Snapshot`] is plain data: every exporter (the text report, pprof,
//! Prometheus, JSON, flame graphs) reads only a snapshot, never the live
//! tables. Taking one symbolizes sampled stacks lazily (and caches the
//! result in leakscope's own, untracked metadata memory).
//!
//! Heap numbers come in two kinds:
//! - exact totals ([`HeapStats`] and the counters of [`HeapSnapshot`]), counted on
//!   every allocation and free;
//! - per-site estimates ([`HeapSite`]), scaled up from Poisson samples with
//!   Go's unbiased factor `1 / (1 - exp(-size / rate))`.

use core::fmt;
use core::time::Duration;

use serde::{Serialize, Serializer};

use crate::format::{fmt_bytes, fmt_duration, short_path};
use crate::histogram::Histogram;

/// Exact allocator totals since the process started (or since the tracking
/// allocator was installed). Cheap to read: no symbolization, no sites.
///
/// All fields are exact at a quiet point (no thread allocating); while
/// threads run they are a consistent-enough sum of per-thread counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HeapStats {
    /// Number of allocations (`alloc` and `alloc_zeroed` calls that succeeded).
    pub allocations: u64,
    /// Number of frees (`dealloc` calls).
    pub frees: u64,
    /// Number of successful `realloc` calls (they move bytes, not counts).
    pub reallocs: u64,
    /// Bytes requested by allocations, plus the new size of every realloc.
    pub allocated_bytes: u64,
    /// Bytes released by frees, plus the old size of every realloc.
    pub freed_bytes: u64,
    /// `allocated_bytes - freed_bytes`.
    pub live_bytes: u64,
    /// `allocations - frees`.
    pub live_allocations: u64,
    /// Highest `live_bytes` seen (see ARCHITECTURE.md for its accuracy
    /// bound while many threads allocate).
    pub peak_live_bytes: u64,
    /// The sampling rate in bytes (0 = sampling off, 1 = every allocation).
    pub sample_rate: u64,
    /// Allocations that were sampled (stack captured, tracked while live).
    pub samples: u64,
    /// Sampled allocations that are still live and in the live table.
    pub live_samples: u64,
    /// Samples that could not be recorded because a table was full or the
    /// stack could not be captured: counted, never silently lost.
    pub dropped_samples: u64,
    /// Samples whose stack leakscope's caching unwinder could not walk (a
    /// thread on a foreign stack, all unwind caches busy, a process that
    /// keeps loading libraries), walked by the system unwinder instead,
    /// which costs about 10 times more per sample. Recorded all the same.
    pub system_unwinds: u64,
    /// Bytes of leakscope's own metadata (tables, symbol cache).
    pub metadata_bytes: u64,
}

/// Everything leakscope knows at one instant.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// leakscope's clock ([`crate::clock::now_ns`]) when it was taken.
    pub taken_at_ns: u64,
    /// The heap: exact totals and sampled sites.
    pub heap: HeapSnapshot,
    /// Tracked-object sites (`track!` / `track_arc!`), oldest live first.
    pub objects: Vec<ObjectSite>,
}

/// The heap part of a [`Snapshot`].
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct HeapSnapshot {
    /// Exact: allocations since start.
    pub allocations: u64,
    /// Exact: frees since start.
    pub frees: u64,
    /// Exact: reallocs since start.
    pub reallocs: u64,
    /// Exact: bytes allocated since start.
    pub allocated_bytes: u64,
    /// Exact: bytes freed since start.
    pub freed_bytes: u64,
    /// Exact: bytes live now.
    pub live_bytes: u64,
    /// Exact: allocations live now.
    pub live_allocations: u64,
    /// Highest live bytes seen.
    pub peak_live_bytes: u64,
    /// Sampling rate in bytes when the snapshot was taken.
    pub sample_rate: u64,
    /// Samples taken since start.
    pub samples: u64,
    /// Samples lost to full tables (counted degradation).
    pub dropped_samples: u64,
    /// Samples walked by the system unwinder (see
    /// [`HeapStats::system_unwinds`]).
    pub system_unwinds: u64,
    /// leakscope's own metadata bytes.
    pub metadata_bytes: u64,
    /// Whether the tracking allocator is installed and has seen allocations.
    pub allocator_active: bool,
    /// Sampled sites (one per distinct stack), largest estimated live bytes
    /// first. With a `min_age` filter only live samples at least that old
    /// count towards the live and age fields.
    pub sites: Vec<HeapSite>,
}

impl HeapSnapshot {
    /// The exact totals alone.
    pub fn stats(&self) -> HeapStats {
        HeapStats {
            allocations: self.allocations,
            frees: self.frees,
            reallocs: self.reallocs,
            allocated_bytes: self.allocated_bytes,
            freed_bytes: self.freed_bytes,
            live_bytes: self.live_bytes,
            live_allocations: self.live_allocations,
            peak_live_bytes: self.peak_live_bytes,
            sample_rate: self.sample_rate,
            samples: self.samples,
            live_samples: self.sites.iter().map(|s| s.live_samples).sum(),
            dropped_samples: self.dropped_samples,
            system_unwinds: self.system_unwinds,
            metadata_bytes: self.metadata_bytes,
        }
    }
}

/// One sampled allocation stack and what is known about it (estimates).
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct HeapSite {
    /// Stack frames, innermost (the user's allocating code) first; leakscope's
    /// own frames and the `alloc::` shims are trimmed. Inlined functions
    /// appear as separate frames sharing one `address`.
    pub frames: Vec<Frame>,
    /// Estimated bytes live now.
    pub live_bytes: u64,
    /// Estimated allocations live now.
    pub live_objects: u64,
    /// Estimated bytes allocated since start.
    pub allocated_bytes: u64,
    /// Estimated allocations since start.
    pub allocated_objects: u64,
    /// Live samples behind the live estimates (small counts mean wide error bars).
    pub live_samples: u64,
    /// Age of the oldest live sample.
    #[serde(serialize_with = "ser_opt_secs")]
    pub oldest_age: Option<Duration>,
    /// Lifetimes of freed sampled allocations (estimated counts).
    pub lifetimes: Histogram,
    /// Ages of live sampled allocations (estimated counts).
    pub live_ages: Histogram,
    /// Estimated live bytes per age bucket (same buckets as `live_ages`).
    pub live_bytes_by_age: Vec<u64>,
}

/// One stack frame of a sampled allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub struct Frame {
    /// Demangled function name (without the hash suffix), or `"??"` when
    /// unknown.
    pub function: String,
    /// Source file, when debug info has it.
    pub file: Option<String>,
    /// Source line, when debug info has it.
    pub line: Option<u32>,
    /// Instruction address of this frame (the return address minus one for
    /// callers). Frames of inlined functions share their caller's address.
    pub address: u64,
    /// `true` when this frame was inlined into the next frame of the list
    /// (same `address`).
    pub inlined: bool,
}

impl Frame {
    /// Builds a frame (for exporters' tests and custom snapshots).
    pub fn new(function: impl Into<String>, file: Option<String>, line: Option<u32>) -> Self {
        Frame {
            function: function.into(),
            file,
            line,
            address: 0,
            inlined: false,
        }
    }

    /// Sets the instruction address.
    #[must_use]
    pub fn with_address(mut self, address: u64, inlined: bool) -> Self {
        self.address = address;
        self.inlined = inlined;
        self
    }

    /// `file:line` (or just the function when the file is unknown), with
    /// the file shortened as every output shortens it.
    pub fn location(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) => format!("{}:{l}", short_path(f)),
            (Some(f), None) => short_path(f).to_string(),
            _ => self.function.clone(),
        }
    }
}

/// One `track!`/`track_arc!` callsite (per tracked type) and its objects.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ObjectSite {
    /// `std::any::type_name` of the tracked value.
    pub type_name: String,
    /// The optional name given at the callsite (`track!(v, "name")`).
    pub name: Option<String>,
    /// Source file of the callsite.
    pub file: String,
    /// Source line of the callsite.
    pub line: u32,
    /// Source column of the callsite.
    pub column: u32,
    /// Module path of the callsite.
    pub module_path: String,
    /// Exact: objects created.
    pub created: u64,
    /// Exact: objects dropped (including `into_inner`).
    pub dropped: u64,
    /// Exact: objects live now.
    pub live: u64,
    /// Age of the oldest live object.
    #[serde(serialize_with = "ser_opt_secs")]
    pub oldest_age: Option<Duration>,
    /// Lifetimes of dropped objects.
    pub lifetimes: Histogram,
    /// Ages of live objects.
    pub live_ages: Histogram,
    /// Live objects per label value (`track!(v, key = value)`).
    pub labels: Vec<LabelCount>,
    /// Live shared handles grouped by where they were created or cloned
    /// (`track_arc!` only).
    pub holders: Vec<Holder>,
    /// Why this site looks like a leak, in words; `None` if it does not.
    pub suspected: Option<String>,
}

impl ObjectSite {
    /// `file:line`, the form used in metric labels.
    pub fn site(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// Live objects carrying one label value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LabelCount {
    /// The label key (`caller` in `track!(v, caller = x)`).
    pub key: String,
    /// The label value, or `"other"` for values past the per-site cap.
    pub value: String,
    /// Live objects with this value.
    pub live: u64,
}

/// Live shared handles created or cloned at one place.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Holder {
    /// Source file where the handles were created or cloned.
    pub file: String,
    /// Source line.
    pub line: u32,
    /// Live handles held from here.
    pub live: u64,
    /// Age of the oldest live handle from here.
    #[serde(serialize_with = "ser_opt_secs")]
    pub oldest_age: Option<Duration>,
}

impl fmt::Display for LabelCount {
    /// `caller=billing-batch: 401 live`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}: {} live", self.key, self.value, self.live)
    }
}

impl fmt::Display for Holder {
    /// `held at src/timer.rs:31: 4920 live handle(s) for up to 16h40m`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "held at {}:{}: {} live handle(s)",
            self.file, self.line, self.live
        )?;
        if let Some(a) = self.oldest_age {
            write!(f, " for up to {}", fmt_duration(a))?;
        }
        Ok(())
    }
}

fn ser_opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl Snapshot {
    /// One line, like Go's gctrace: live heap, allocation and free totals,
    /// samples and the oldest tracked object.
    ///
    /// `live 1.9 GiB in 20311 allocs (peak 2.0 GiB) | allocs 9120334 frees 9100023 | sampled 3812 (dropped 0) | objects 4920 live, oldest 16h40m`
    pub fn summary(&self) -> String {
        let h = &self.heap;
        let mut out = format!(
            "live {} in {} allocs (peak {}) | allocs {} frees {} | sampled {} (dropped {})",
            fmt_bytes(h.live_bytes),
            h.live_allocations,
            fmt_bytes(h.peak_live_bytes),
            h.allocations,
            h.frees,
            h.samples,
            h.dropped_samples
        );
        let live: u64 = self.objects.iter().map(|o| o.live).sum();
        let oldest = self.objects.iter().filter_map(|o| o.oldest_age).max();
        if !self.objects.is_empty() {
            out.push_str(&format!(" | objects {live} live"));
            if let Some(o) = oldest {
                out.push_str(&format!(", oldest {}", fmt_duration(o)));
            }
        }
        let suspects = self
            .objects
            .iter()
            .filter(|o| o.suspected.is_some())
            .count();
        if suspects > 0 {
            out.push_str(&format!(" | {suspects} suspected leak(s)"));
        }
        out
    }

    /// One line like [`Snapshot::summary`], plus the change in live bytes per
    /// second since `earlier`: `live 1.9 GiB (+30.0 MiB/s) ...`.
    pub fn summary_since(&self, earlier: &Snapshot) -> String {
        let dt = self.taken_at_ns.saturating_sub(earlier.taken_at_ns) as f64 / 1e9;
        let s = self.summary();
        if dt <= 0.0 {
            return s;
        }
        let d = self.heap.live_bytes as f64 - earlier.heap.live_bytes as f64;
        let rate = d / dt;
        let sign = if rate < 0.0 { "-" } else { "+" };
        let rate_s = fmt_bytes(rate.abs() as u64);
        let head = format!("live {}", fmt_bytes(self.heap.live_bytes));
        s.replacen(&head, &format!("{head} ({sign}{rate_s}/s)"), 1)
    }
}

/// How many heap sites and object sites the text report lists.
const REPORT_TOP: usize = 10;

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "leakscope report")?;
        writeln!(f, "{}", self.summary())?;
        writeln!(f)?;
        write_objects(f, &self.objects)?;
        write_heap(f, &self.heap)
    }
}

fn write_objects(f: &mut fmt::Formatter<'_>, objects: &[ObjectSite]) -> fmt::Result {
    if objects.is_empty() {
        return writeln!(
            f,
            "tracked objects: none (no track!/track_arc! site has run)\n"
        );
    }
    let mut sites: Vec<&ObjectSite> = objects.iter().collect();
    sites.sort_by(|a, b| {
        b.suspected
            .is_some()
            .cmp(&a.suspected.is_some())
            .then(b.oldest_age.cmp(&a.oldest_age))
            .then(b.live.cmp(&a.live))
    });
    writeln!(f, "tracked objects, oldest live first:")?;
    for o in sites.iter().take(REPORT_TOP) {
        let name = o
            .name
            .as_deref()
            .map(|n| format!(" \"{n}\""))
            .unwrap_or_default();
        writeln!(
            f,
            "  {}{} at {}: {} live, {} created, {} dropped{}",
            o.type_name,
            name,
            o.site(),
            o.live,
            o.created,
            o.dropped,
            o.oldest_age
                .map(|a| format!(", oldest {}", fmt_duration(a)))
                .unwrap_or_default()
        )?;
        if let Some(p50) = o.lifetimes.quantile_upper_bound(0.5) {
            writeln!(
                f,
                "      dropped objects lived: p50 <= {}, p99 <= {}",
                fmt_duration(p50),
                o.lifetimes
                    .quantile_upper_bound(0.99)
                    .map(fmt_duration)
                    .unwrap_or_else(|| "+Inf".into())
            )?;
        }
        if let Some(why) = &o.suspected {
            writeln!(f, "      SUSPECTED LEAK: {why}")?;
        }
        for l in o.labels.iter().filter(|l| l.live > 0).take(5) {
            writeln!(f, "      {l}")?;
        }
        for h in o.holders.iter().filter(|h| h.live > 0).take(5) {
            writeln!(f, "      {h}")?;
        }
    }
    if sites.len() > REPORT_TOP {
        writeln!(f, "  ... and {} more sites", sites.len() - REPORT_TOP)?;
    }
    writeln!(f)
}

fn write_heap(f: &mut fmt::Formatter<'_>, h: &HeapSnapshot) -> fmt::Result {
    if !h.allocator_active {
        return writeln!(
            f,
            "heap: the tracking allocator is not installed (#[global_allocator] static A: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();)"
        );
    }
    writeln!(
        f,
        "heap: {} live in {} allocations (peak {}), {} allocated in total; sample rate {} bytes",
        fmt_bytes(h.live_bytes),
        h.live_allocations,
        fmt_bytes(h.peak_live_bytes),
        fmt_bytes(h.allocated_bytes),
        h.sample_rate
    )?;
    let live: Vec<&HeapSite> = h.sites.iter().filter(|s| s.live_bytes > 0).collect();
    if live.is_empty() {
        return writeln!(f, "  no sampled allocation is live");
    }
    writeln!(f, "top sites by estimated live bytes:")?;
    for s in live.iter().take(REPORT_TOP) {
        let top = s
            .frames
            .first()
            .map(|fr| fr.function.as_str())
            .unwrap_or("??");
        let at = s.frames.first().map(Frame::location).unwrap_or_default();
        writeln!(
            f,
            "  {:>10} in {:>6} allocs{}  {}  ({})",
            fmt_bytes(s.live_bytes),
            s.live_objects,
            s.oldest_age
                .map(|a| format!(", oldest {:>6}", fmt_duration(a)))
                .unwrap_or_default(),
            top,
            at
        )?;
        for fr in s.frames.iter().skip(1).take(3) {
            writeln!(f, "        <- {} ({})", fr.function, fr.location())?;
        }
    }
    if live.len() > REPORT_TOP {
        writeln!(f, "  ... and {} more sites", live.len() - REPORT_TOP)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_rate_and_objects() {
        let mut a = Snapshot::default();
        a.heap.live_bytes = 1 << 20;
        let mut b = a.clone();
        b.taken_at_ns = 1_000_000_000;
        b.heap.live_bytes = 3 << 20;
        b.objects.push(ObjectSite {
            live: 7,
            oldest_age: Some(Duration::from_secs(3600)),
            ..Default::default()
        });
        let s = b.summary_since(&a);
        assert!(s.starts_with("live 3.0 MiB (+2.0 MiB/s)"), "{s}");
        assert!(s.contains("objects 7 live, oldest 1h"), "{s}");
    }
}
