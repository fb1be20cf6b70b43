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
//!
//! This module is the crate's vocabulary: the allocator and the tracked
//! objects ([`crate::objects`]) build these types, the exporters read them.
//! [`snapshot()`] and [`snapshot_with`] take one; [`heap_stats`] reads the
//! exact totals alone. The text report (`Display for Snapshot`,
//! [`Snapshot::summary`]) lives in `report.rs`.

use core::time::Duration;

use serde::{Serialize, Serializer};

use crate::format::short_path;
use crate::histogram::Histogram;
use crate::marks::{Mark, MarkError};
use crate::window::Window;

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
    /// Heap bytes leakscope's symbolizer holds (parsed debug info, address
    /// cache; part of `metadata_bytes`), kept under
    /// `symbolizer_budget_bytes`. As of the last symbolization.
    pub symbolizer_bytes: u64,
    /// The bound on `symbolizer_bytes` (64 MiB).
    pub symbolizer_budget_bytes: u64,
    /// Parsed objects the symbolizer dropped to stay under its budget
    /// (each one is parsed again when next needed).
    pub symbolizer_evictions: u64,
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
    /// The marks ([`crate::mark`]) set when it was taken, oldest first.
    pub marks: Vec<Mark>,
    /// The process's memory from RSS down ([`crate::memory()`]), read when
    /// the snapshot was taken; `None` in a snapshot built by hand.
    pub memory: Option<crate::memory::Memory>,
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
    /// See [`HeapStats::symbolizer_bytes`].
    pub symbolizer_bytes: u64,
    /// See [`HeapStats::symbolizer_budget_bytes`].
    pub symbolizer_budget_bytes: u64,
    /// See [`HeapStats::symbolizer_evictions`].
    pub symbolizer_evictions: u64,
    /// Whether the tracking allocator is installed and has seen allocations.
    pub allocator_active: bool,
    /// Sampled sites, one per distinct symbolized stack (stacks whose
    /// frames have the same function, file and line are merged; see
    /// [`HeapSite::stacks`]): suspected sites first (fastest growing
    /// first), then largest estimated live bytes first. With a time window
    /// (`min_age`, `max_age`, `since`, `until`) only the live samples in it
    /// count towards the live and age fields.
    pub sites: Vec<HeapSite>,
    /// The time window applied to the live samples and what it kept;
    /// `None` for the whole live heap. Every output states it.
    pub filter: Option<HeapFilter>,
}

