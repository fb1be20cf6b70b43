//! # leakscope
//!
//! Find memory and resource leaks in running Rust services: what *retains*
//! memory and how *old* it is, not only where it was allocated.
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
//! # Concepts
//!
//! ## The allocator
//!
//! [`TrackingAllocator`] wraps any [`GlobalAlloc`](core::alloc::GlobalAlloc)
//! (`TrackingAllocator::system()` wraps the system allocator). It counts
//! every allocation and free exactly ([`heap_stats`] reads the totals
//! cheaply), and samples allocations Poisson-style, one every
//! [`sample_rate`] bytes on average (512 KiB by default, as Go's
//! `MemProfileRate`; [`set_sample_rate`] changes it): a sampled allocation
//! keeps its stack, its age while live and its lifetime once freed. Heap
//! numbers per stack are estimates scaled up from the samples. Module:
//! [`alloc`].
//!
//! ## Tracked objects
//!
//! [`track!`](crate::track) and [`track_arc!`](crate::track_arc) wrap a value
//! you suspect of leaking (a request context, a connection, a
//! subscription) in a drop hook, [`Tracked`] or [`TrackedArc`]. Per
//! callsite they count objects created, dropped and live, with lifetimes of
//! dropped objects, ages of live ones, live objects per label value
//! (`track!(v, caller = x)`) and, for shared handles, *who holds* them. They
//! need no global allocator. Which clock stamps births and drops, and the
//! label caps, are set in [`objects`].
//!
//! ## Snapshots
//!
//! [`snapshot()`] (or [`snapshot_with`] and [`SnapshotOptions`], e.g. only
//! allocations older than ten minutes) reads everything into a [`Snapshot`]:
//! plain data, the [`HeapSnapshot`] with its sampled [`HeapSite`]s and the
//! tracked [`ObjectSite`]s, each with [`histogram::Histogram`]s of
//! lifetimes and ages over one fixed set of buckets. A snapshot prints as a
//! text report (`println!("{snap}")`), or as one line with
//! [`Snapshot::summary`]. Module: [`snapshot`](mod@snapshot).
//!
//! ## Time windows and marks
//!
//! A snapshot (and a profile, and the debug routes) can keep only the live
//! heap born in a time window: [`SnapshotOptions::min_age`] and
//! [`SnapshotOptions::max_age`] (born between an hour and ten minutes ago),
//! or [`SnapshotOptions::since`] / [`SnapshotOptions::until`] a *mark*, a
//! named point in time recorded with [`mark`]`("deploy")` (bounded: module
//! [`marks`]). A filtered view says so: [`HeapSnapshot::filter`] holds the
//! window and what it kept, and every output prints it. Tracked objects
//! are not filtered.
//!
//! ## Exporters
//!
//! Every exporter reads a snapshot, never the live tables:
//!
//! - [`pprof`]: gzipped pprof heap and allocation profiles for `go tool
//!   pprof`, with ages as labels;
//! - [`prometheus`] (feature `prometheus`): [`prometheus::render`] to the
//!   text exposition format, [`prometheus::publish`] into the `metrics`
//!   facade, and (with `http`) `prometheus::install`, a publisher thread and
//!   exporter;
//! - [`server`] (feature `http`): [`server::serve`] starts a small debug
//!   HTTP server for `/metrics`, `/debug/pprof/*` and `/debug/leaks`;
//! - [`flamegraph`] (feature `flamegraph`): SVG flame graphs of sampled
//!   stacks.
//!
//! ## Where the memory is
//!
//! [`memory()`] breaks the process's RSS down into parts that sum to it
//! exactly: the Rust heap (exact), leakscope's own metadata, the inner
//! allocator's overhead, resident thread stacks, and what is left
//! *unattributed* (files mapped, C code's `malloc`, `mmap`s), with its
//! share. It is the first lines of the text report, `/debug/memory` and the
//! `leakscope_memory_bytes{kind}` gauges. Module: [`memory`](mod@memory).
//!
//! ## Dumps when nobody is watching
//!
//! `dumps::Dumper` (feature `dumps`) watches rules (live heap or RSS above
//! a bound, heap growth within a window, a suspected leak, `SIGUSR2`) from
//! one background thread and writes the heap profile, the leak view, the
//! text report and the JSON to a directory when one fires: rate-limited,
//! capped in files and bytes, written atomically.
//!
//! ## Testing
//!
//! [`LeakCheck`] fails a test when tracked objects it created are still
//! live (other tests' objects, on other threads, do not count). The
//! [`testing`] module holds controls for tests: move leakscope's clock
//! forward instead of sleeping, fix the sampler's seed.
//!
//! # Features
//!
//! - `prometheus` (default): [`prometheus::publish`] into the `metrics`
//!   facade, [`prometheus::render`], and (with `http`) `prometheus::install`.
//! - `http` (default): the debug server, [`server::serve`].
//! - `flamegraph` (default): flame graph SVGs of sampled stacks, via `inferno`.
//! - `futures`: a tracked stream is a `futures_core::Stream`.
//! - `dumps` (default): triggered dumps, `dumps::Dumper`.
//! - `jemalloc`: [`memory()`] reads jemalloc's numbers
//!   (`memory::Jemalloc`, through `tikv-jemalloc-ctl`).
//! - `tokio`: tracked tokio I/O is `AsyncRead`/`AsyncWrite`/`AsyncBufRead`
//!   (a tracked connection).
//!
//! The core (allocator, tracked objects, snapshots, pprof) is always built.
//!
//! # Background threads
//!
//! leakscope starts none unless asked:
//! - `leakscope-http` (one tokio current-thread runtime) and up to two
//!   `leakscope-http-worker` threads, while a [`server::Server`] runs;
//! - `leakscope-metrics`, the publisher behind `prometheus::install`;
//! - `leakscope-clock`, only after [`objects::use_coarse_clock`];
//! - `leakscope-dumps`, while a `dumps::Dumper` runs.
//!
//! # Safety model
//!
//! The allocator path never panics, never takes a lock on the unsampled path,
//! never allocates through itself (a const-initialised thread-local guard
//! sends leakscope's own allocations straight to the inner allocator,
//! uncounted), keeps working during thread teardown, and keeps its metadata
//! in fixed-size tables whose overflow is counted
//! ([`HeapStats::dropped_samples`]). Tracked objects take no lock and make
//! no allocation on their hot path (only the first use of a site, label
//! value or holder allocates). See `ARCHITECTURE.md` for the invariants.
// AddressSanitizer builds only (`scripts/asan.sh`): the unwinder's stack
// reads opt out of instrumentation (`alloc/unwind/walk.rs`).
#![cfg_attr(leakscope_asan, feature(sanitize, core_intrinsics))]
#![cfg_attr(leakscope_asan, allow(internal_features))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[doc(hidden)]
#[path = "hooks.rs"]
pub mod __hooks;
pub mod alloc;
pub mod clock;
mod format;
pub mod histogram;
pub mod marks;
pub mod memory;
mod report;
pub mod snapshot;
// Part of the symbolizer's API (`resolve`, `set_budget`, `clear`) is used
// by its own tests only, not yet by the crate.
#[allow(dead_code)]
mod symbolize;
pub mod testing;
mod window;

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
#[cfg(feature = "http")]
mod listener;
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(feature = "http")]
pub mod server;

pub use crate::alloc::{sample_rate, set_sample_rate, TrackingAllocator};
#[doc(inline)]
pub use crate::memory::{memory, Memory};

// -- triggered dumps --
#[cfg(feature = "dumps")]
pub mod dumps;

// -- the vocabulary: snapshots and what they hold --
pub use crate::marks::{mark, Mark};
#[doc(inline)]
pub use crate::snapshot::{heap_stats, snapshot, snapshot_with, SnapshotOptions};
pub use crate::snapshot::{
    Frame, HeapFilter, HeapSite, HeapSnapshot, HeapStats, Holder, LabelCount, ObjectSite,
    RetainedReason, Snapshot, WindowError,
};

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
