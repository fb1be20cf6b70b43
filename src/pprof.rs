//! Heap profiles in pprof's format (gzipped `profile.proto`), in Go's
//! heap-profile layout, so `go tool pprof`, Parca and Pyroscope read a Rust
//! service's heap as they read a Go one.
//!
//! # Layout
//!
//! A profile has the four sample types of Go's `/debug/pprof/heap`, in Go's
//! order: `alloc_objects/count`, `alloc_space/bytes`, `inuse_objects/count`,
//! `inuse_space/bytes`; `period_type` is `space/bytes` and `period` the
//! sampling rate in bytes. [`heap_profile`] shows `inuse_space` by default,
//! [`allocs_profile`] `alloc_space` (Go's `/debug/pprof/allocs`). Values are
//! the unbiased estimates of the [`Snapshot`] (Go's scaling is already
//! applied), so tools must not, and do not, scale them again.
//!
//! # Age
//!
//! Each live allocation's *age* is what Go's profiles lack. Every sampled
//! stack becomes one pprof sample per age bucket of its live allocations
//! (the shared [`crate::histogram`] buckets), labelled with the numeric label
//! `age` = the bucket's **upper bound**, in `nanoseconds` (a time unit pprof
//! converts). `-tagfocus=age=600s:` keeps buckets whose bound is at least
//! 10 minutes; pprof knows `ns`, `us`, `ms`, `s`, `hour`, `day`, `week` and
//! `year` but no minutes, so `age=10m:` matches nothing. Those samples carry the in-use values and the matching
//! allocated values; one more sample without an `age` label carries what was
//! allocated at that stack and has since been freed. So per stack the values
//! sum to Go's, and `go tool pprof -tags` shows how old the live memory is.
//!
//! With [`ProfileOptions::min_age`] only live allocations at least that old
//! are counted as in use (the leak view; `?min_age=10m` on the HTTP route);
//! [`ProfileOptions::max_age`], [`ProfileOptions::since`] and
//! [`ProfileOptions::until`] bound the window further (see
//! [`crate::marks`]). A filtered profile carries one more comment (`go tool
//! pprof -comments`), `leakscope filter: heap born 10m–1h ago (min_age=10m
//! max_age=1h): 6.0 MiB of 15.1 MiB sampled live kept (40%), ...`, and the
//! `?debug=1` text the same line in its header.
//!
//! # Stacks
//!
//! One `Location` per distinct instruction address, with the demangled
//! function names, files and lines of its frames as `Line`s, innermost first
//! (inlined functions first, the function they were inlined into last). The
//! `Mapping` table lists the executable mappings of the process, the main
//! binary first, with GNU build ids where the files have them, and marks
//! them symbolized, so tools show names without the binary at hand.
//!
//! # Reading them
//!
//! ```text
//! curl -s localhost:6060/debug/pprof/heap > heap.out
//! go tool pprof -top heap.out                        # in-use bytes by function
//! go tool pprof -tags heap.out                       # how old the live memory is
//! go tool pprof -top -tagfocus=age=600s: heap.out    # only memory >= ~10 min old
//! curl -s 'localhost:6060/debug/pprof/heap?min_age=10m' > old.out   # exact leak view
//! go tool pprof -top -base before.out heap.out       # what grew
//! go tool pprof -sample_index=alloc_space -top heap.out
//! ```
//!
//! # Where things are
//!
//! This file holds the options and the entry points (gzip and streaming);
//! `pprof/values.rs` splits a heap site into samples with named
//! values (`Values`) in Go's sample-type order, `pprof/builder.rs` interns
//! the tables and builds the `Profile` message, `pprof/text.rs` writes the
//! `?debug=1` text, `pprof/mapping.rs` reads the process's mappings and build
//! ids, and `pprof/proto.rs` holds the generated (crate-private)
//! `profile.proto` types.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use leakscope::pprof::{self, ProfileOptions};
//!
//! let gz: Vec<u8> = pprof::heap_profile();
//! assert_eq!(&gz[..2], &[0x1f, 0x8b]); // gzip
//!
//! let leaks = pprof::profile_now(&ProfileOptions::heap().min_age(Duration::from_secs(600)));
//! assert!(!leaks.is_empty());
//! ```

mod builder;
mod mapping;
pub(crate) use self::mapping::{fork_prepare, fork_release};
pub(crate) mod proto;
mod text;
mod values;

use std::io::Write as _;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message as _;

use crate::marks::Mark;
use crate::snapshot::{HeapFilter, HeapSnapshot, Snapshot};
use crate::window::Window;

pub use text::text;

/// Which sample type a profile shows by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProfileKind {
    /// Go's `/debug/pprof/heap`: `inuse_space` by default.
    #[default]
    Heap,
    /// Go's `/debug/pprof/allocs`: `alloc_space` by default.
    Allocs,
}