/// The time window a heap view was filtered by, and what it kept (see
/// [`SnapshotOptions`]). Prints as one sentence (`heap born 10m–1h ago
/// (min_age=10m max_age=1h): 48.0 MiB of 80.0 MiB sampled live kept (60%),
/// 1200 of 3000 live samples; tracked objects are not filtered`), the line
/// every output carries when filtered.
///
/// The window applies to the heap's live samples only: tracked objects
/// are not filtered. Kept and total figures are the sampled estimates
/// (the sites' `live_*` fields sum to the kept ones, up to rounding),
/// comparable with each other; the exact live total is
/// [`HeapSnapshot::live_bytes`].
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct HeapFilter {
    /// Kept: live samples at least this old.
    #[serde(serialize_with = "ser_opt_secs")]
    pub min_age: Option<Duration>,
    /// Kept: live samples at most this old.
    #[serde(serialize_with = "ser_opt_secs")]
    pub max_age: Option<Duration>,
    /// Kept: live samples born at or after this mark.
    pub since: Option<Mark>,
    /// Kept: live samples born before this mark.
    pub until: Option<Mark>,
    /// The youngest age kept, all bounds together (`None`: no lower bound).
    #[serde(serialize_with = "ser_opt_secs")]
    pub youngest: Option<Duration>,
    /// The oldest age kept, all bounds together (`None`: no upper bound).
    #[serde(serialize_with = "ser_opt_secs")]
    pub oldest: Option<Duration>,
    /// Estimated live bytes in the window.
    pub kept_bytes: u64,
    /// Estimated live bytes of the whole live heap.
    pub total_bytes: u64,
    /// Estimated live allocations in the window.
    pub kept_objects: u64,
    /// Estimated live allocations of the whole live heap.
    pub total_objects: u64,
    /// Live samples in the window.
    pub kept_samples: u64,
    /// Live samples in all.
    pub total_samples: u64,
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
            live_samples: match &self.filter {
                Some(f) => f.total_samples,
                None => self.sites.iter().map(|s| s.live_samples).sum(),
            },
            dropped_samples: self.dropped_samples,
            system_unwinds: self.system_unwinds,
            metadata_bytes: self.metadata_bytes,
            symbolizer_bytes: self.symbolizer_bytes,
            symbolizer_budget_bytes: self.symbolizer_budget_bytes,
            symbolizer_evictions: self.symbolizer_evictions,
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
    /// Why this site looks like a leak, in words; `None` if it does not:
    /// its live bytes grew steadily for at least a minute while its oldest
    /// blocks stayed (the rule is in the README, "Reading the heap
    /// report"). Suspected sites come first in [`HeapSnapshot::sites`].
    pub suspected: Option<String>,
    /// Not suspected (yet), but growing by the same rule over a shorter
    /// span (at least one 10 s step, under a minute): listed right after the
    /// suspected sites, so a leak younger than a minute is not ranked below
    /// an old, flat table.
    pub growing: bool,
    /// Estimated live bytes gained per second over the site's growth
    /// history (up to the last 2 min 40 s; negative when shrinking, 0 when
    /// the history spans less than one 10 s slot).
    pub growth_bytes_per_second: f64,
    /// How much time that rate is measured over (`None`: too short).
    #[serde(serialize_with = "ser_opt_secs")]
    pub growth_window: Option<Duration>,
    /// The most times one live sampled block of this site grew by
    /// `realloc` (a doubling `Vec`, a growing `String`).
    pub max_grown: u64,
    /// Time since a live sampled block of this site last grew by
    /// `realloc` (`None`: none did).
    #[serde(serialize_with = "ser_opt_secs")]
    pub last_grown: Option<Duration>,
    /// Captured stacks merged into this site: stacks whose return
    /// addresses differ (unrolled or duplicated code) but whose symbolized
    /// frames (function, file, line) are identical are one site.
    pub stacks: u64,
    /// The crate that allocates: the crate of the first frame outside
    /// `std`, `core` and `alloc` (of the first frame if all are inside
    /// them), as the text report's `by crate` line counts it.
    pub allocating_crate: Option<String>,
    /// Live bytes per growth slot, for merging and the Prometheus growth
    /// gauge (see `alloc/growth.rs`).
    #[serde(skip)]
    pub(crate) history: crate::alloc::GrowthSeries,
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
    /// Retained objects come first, then stuck tasks, then the shape rules.
    pub suspected: Option<String>,
    /// Exact: objects of this site ever retired (`retire`).
    pub retired: u64,
    /// Retired objects still live but within the grace period.
    pub retiring: u64,
    /// Retired objects still live after the grace period: *retained*.
    pub retained: u64,
    /// Time since the longest-retained object was retired.
    #[serde(serialize_with = "ser_opt_secs")]
    pub retained_oldest: Option<Duration>,
    /// Times since retirement of the retained objects.
    pub retained_since: Histogram,
    /// Ages (since creation) of the retained objects.
    pub retained_ages: Histogram,
    /// Retained objects per reason, most first; reasons past the per-site
    /// cap count under `other`.
    pub retained_reasons: Vec<RetainedReason>,
    /// Retained objects per label value.
    pub retained_labels: Vec<LabelCount>,
    /// The live handles of retained objects by where they were created or
    /// cloned (`track_arc!` only): what still keeps them.
    pub retained_holders: Vec<Holder>,
    /// Live objects polled at least once: tasks, streams, async I/O
    /// (`Tracked<F>` with `F: Future`, ...).
    pub polled_live: u64,
    /// Time since the last poll of each polled live object.
    pub idle: Histogram,
    /// The longest time a polled live object has not been polled.
    #[serde(serialize_with = "ser_opt_secs")]
    pub oldest_idle: Option<Duration>,
}

/// Retained objects of one site retired for one reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RetainedReason {
    /// The reason given to `retire`, or `"other"` past the per-site cap.
    pub reason: String,
    /// Retained objects retired for it.
    pub retained: u64,
    /// Time since the longest-retained of them was retired.
    #[serde(serialize_with = "ser_opt_secs")]
    pub oldest: Option<Duration>,
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

fn ser_opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// The exact allocator totals alone: cheap (a sum over per-thread counters),
/// no symbolization, no sites. For tests and frequent polling.
///
/// All zeros when [`TrackingAllocator`](crate::TrackingAllocator) is not the
/// global allocator.
///
/// # Examples
///
/// ```
/// let s = leakscope::heap_stats();
/// assert!(s.live_bytes <= s.allocated_bytes);
/// ```
pub fn heap_stats() -> HeapStats {
    crate::alloc::heap_stats()
}

/// What a snapshot should include.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SnapshotOptions {
    /// Keep only live allocations at least this old in the heap sites' live
    /// fields (the leak view); `None` keeps all.
    pub min_age: Option<Duration>,
    /// Keep only live allocations at most this old; with `min_age`, the
    /// live memory born in [now − max_age, now − min_age].
    pub max_age: Option<Duration>,
    /// Keep only live allocations born at or after this mark.
    pub since: Option<Mark>,
    /// Keep only live allocations born before this mark.
    pub until: Option<Mark>,
    /// What the heap part must hold: everything, or (crate-internal, for
    /// `/metrics` and the Prometheus publisher) only what the metrics read.
    pub(crate) heap: HeapDetail,
}

