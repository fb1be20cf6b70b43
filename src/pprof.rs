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
//! are counted as in use (the leak view; `?min_age=10m` on the HTTP route).
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

pub mod proto;

mod mapping;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message as _;

use crate::histogram::{BOUNDS_NS, BUCKETS};
use crate::snapshot::{Frame, HeapSite, HeapSnapshot, Snapshot};
use crate::SnapshotOptions;

/// The sample types of a Go heap profile, in Go's order.
pub const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// Key of the numeric age label.
pub const AGE_LABEL: &str = "age";
/// Unit of the numeric age label.
pub const AGE_UNIT: &str = "nanoseconds";

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
}

impl ProfileOptions {
    /// Go's `/debug/pprof/heap`: default sample type `inuse_space`.
    pub fn heap() -> Self {
        ProfileOptions {
            kind: ProfileKind::Heap,
            min_age: None,
        }
    }

    /// Go's `/debug/pprof/allocs`: default sample type `alloc_space`.
    pub fn allocs() -> Self {
        ProfileOptions {
            kind: ProfileKind::Allocs,
            min_age: None,
        }
    }

    /// Counts as in use only live allocations at least `age` old.
    ///
    /// [`profile_now`] applies it exactly (it takes a snapshot with
    /// [`SnapshotOptions::min_age`]); [`profile`] and [`text`], given a
    /// snapshot taken without it, apply it per age bucket: they keep the
    /// buckets whose upper bound is at least `age`.
    #[must_use]
    pub fn min_age(mut self, age: Duration) -> Self {
        self.min_age = Some(age);
        self
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
pub fn profile_now(opts: &ProfileOptions) -> Vec<u8> {
    let mut so = SnapshotOptions::new();
    if let Some(age) = opts.min_age {
        so = so.min_age(age);
    }
    profile(&crate::snapshot_with(&so), opts)
}

/// The gzipped `profile.proto` of a snapshot's heap.
///
/// Samples are encoded as they are made and compressed in 64 KiB batches, then the
/// tables (locations, functions, strings) after them, so memory stays near
/// the size of the compressed output plus the tables, whatever the number
/// of samples (protobuf readers accept fields in any order; the Go runtime
/// also writes its string table last).
pub fn profile(snapshot: &Snapshot, opts: &ProfileOptions) -> Vec<u8> {
    // Go writes profiles with gzip.BestSpeed: profiles are taken on live
    // services, so compression time matters more than a few percent of size.
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    // Samples are encoded into a 64 KiB batch, compressed batch by batch.
    const BATCH: usize = 64 * 1024;
    let mut batch = Vec::with_capacity(BATCH + 1024);
    let mut failed = false;
    let rest = build(snapshot, opts, &mapping::current(), |sample| {
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

/// The (ungzipped) `Profile` message of a snapshot's heap, for tools that
/// post-process it; [`profile`] is this, encoded and gzipped.
pub fn profile_message(snapshot: &Snapshot, opts: &ProfileOptions) -> proto::Profile {
    let mut samples = Vec::new();
    let mut p = build(snapshot, opts, &mapping::current(), |s| samples.push(s));
    p.sample = samples;
    p
}

/// One sample's values: `[alloc_objects, alloc_space, inuse_objects,
/// inuse_space]` and its age bucket (`None`: the freed part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Part {
    values: [u64; 4],
    bucket: Option<usize>,
}

/// Splits a site into per-age-bucket parts (live) and one freed part, such
/// that the parts sum to the site's allocated totals.
fn site_parts(site: &HeapSite, min_age: Option<Duration>, out: &mut Vec<Part>) {
    out.clear();
    let min_ns = min_age.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let keep = |i: usize| match (min_ns, BOUNDS_NS.get(i)) {
        (Some(min), Some(&bound)) => bound >= min,
        _ => true,
    };
    let counts = &site.live_ages.counts;
    let by_age = &site.live_bytes_by_age;
    let has_buckets = by_age.iter().any(|&b| b > 0) || counts.iter().any(|&c| c > 0);
    let (mut live_objs, mut live_bytes) = (0u64, 0u64);
    if has_buckets {
        for i in 0..BUCKETS.max(counts.len()).max(by_age.len()) {
            let objs = counts.get(i).copied().unwrap_or(0);
            let bytes = by_age.get(i).copied().unwrap_or(0);
            if (objs == 0 && bytes == 0) || !keep(i) {
                continue;
            }
            live_objs = live_objs.saturating_add(objs);
            live_bytes = live_bytes.saturating_add(bytes);
            out.push(Part {
                values: [objs, bytes, objs, bytes],
                bucket: Some(i.min(BUCKETS - 1)),
            });
        }
    } else if site.live_bytes > 0 || site.live_objects > 0 {
        // No per-age breakdown: one unlabelled live part, dropped when the
        // oldest live allocation is younger than min_age.
        let old_enough = match (min_age, site.oldest_age) {
            (Some(min), Some(oldest)) => oldest >= min,
            _ => true,
        };
        if old_enough {
            live_objs = site.live_objects;
            live_bytes = site.live_bytes;
            out.push(Part {
                values: [live_objs, live_bytes, live_objs, live_bytes],
                bucket: None,
            });
        }
    }
    let freed_objs = site.allocated_objects.saturating_sub(live_objs);
    let freed_bytes = site.allocated_bytes.saturating_sub(live_bytes);
    if freed_objs > 0 || freed_bytes > 0 {
        out.push(Part {
            values: [freed_objs, freed_bytes, 0, 0],
            bucket: None,
        });
    }
}

/// The `age` label value of a bucket: its upper bound in nanoseconds; for
/// the `+Inf` bucket the site's oldest age (at least the last bound).
fn bucket_age_ns(bucket: usize, oldest: Option<Duration>) -> i64 {
    let last = BOUNDS_NS[BOUNDS_NS.len() - 1];
    let ns = match BOUNDS_NS.get(bucket) {
        Some(&b) => b,
        None => oldest
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(last)
            .max(last.saturating_add(1)),
    };
    to_i64(ns)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Interning tables of one profile under construction.
struct Builder {
    strings: Vec<String>,
    string_ix: HashMap<String, i64>,
    functions: Vec<proto::Function>,
    function_ix: HashMap<(i64, i64), u64>,
    locations: Vec<proto::Location>,
    /// Locations by address (several only if one address was symbolized
    /// differently, e.g. in a synthetic snapshot).
    by_address: HashMap<u64, Vec<u64>>,
    /// Locations without an address, by their lines.
    by_lines: HashMap<Vec<(u64, i64)>, u64>,
    mappings: Vec<mapping::MappingInfo>,
}

impl Builder {
    fn new(mappings: &[mapping::MappingInfo]) -> Self {
        let mut b = Builder {
            strings: Vec::new(),
            string_ix: HashMap::new(),
            functions: Vec::new(),
            function_ix: HashMap::new(),
            locations: Vec::new(),
            by_address: HashMap::new(),
            by_lines: HashMap::new(),
            mappings: mappings.to_vec(),
        };
        b.string(""); // string_table[0] must be "".
        b
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.string_ix.get(s) {
            return i;
        }
        let i = to_i64(self.strings.len() as u64);
        self.strings.push(s.to_owned());
        self.string_ix.insert(s.to_owned(), i);
        i
    }

    fn function(&mut self, f: &Frame) -> u64 {
        let name = self.string(&f.function);
        let file = self.string(f.file.as_deref().unwrap_or(""));
        if let Some(&id) = self.function_ix.get(&(name, file)) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        self.functions.push(proto::Function {
            id,
            name,
            system_name: name,
            filename: file,
            start_line: 0,
        });
        self.function_ix.insert((name, file), id);
        id
    }

    /// The mapping id (1-based) holding `addr`, or 0.
    fn mapping_of(&self, addr: u64) -> u64 {
        if addr == 0 {
            return 0;
        }
        self.mappings
            .iter()
            .position(|m| m.start <= addr && addr < m.limit)
            .map_or(0, |i| i as u64 + 1)
    }

    /// Whether location `id` has exactly the lines of `group`.
    fn same_lines(&self, id: u64, group: &[Frame]) -> bool {
        let loc = &self.locations[(id - 1) as usize];
        loc.line.len() == group.len()
            && loc.line.iter().zip(group).all(|(l, f)| {
                let func = &self.functions[(l.function_id - 1) as usize];
                l.line == i64::from(f.line.unwrap_or(0))
                    && self.strings[func.name as usize] == f.function
                    && self.strings[func.filename as usize] == f.file.as_deref().unwrap_or("")
            })
    }

    /// One location for a group of frames sharing an address: the inlined
    /// ones (innermost first) and the function they were inlined into last.
    ///
    /// Real stacks repeat addresses far more often than they bring new ones,
    /// so a known address is found by one integer lookup and a comparison
    /// of names, without interning anything.
    fn location(&mut self, group: &[Frame]) -> u64 {
        let address = group.last().map_or(0, |f| f.address);
        if address != 0 {
            if let Some(ids) = self.by_address.get(&address) {
                if let Some(&id) = ids.iter().find(|&&id| self.same_lines(id, group)) {
                    return id;
                }
            }
        }
        let lines: Vec<(u64, i64)> = group
            .iter()
            .map(|f| (self.function(f), i64::from(f.line.unwrap_or(0))))
            .collect();
        if address == 0 {
            if let Some(&id) = self.by_lines.get(&lines) {
                return id;
            }
        }
        let id = self.locations.len() as u64 + 1;
        self.locations.push(proto::Location {
            id,
            mapping_id: self.mapping_of(address),
            address,
            line: lines
                .iter()
                .map(|&(function_id, line)| proto::Line { function_id, line })
                .collect(),
            is_folded: false,
        });
        if address == 0 {
            self.by_lines.insert(lines, id);
        } else {
            self.by_address.entry(address).or_default().push(id);
        }
        id
    }

    /// Location ids of a stack, leaf first.
    fn stack(&mut self, frames: &[Frame]) -> Vec<u64> {
        let mut ids = Vec::with_capacity(frames.len());
        let mut start = 0;
        for (i, f) in frames.iter().enumerate() {
            // A frame with `inlined` was inlined into the next one: keep
            // grouping. The group closes at the frame it was inlined into
            // (or at the end of a malformed list that ends inlined).
            if !f.inlined || i + 1 == frames.len() {
                ids.push(self.location(&frames[start..=i]));
                start = i + 1;
            }
        }
        if ids.is_empty() {
            let unknown = Frame::new("[unknown stack]", None, None);
            ids.push(self.location(std::slice::from_ref(&unknown)));
        }
        ids
    }
}

/// Builds the profile, handing each sample to `emit` as it is made; the
/// returned message has everything but the samples.
fn build(
    snapshot: &Snapshot,
    opts: &ProfileOptions,
    maps: &[mapping::MappingInfo],
    mut emit: impl FnMut(proto::Sample),
) -> proto::Profile {
    let heap = &snapshot.heap;
    let mut b = Builder::new(maps);
    let sample_type = SAMPLE_TYPES
        .iter()
        .map(|(t, u)| proto::ValueType {
            r#type: b.string(t),
            unit: b.string(u),
        })
        .collect();
    let period_type = Some(proto::ValueType {
        r#type: b.string("space"),
        unit: b.string("bytes"),
    });
    let age_key = b.string(AGE_LABEL);
    let age_unit = b.string(AGE_UNIT);

    let mut parts = Vec::new();
    for site in &heap.sites {
        site_parts(site, opts.min_age, &mut parts);
        if parts.is_empty() {
            continue;
        }
        let stack = b.stack(&site.frames);
        for p in &parts {
            let label = p
                .bucket
                .map(|i| proto::Label {
                    key: age_key,
                    str: 0,
                    num: bucket_age_ns(i, site.oldest_age),
                    num_unit: age_unit,
                })
                .into_iter()
                .collect();
            emit(proto::Sample {
                location_id: stack.clone(),
                value: p.values.iter().map(|&v| to_i64(v)).collect(),
                label,
            });
        }
    }

    let comment = vec![
        b.string(&format!(
            "leakscope heap profile: unbiased estimates from allocations sampled every ~{} bytes",
            heap.sample_rate
        )),
        b.string("label age = upper bound of the live allocations' age bucket (unlabelled samples: freed allocations)"),
    ];
    let default_sample_type = b.string(opts.kind.default_sample_type());

    let mut mapping = Vec::with_capacity(b.mappings.len());
    for (i, m) in maps.iter().enumerate() {
        let filename = b.string(&m.path);
        let build_id = m.build_id.as_deref().map_or(0, |id| b.string(id));
        mapping.push(proto::Mapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.limit,
            file_offset: m.offset,
            filename,
            build_id,
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        });
    }

    let time_nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    proto::Profile {
        sample_type,
        sample: Vec::new(),
        mapping,
        location: std::mem::take(&mut b.locations),
        function: std::mem::take(&mut b.functions),
        string_table: std::mem::take(&mut b.strings),
        drop_frames: 0,
        keep_frames: 0,
        time_nanos,
        duration_nanos: 0,
        period_type,
        period: to_i64(heap.sample_rate),
        comment,
        default_sample_type,
    }
}

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
    let mut parts = Vec::new();
    // (summed values, (bucket, in-use objects, in-use bytes) per age, site)
    type Record<'a> = ([u64; 4], Vec<(usize, u64, u64)>, &'a HeapSite);
    let mut records: Vec<Record<'_>> = Vec::new();
    for site in &heap.sites {
        site_parts(site, opts.min_age, &mut parts);
        if parts.is_empty() {
            continue;
        }
        let mut sum = [0u64; 4];
        let mut ages = Vec::new();
        for p in &parts {
            for (s, v) in sum.iter_mut().zip(p.values) {
                *s = s.saturating_add(v);
            }
            if let Some(i) = p.bucket {
                ages.push((i, p.values[2], p.values[3]));
            }
        }
        records.push((sum, ages, site));
    }
    records.sort_by(|a, b| b.0[3].cmp(&a.0[3]).then(b.0[1].cmp(&a.0[1])));
    let mut total = [0u64; 4];
    for (sum, _, _) in &records {
        for (t, v) in total.iter_mut().zip(sum) {
            *t = t.saturating_add(*v);
        }
    }

    let mut out = String::new();
    // `write!` into a String cannot fail.
    let _ = writeln!(
        out,
        "heap profile: {}: {} [{}: {}] @ heap/2",
        total[2], total[3], total[0], total[1]
    );
    let _ = writeln!(
        out,
        "# leakscope: unbiased estimates from allocations sampled every ~{} bytes (already scaled){}",
        heap.sample_rate,
        opts.min_age
            .map(|a| format!("; in use = live for at least {}", crate::format::fmt_duration(a)))
            .unwrap_or_default()
    );
    for (sum, ages, site) in &records {
        let _ = write!(out, "{}: {} [{}: {}] @", sum[2], sum[3], sum[0], sum[1]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::{bucket_index, Histogram};

    fn site(frames: Vec<Frame>, live: &[(Duration, u64, u64)], alloc: (u64, u64)) -> HeapSite {
        let mut s = HeapSite {
            frames,
            allocated_objects: alloc.0,
            allocated_bytes: alloc.1,
            live_ages: Histogram::empty(),
            live_bytes_by_age: vec![0; BUCKETS],
            ..Default::default()
        };
        for &(age, objs, bytes) in live {
            s.live_ages.record_n(age, objs);
            let ns = u64::try_from(age.as_nanos()).unwrap();
            s.live_bytes_by_age[bucket_index(ns)] += bytes;
            s.live_objects += objs;
            s.live_bytes += bytes;
            s.oldest_age = s.oldest_age.max(Some(age));
        }
        s
    }

    #[test]
    fn parts_split_live_by_age_and_keep_alloc_totals() {
        let s = site(
            vec![Frame::new("f", None, None)],
            &[
                (Duration::from_millis(3), 2, 200),
                (Duration::from_secs(3600), 1, 1000),
            ],
            (10, 5000),
        );
        let mut parts = Vec::new();
        site_parts(&s, None, &mut parts);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].values, [2, 200, 2, 200]);
        assert_eq!(parts[0].bucket, Some(bucket_index(3_000_000)));
        assert_eq!(parts[1].values, [1, 1000, 1, 1000]);
        assert_eq!(parts[2].values, [7, 3800, 0, 0]);
        assert_eq!(parts[2].bucket, None);
        let alloc: u64 = parts.iter().map(|p| p.values[1]).sum();
        assert_eq!(alloc, 5000);

        site_parts(&s, Some(Duration::from_secs(600)), &mut parts);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].values, [1, 1000, 1, 1000]);
        assert_eq!(parts[1].values, [9, 4000, 0, 0]);
    }