impl ProfileKind {
    fn default_sample_type(self) -> &'static str {
        match self {
            ProfileKind::Heap => "inuse_space",
            ProfileKind::Allocs => "alloc_space",
        }
    }
}

/// What a profile should contain.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use leakscope::pprof::{ProfileKind, ProfileOptions};
///
/// let o = ProfileOptions::allocs().min_age(Duration::from_secs(60));
/// assert_eq!(o.kind, ProfileKind::Allocs);
/// assert_eq!(o.min_age, Some(Duration::from_secs(60)));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProfileOptions {
    /// Which sample type tools show by default (`inuse_space` or
    /// `alloc_space`).
    pub kind: ProfileKind,
    /// Count as in use only live allocations at least this old (the leak
    /// view); `None` counts all.
    pub min_age: Option<Duration>,
    /// Count as in use only live allocations at most this old.
    pub max_age: Option<Duration>,
    /// Count as in use only live allocations born at or after this mark.
    pub since: Option<Mark>,
    /// Count as in use only live allocations born before this mark.
    pub until: Option<Mark>,
}

impl ProfileOptions {
    /// Go's `/debug/pprof/heap`: default sample type `inuse_space`.
    pub fn heap() -> Self {
        ProfileOptions {
            kind: ProfileKind::Heap,
            ..ProfileOptions::default()
        }
    }

    /// Go's `/debug/pprof/allocs`: default sample type `alloc_space`.
    pub fn allocs() -> Self {
        ProfileOptions {
            kind: ProfileKind::Allocs,
            ..ProfileOptions::default()
        }
    }

    /// Counts as in use only live allocations at least `age` old.
    ///
    /// [`profile_now`] applies it exactly (it takes a snapshot with
    /// [`crate::SnapshotOptions::min_age`]); [`profile`] and [`text`], given a
    /// snapshot taken without it, apply it per age bucket: they keep the
    /// buckets whose upper bound is at least `age`.
    #[must_use]
    pub fn min_age(mut self, age: Duration) -> Self {
        self.min_age = Some(age);
        self
    }

    /// Counts as in use only live allocations at most `age` old; applied
    /// as [`min_age`](Self::min_age) is (per age bucket by [`profile`] and
    /// [`text`] on an unfiltered snapshot: buckets whose lower bound is at
    /// most `age`).
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Counts as in use only live allocations born at or after `mark`
    /// (exact in [`profile_now`]; per age bucket, as of the snapshot's
    /// time, in [`profile`] and [`text`] on an unfiltered snapshot).
    #[must_use]
    pub fn since(mut self, mark: Mark) -> Self {
        self.since = Some(mark);
        self
    }

    /// Counts as in use only live allocations born before `mark` (applied
    /// as [`since`](Self::since) is).
    #[must_use]
    pub fn until(mut self, mark: Mark) -> Self {
        self.until = Some(mark);
        self
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
}

/// How a profile is filtered: the age bounds applied per age bucket, and
/// the statement its comments and text header carry.
pub(super) struct Filter<'a> {
    /// (youngest, oldest) age counted as in use.
    pub(super) bounds: values::AgeBounds,
    /// The exact filter of the heap read, when it was filtered.
    exact: Option<&'a HeapFilter>,
    /// The window applied per age bucket to an unfiltered heap.
    approx: Option<HeapFilter>,
}

impl<'a> Filter<'a> {
    /// The filter of a profile of `heap`, read at `now`, with `opts`.
    pub(super) fn new(heap: &'a HeapSnapshot, opts: &ProfileOptions, now: u64) -> Self {
        let window = opts.window();
        let bounds = window.age_bounds(now);
        match &heap.filter {
            Some(f) => Filter {
                bounds,
                exact: Some(f),
                approx: None,
            },
            None => Filter {
                bounds,
                exact: None,
                approx: window.is_some().then(|| window.filter(now)),
            },
        }
    }

    /// The filter statement (`None` when unfiltered), given the in-use
    /// (objects, bytes) the profile kept and the live (objects, bytes) of
    /// its sites.
    pub(super) fn statement(&self, kept: (u64, u64), live: (u64, u64)) -> Option<String> {
        if let Some(f) = self.exact {
            return Some(format!("leakscope filter: {f}"));
        }
        let f = self.approx.as_ref()?;
        Some(format!(
            "leakscope filter (per age bucket of an unfiltered snapshot): {}: {} of {} sampled live kept, {} of {} objects; tracked objects are not filtered",
            f.window_text(),
            crate::format::fmt_bytes(kept.1),
            crate::format::fmt_bytes(live.1),
            kept.0,
            live.0
        ))
    }
}

/// A gzipped heap profile of the current heap, default sample type
/// `inuse_space` (Go's `/debug/pprof/heap`).
pub fn heap_profile() -> Vec<u8> {
    profile_now(&ProfileOptions::heap())
}

/// A gzipped heap profile of the current heap, default sample type
/// `alloc_space` (Go's `/debug/pprof/allocs`).
pub fn allocs_profile() -> Vec<u8> {
    profile_now(&ProfileOptions::allocs())
}