/// Why a time window was refused ([`SnapshotOptions::check`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowError {
    msg: String,
}

impl std::fmt::Display for WindowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for WindowError {}

/// How much of the heap a snapshot reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum HeapDetail {
    /// Every site with all its frames, ages and lifetimes.
    #[default]
    Full,
    /// The exact totals and, per site, its first frame and its live and
    /// allocated estimates, from maintained state: no walk of the live
    /// samples, no symbolization of known stacks
    /// (`crate::alloc::heap_metrics`). What the Prometheus families read;
    /// they render the same text from it as from a full snapshot.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    Metrics,
}

impl SnapshotOptions {
    /// Default options: everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps only live heap samples at least `age` old.
    #[must_use]
    pub fn min_age(mut self, age: Duration) -> Self {
        self.min_age = Some(age);
        self
    }

    /// Keeps only live heap samples at most `age` old.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// // Live memory allocated between an hour and ten minutes ago.
    /// let opts = leakscope::SnapshotOptions::new()
    ///     .min_age(Duration::from_secs(600))
    ///     .max_age(Duration::from_secs(3600));
    /// assert!(opts.check().is_ok());
    /// let snap = leakscope::snapshot_with(&opts);
    /// assert!(snap.heap.filter.is_some());
    /// ```
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Keeps only live heap samples born at or after `mark`.
    #[must_use]
    pub fn since(mut self, mark: Mark) -> Self {
        self.since = Some(mark);
        self
    }

    /// Keeps only live heap samples born before `mark`.
    #[must_use]
    pub fn until(mut self, mark: Mark) -> Self {
        self.until = Some(mark);
        self
    }

    /// [`since`](Self::since) the mark called `name`.
    ///
    /// # Errors
    ///
    /// No mark of that name is set.
    pub fn since_mark(self, name: &str) -> Result<Self, MarkError> {
        Ok(self.since(crate::marks::find(name)?))
    }

    /// [`until`](Self::until) the mark called `name`.
    ///
    /// # Errors
    ///
    /// No mark of that name is set.
    pub fn until_mark(self, name: &str) -> Result<Self, MarkError> {
        Ok(self.until(crate::marks::find(name)?))
    }

    /// Refuses a self-contradictory window: `min_age` above `max_age`, or a
    /// `since` mark set after the `until` mark. ([`snapshot_with`] takes
    /// such a window as it is: it keeps nothing, and says so.)
    ///
    /// # Errors
    ///
    /// A one-line reason, e.g. `min_age (1h) is more than max_age (10m):
    /// the window [now - max_age, now - min_age] is empty`.
    pub fn check(&self) -> Result<(), WindowError> {
        self.window().check().map_err(|msg| WindowError { msg })
    }

    /// The time window of these options.
    pub(crate) fn window(&self) -> Window<'_> {
        Window {
            min_age: self.min_age,
            max_age: self.max_age,
            since: self.since.as_ref(),
            until: self.until.as_ref(),
        }
    }

    /// The options of the light snapshot `/metrics` renders from (see
    /// [`HeapDetail::Metrics`]).
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn metrics() -> Self {
        SnapshotOptions {
            heap: HeapDetail::Metrics,
            ..SnapshotOptions::default()
        }
    }
}

/// The light snapshot the Prometheus families need (see
/// [`HeapDetail::Metrics`]).
#[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
pub(crate) fn metrics_snapshot() -> Snapshot {
    snapshot_with(&SnapshotOptions::metrics())
}

/// Takes a [`Snapshot`] of the heap and of every tracked-object site.
///
/// Symbolizes sampled stacks on first sight (cached after, in leakscope's own
/// untracked memory, so symbolization never shows up in your heap numbers).
pub fn snapshot() -> Snapshot {
    snapshot_with(&SnapshotOptions::default())
}

/// Like [`snapshot()`], with options (e.g. a `min_age` filter for the leak view).
pub fn snapshot_with(opts: &SnapshotOptions) -> Snapshot {
    let now = crate::clock::now_ns();
    let heap = match opts.heap {
        HeapDetail::Full => crate::alloc::heap_snapshot(now, &opts.window()),
        HeapDetail::Metrics => crate::alloc::heap_metrics(),
    };
    let objects = crate::objects::snapshot_sites(now);
    Snapshot {
        taken_at_ns: now,
        heap,
        objects,
        // `/metrics` does not read the marks.
        marks: match opts.heap {
            HeapDetail::Full => crate::marks::marks(),
            HeapDetail::Metrics => Vec::new(),
        },
        memory: Some(crate::memory::memory()),
    }
}