    #[test]
    fn parts_without_age_breakdown_fall_back_to_one_live_part() {
        let s = HeapSite {
            frames: vec![Frame::new("f", None, None)],
            live_objects: 3,
            live_bytes: 300,
            allocated_objects: 3,
            allocated_bytes: 300,
            oldest_age: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let mut parts = Vec::new();
        site_parts(&s, None, &mut parts);
        assert_eq!(
            parts,
            vec![Part {
                values: [3, 300, 3, 300],
                bucket: None
            }]
        );
        site_parts(&s, Some(Duration::from_secs(60)), &mut parts);
        assert_eq!(parts[0].values, [3, 300, 0, 0]);
    }

    #[test]
    fn inf_bucket_age_is_at_least_the_last_bound() {
        let last = BOUNDS_NS[BOUNDS_NS.len() - 1];
        assert_eq!(bucket_age_ns(BUCKETS - 1, None), to_i64(last + 1));
        let ten_days = Duration::from_secs(10 * 86_400);
        assert_eq!(
            bucket_age_ns(BUCKETS - 1, Some(ten_days)),
            to_i64(ten_days.as_nanos() as u64)
        );
        assert_eq!(bucket_age_ns(0, None), 1_000);
    }

    #[test]
    fn inlined_frames_share_one_location() {
        let frames = vec![
            Frame::new("inner", Some("a.rs".into()), Some(1)).with_address(0x10, true),
            Frame::new("middle", Some("a.rs".into()), Some(2)).with_address(0x10, true),
            Frame::new("outer", Some("a.rs".into()), Some(3)).with_address(0x10, false),
            Frame::new("main", Some("m.rs".into()), Some(9)).with_address(0x20, false),
        ];
        let mut b = Builder::new(&[]);
        let ids = b.stack(&frames);
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(b.locations[0].address, 0x10);
        assert_eq!(b.locations[0].line.len(), 3);
        let f0 = b.locations[0].line[0].function_id as usize - 1;
        let f2 = b.locations[0].line[2].function_id as usize - 1;
        assert_eq!(b.strings[b.functions[f0].name as usize], "inner");
        assert_eq!(b.strings[b.functions[f2].name as usize], "outer");
        // Same stack again: same ids, no new entries.
        assert_eq!(b.stack(&frames), vec![1, 2]);
        assert_eq!(b.locations.len(), 2);
        assert_eq!(b.functions.len(), 4);
        // An empty stack still gets a location.
        assert_eq!(b.stack(&[]).len(), 1);
    }

    #[test]
    fn locations_point_into_their_mapping() {
        let maps = [
            mapping::MappingInfo {
                start: 0x1000,
                limit: 0x2000,
                offset: 0,
                path: "/bin/app".into(),
                build_id: Some("abcd".into()),
            },
            mapping::MappingInfo {
                start: 0x8000,
                limit: 0x9000,
                offset: 0x1000,
                path: "/lib/libc.so".into(),
                build_id: None,
            },
        ];
        let b = Builder::new(&maps);
        assert_eq!(b.mapping_of(0x1000), 1);
        assert_eq!(b.mapping_of(0x8fff), 2);
        assert_eq!(b.mapping_of(0x9000), 0);
        assert_eq!(b.mapping_of(0), 0);
    }
}
