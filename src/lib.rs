//! # leakscope
//!
//! Find memory and resource leaks in running Rust services: what *retains*
//! memory and how *old* it is, not only where it was allocated.
//!
//! - [`TrackingAllocator`] wraps any [`GlobalAlloc`](core::alloc::GlobalAlloc):
//!   exact allocation/free totals always, plus Poisson-sampled allocations
//!   (one every [`sample_rate`] bytes on average, 512 KiB by default, as Go's
//!   `MemProfileRate`) with their stacks, the lifetimes of freed ones and the
//!   ages of live ones.
//! - `track!(value)` / `track_arc!(value)` wrap objects in a drop hook that
//!   counts created, dropped and live objects per callsite, with lifetimes,
//!   ages, labels and the places that still hold shared handles.
//! - [`snapshot()`] reads all of it into plain data that the text report,
//!   pprof, Prometheus, JSON and flame-graph exporters turn into output.
//!
//! # Quick start
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();
//!
//! fn main() {
//!     let v: Vec<u8> = vec![0; 1 << 20];
//!     let snap = leakscope::snapshot();
//!     println!("{}", snap.summary());
//!     println!("{snap}");
//!     drop(v);
//! }
//! ```
//!
//! In a service, serve the debug endpoints and track what you suspect:
//!
//! ```no_run
//! # #[derive(Debug)] struct RequestCtx;
//! # fn spawn_deadline_timer(_c: leakscope::TrackedArc<RequestCtx>) {}
//! // /metrics, /debug/pprof/heap, /debug/pprof/allocs, /debug/leaks ... on loopback
//! let _debug = leakscope::server::serve("127.0.0.1:6060").unwrap();
//! let ctx = leakscope::track_arc!(RequestCtx, caller = "billing-batch");
//! spawn_deadline_timer(ctx.clone()); // this clone is a "holder"
//! ```
//!
//! # Features
//!
//! - `prometheus` (default): [`prometheus::publish`] into the `metrics`
//!   facade, [`prometheus::render`], and (with `http`) `prometheus::install`.
//! - `http` (default): the debug server, [`server::serve`].
//! - `flamegraph` (default): flame graph SVGs of sampled stacks, via `inferno`.
//!
//! The core (allocator, tracked objects, snapshots, pprof) is always built.
//!
//! # Background threads
//!
//! leakscope starts none unless asked:
//! - `leakscope-http` (one tokio current-thread runtime) and up to two
//!   `leakscope-http-worker` threads, while a [`server::Server`] runs;
//! - `leakscope-metrics`, the publisher behind `prometheus::install`;
//! - `leakscope-clock`, only after [`objects::use_coarse_clock`].
//!
//! # Safety model
//!
//! The allocator path never panics, never takes a lock on the unsampled path,
//! never allocates through itself (a const-initialised thread-local guard
//! sends leakscope's own allocations straight to the inner allocator,
//! uncounted), keeps working during thread teardown, and keeps its metadata
//! in fixed-size tables whose overflow is counted
//! ([`HeapStats::dropped_samples`]). See `ARCHITECTURE.md` for the invariants.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod alloc;
pub mod clock;
mod format;
pub mod histogram;
pub mod snapshot;
mod stack;
// Not wired in yet: the snapshot path still symbolizes through `stack.rs`.
#[allow(dead_code)]
mod symbolize;
pub mod testing;
mod unwind;

// -- tracked objects (track!, track_arc!, LeakCheck) --
mod check;
#[macro_use]
mod macros;
#[doc(hidden)]
#[path = "macro_support.rs"]
pub mod __macro_support;
pub mod objects;
pub use crate::check::{LeakCheck, LeakCheckGuard, LeakCheckHandle};
pub use crate::objects::{Tracked, TrackedArc, TrackedWeak};

// -- exporters: pprof and flame graphs --
#[cfg(feature = "flamegraph")]
pub mod flamegraph;
pub mod pprof;

// -- exporters: prometheus and the debug server --
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(feature = "http")]
pub mod server;

pub use crate::alloc::{sample_rate, set_sample_rate, TrackingAllocator};

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
pub use crate::snapshot::{
    Frame, HeapSite, HeapSnapshot, HeapStats, Holder, LabelCount, ObjectSite, Snapshot,
};

use core::time::Duration;

/// The exact allocator totals alone: cheap (a sum over per-thread counters),
/// no symbolization, no sites. For tests and frequent polling.
///
/// All zeros when [`TrackingAllocator`] is not the global allocator.
///
/// # Examples
///
/// ```
/// let s = leakscope::heap_stats();
/// assert!(s.live_bytes <= s.allocated_bytes);
/// ```
pub fn heap_stats() -> HeapStats {
    alloc::heap_stats()
}

/// What a snapshot should include.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SnapshotOptions {
    /// Keep only live allocations at least this old in the heap sites' live
    /// fields (the leak view); `None` keeps all.
    pub min_age: Option<Duration>,
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
    let now = clock::now_ns();
    let heap = alloc::heap_snapshot(now, opts.min_age);
    let objects = objects::snapshot_sites(now);
    Snapshot {
        taken_at_ns: now,
        heap,
        objects,
    }
}