/// Takes a snapshot (filtered by `opts.min_age`, if set) and returns its
/// gzipped profile.
///
/// The same bytes as [`profile`] of [`crate::snapshot_with`] (but for the
/// profile's time), built without the snapshot: each site's frames are read
/// where the per-stack frame cache keeps them, not copied into a
/// [`Snapshot`] first, and the tracked objects are not read. A stack read
/// for the first time is symbolized (and cached) here.
pub fn profile_now(opts: &ProfileOptions) -> Vec<u8> {
    let now = crate::clock::now_ns();
    crate::alloc::as_metadata(|| {
        let (heap, stacks) = crate::alloc::heap_profile_view(now, &opts.window());
        let filter = Filter::new(&heap, opts, now);
        let overflow = crate::alloc::overflow_frames();
        let sites = heap.sites.iter().zip(&stacks).map(|(site, stack)| {
            let frames = match stack {
                Some(c) => builder::SiteStack::Cached(c),
                None => builder::SiteStack::Frames(&overflow),
            };
            (site, frames)
        });
        encode(|emit| {
            builder::build_sites(
                heap.sample_rate,
                sites,
                opts,
                &filter,
                &mapping::current(),
                emit,
            )
        })
    })
}

/// The gzipped `profile.proto` of a snapshot's heap.
///
/// Samples are encoded as they are made and compressed in 64 KiB batches, then the
/// tables (locations, functions, strings) after them, so memory stays near
/// the size of the compressed output plus the tables, whatever the number
/// of samples (protobuf readers accept fields in any order; the Go runtime
/// also writes its string table last).
pub fn profile(snapshot: &Snapshot, opts: &ProfileOptions) -> Vec<u8> {
    encode(|emit| builder::build(snapshot, opts, &mapping::current(), emit))
}

/// Gzips the profile `build` makes: `build` hands each sample to the
/// closure it is given as it is made, and returns the rest of the message.
fn encode(build: impl FnOnce(&mut dyn FnMut(proto::Sample)) -> proto::Profile) -> Vec<u8> {
    // Go writes profiles with gzip.BestSpeed: profiles are taken on live
    // services, so compression time matters more than a few percent of size.
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    // Samples are encoded into a 64 KiB batch, compressed batch by batch.
    const BATCH: usize = 64 * 1024;
    let mut batch = Vec::with_capacity(BATCH + 1024);
    let mut failed = false;
    let rest = build(&mut |sample| {
        prost::encoding::message::encode(PROFILE_SAMPLE_TAG, &sample, &mut batch);
        if batch.len() >= BATCH {
            failed |= gz.write_all(&batch).is_err();
            batch.clear();
        }
    });
    rest.encode_raw(&mut batch);
    failed |= gz.write_all(&batch).is_err();
    // Writing into a Vec cannot fail (it only allocates); should a future
    // sink fail, return an empty profile rather than panic.
    match gz.finish() {
        Ok(out) if !failed => out,
        _ => Vec::new(),
    }
}

/// Field number of `Profile.sample`.
const PROFILE_SAMPLE_TAG: u32 = 2;

/// The (ungzipped) `Profile` message of a snapshot's heap; [`profile`] is
/// this, encoded and gzipped. For the tests (the generated types are not
/// part of the API).
#[cfg(test)]
fn profile_message(snapshot: &Snapshot, opts: &ProfileOptions) -> proto::Profile {
    let mut samples = Vec::new();
    let mut p = builder::build(snapshot, opts, &mapping::current(), |s| samples.push(s));
    p.sample = samples;
    p
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::snapshot::{Frame, HeapSite};

    #[test]
    fn streamed_encoding_equals_the_message() {
        let mut snap = Snapshot::default();
        snap.heap.sample_rate = 1;
        for (i, name) in ["leaf", "other_leaf"].into_iter().enumerate() {
            snap.heap.sites.push(HeapSite {
                frames: vec![
                    Frame::new(name, Some("src/a.rs".into()), Some(7)).with_address(0x1000, true),
                    Frame::new("caller", Some("src/a.rs".into()), Some(12))
                        .with_address(0x1000 + i as u64, false),
                ],
                live_objects: 2,
                live_bytes: 2048,
                allocated_objects: 5,
                allocated_bytes: 5120,
                oldest_age: Some(Duration::from_secs(1200)),
                ..Default::default()
            });
        }
        for opts in [
            ProfileOptions::heap(),
            ProfileOptions::allocs().min_age(Duration::from_secs(600)),
        ] {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(&profile(&snap, &opts)[..])
                .read_to_end(&mut raw)
                .expect("gunzip");
            let mut streamed = proto::Profile::decode(&raw[..]).expect("decode");
            let message = profile_message(&snap, &opts);
            streamed.time_nanos = message.time_nanos;
            assert_eq!(streamed, message);
        }
    }
}
