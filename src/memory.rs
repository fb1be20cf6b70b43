//! Where the memory is: the process's resident set (RSS) broken down into
//! parts that sum to it exactly ([`memory()`], [`Memory`]).
//!
//! # The parts
//!
//! RSS and its anonymous, file-backed and shared parts come from
//! `/proc/self/status` (`VmRSS`, `RssAnon`, `RssFile`, `RssShmem`). Five
//! parts, taken in this order, add up to it:
//!
//! 1. **thread stacks**: the *resident* pages of the threads' stacks
//!    (`mincore(2)` over the main `[stack]` mapping and every anonymous
//!    read-write mapping that sits right above a `---p` guard of at most
//!    64 KiB, which is how glibc maps a thread's stack and Rust std a
//!    signal stack; a longer `---p` run is a glibc arena's reserved tail). A
//!    thread reserves 2 MiB (Rust's default) to 8 MiB (the main thread's
//!    `RLIMIT_STACK`) but touches only what it uses: threads x stack size
//!    ([`Memory::thread_stacks_mapped_bytes`], the mapped size of those
//!    mappings) is an upper bound, often 100 times the resident part.
//! 2. **heap**: the Rust heap's exact live bytes ([`crate::heap_stats`]:
//!    what the global allocator handed out and has not got back, as
//!    requested, so without the allocator's rounding).
//! 3. **leakscope**: leakscope's own metadata
//!    ([`HeapStats::metadata_bytes`](crate::HeapStats::metadata_bytes): the
//!    fixed tables and counter pool, what it allocated under its guard
//!    including the symbolizer, and the unwinder's mappings), with one
//!    difference: the fixed tables (about 8 MiB of zero-initialised
//!    statics) count by their resident pages, not their size, since a
//!    table page is resident only once it was written (pages that were
//!    only read map the kernel's zero page, which RSS does not count:
//!    `/proc/self/pagemap` tells them apart, `mincore` does not).
//! 4. **allocator**: the inner allocator's overhead, what it holds beyond
//!    what it handed out ([`InnerAllocatorStats::held_bytes`] minus
//!    [`InnerAllocatorStats::in_use_bytes`]): free chunks kept for reuse,
//!    fragmentation, its own metadata, as far as it reports them.
//! 5. **unattributed**: RSS minus the four parts above: code and data
//!    mapped from files (the binary, shared libraries), memory that C code
//!    `malloc`s directly behind Rust's back, `mmap`s, and the allocator's
//!    per-block headers and rounding. When the process's `malloc` can be
//!    read, [`Memory::unattributed_malloc_bytes`] says how much of it is
//!    `malloc`ed memory the Rust heap does not account for.
//!
//! Each part but the last is a *claim* (the reading behind it is kept in
//! the `*_claim` fields) and may not be resident: a `Vec` reserved and
//! never written, an allocator's free pages it has already returned with
//! `madvise`, a size the reader estimated. All four are private anonymous
//! memory, so they are taken, in the order above, from the anonymous part
//! of RSS (`RssAnon`), each cut to what is left of it; the file-backed and
//! shared parts are always unattributed. What is cut is counted in
//! [`Memory::overcount_bytes`] and explained in the report, never shown as
//! a negative unattributed part. Unattributed is the rest, so the parts sum
//! to RSS exactly.
//!
//! # The inner allocator
//!
//! The allocator [`TrackingAllocator`](crate::TrackingAllocator) wraps is
//! read through the [`InnerAllocator`] trait; [`set_inner_allocator`]
//! chooses which. By default it is [`SystemMalloc`], the system allocator
//! (`TrackingAllocator::system()`), read with glibc's `mallinfo2` (found at
//! run time; on other C libraries the allocator part is zero). With the
//! `jemalloc` feature, [`Jemalloc`] reads `tikv-jemalloc-ctl`'s
//! `stats.allocated`, `active`, `resident` and `retained`. Any other
//! allocator can implement the trait.
//!
//! glibc's `malloc` is also C code's `malloc`: its in-use bytes minus the
//! Rust heap and leakscope's heap metadata is memory malloced outside the
//! Rust heap (plus malloc's headers and rounding of the Rust heap's own
//! blocks, 8 to 24 bytes each). It stays in *unattributed* (Rust did not
//! allocate it), and [`Memory::unattributed_malloc_bytes`] names it there.
//! When the inner allocator is not the system `malloc` (jemalloc),
//! glibc's in-use bytes are wholly C code's.
//!
//! # Cost
//!
//! No symbolization, no walk of leakscope's tables: `/proc/self/status`
//! read into a fixed buffer on the stack, the fixed tables' entries of
//! `/proc/self/pagemap`, `mallinfo2` (which walks glibc's free lists under
//! its arena locks: microseconds on a small heap, more on a very fragmented
//! one) and the allocator totals: 40 to 90 µs in a process of 17 threads.
//! The thread-stack scan (`/proc/self/maps` streamed line by line through a
//! stack buffer, one `mincore` per stack: about 250 µs with 17 threads,
//! more with more) is reused for 10 s of leakscope's clock, so the stack
//! part may be that old. It runs under leakscope's re-entrancy guard, so
//! whatever an [`InnerAllocator`] implementation allocates is leakscope's
//! memory; it never runs on the allocation path.

use core::fmt;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;

use crate::format::fmt_bytes;

/// The process's memory, from RSS down to the Rust heap. The five parts
/// (`thread_stacks_bytes`, `heap_bytes`, `leakscope_bytes`,
/// `allocator_bytes`, `unattributed_bytes`) sum to `rss_bytes` exactly;
/// see the [module docs](self) for what each holds.
///
/// `Display` prints the breakdown as the text report's first lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Memory {
    /// Whether `/proc/self/status` could be read (Linux). Without it RSS
    /// and every part are 0; the claims are still filled in.
    pub available: bool,
    /// Resident set size (`VmRSS`).
    pub rss_bytes: u64,
    /// Its anonymous part (`RssAnon`): heaps, stacks, anonymous `mmap`s.
    pub rss_anon_bytes: u64,
    /// Its file-backed part (`RssFile`): code and data of the binary and
    /// libraries, mapped files.
    pub rss_file_bytes: u64,
    /// Its shared-memory part (`RssShmem`).
    pub rss_shmem_bytes: u64,

    /// Part 1: resident thread stacks (cut to RSS; the scan is reused for
    /// up to 10 s).
    pub thread_stacks_bytes: u64,
    /// Part 2: the Rust heap's live bytes (cut to what RSS has left).
    pub heap_bytes: u64,
    /// Part 3: leakscope's metadata (cut to what RSS has left).
    pub leakscope_bytes: u64,
    /// Part 4: the inner allocator's overhead (cut to what RSS has left).
    pub allocator_bytes: u64,
    /// Part 5: RSS minus parts 1 to 4 (so at least the file-backed and
    /// shared parts).
    pub unattributed_bytes: u64,
    /// Of `unattributed_bytes`: bytes `malloc` has handed out that are not
    /// the Rust heap's nor leakscope's (C code calling `malloc`, and
    /// malloc's per-block headers and rounding of the Rust heap), when the
    /// system `malloc` can be read (glibc); else 0.
    pub unattributed_malloc_bytes: u64,
    /// Claims that did not fit in the anonymous part of RSS (counted but
    /// not resident: memory allocated and never written, allocator pages
    /// returned to the system, estimates). 0 when every claim fit.
    pub overcount_bytes: u64,

    /// Resident bytes of the thread stacks found (the claim behind part 1).
    pub thread_stacks_claim: u64,
    /// The Rust heap's exact live bytes (`heap_stats().live_bytes`).
    pub heap_claim: u64,
    /// leakscope's metadata bytes (`heap_stats().metadata_bytes`, its fixed
    /// tables counted by their resident pages).
    pub leakscope_claim: u64,
    /// The inner allocator's held minus in-use bytes.
    pub allocator_claim: u64,

    /// Threads in the process (`Threads:` in `/proc/self/status`).
    pub threads: u64,
    /// Thread stacks found in `/proc/self/maps`.
    pub thread_stacks: u64,
    /// Their mapped size: an upper bound, roughly threads x stack size;
    /// only the touched part is resident.
    pub thread_stacks_mapped_bytes: u64,
    /// What the inner allocator reported, if it could be read.
    pub inner_allocator: Option<InnerAllocatorStats>,
}

/// What an inner allocator reports about itself ([`InnerAllocator::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct InnerAllocatorStats {
    /// A short name: `"glibc malloc"`, `"jemalloc"`.
    pub name: &'static str,
    /// Bytes it has handed out and not got back (to everyone who calls it),
    /// with its own rounding.
    pub in_use_bytes: u64,
    /// Bytes it holds from the system and keeps resident for itself: in
    /// use, free but kept, its own metadata.
    pub held_bytes: u64,
    /// Whether it is also the process's C `malloc` (so C code's
    /// allocations are part of `in_use_bytes`).
    pub serves_malloc: bool,
    /// Its raw numbers, by its own names (`arena`, `hblkhd`, `uordblks`,
    /// ... for glibc; `allocated`, `active`, `resident`, `retained` for
    /// jemalloc).
    pub details: Vec<(&'static str, u64)>,
}

impl InnerAllocatorStats {
    /// Stats with the given name, in-use and held bytes, no details.
    pub fn new(name: &'static str, in_use_bytes: u64, held_bytes: u64) -> Self {
        InnerAllocatorStats {
            name,
            in_use_bytes,
            held_bytes,
            serves_malloc: false,
            details: Vec::new(),
        }
    }

    /// Marks the allocator as the process's C `malloc` as well.
    #[must_use]
    pub fn serving_malloc(mut self) -> Self {
        self.serves_malloc = true;
        self
    }

    /// Adds a raw number under the allocator's own name for it.
    #[must_use]
    pub fn detail(mut self, name: &'static str, value: u64) -> Self {
        self.details.push((name, value));
        self
    }
}

/// An allocator that can say how much it holds: implement it for the
/// allocator your [`TrackingAllocator`](crate::TrackingAllocator) wraps and
/// pass it to [`set_inner_allocator`], and [`memory()`] reports its
/// overhead (held minus in use) as the allocator part.
///
/// `stats` is called from [`memory()`] under leakscope's re-entrancy guard
/// (what it allocates is leakscope's) and must not call [`memory()`].
/// `None`: nothing could be read (the allocator part is then 0).
pub trait InnerAllocator: Send + Sync {
    /// The allocator's numbers now.
    fn stats(&self) -> Option<InnerAllocatorStats>;
}

/// The system allocator, read with glibc's `mallinfo2` (looked up at run
/// time: glibc 2.33 or newer; elsewhere `stats` is `None`).
///
/// In use: `uordblks + hblkhd` (chunks handed out from the arenas, and
/// mmapped chunks); held: `arena + hblkhd` (bytes the arenas got from
/// the system, and mmapped chunks). Held minus in use is `fordblks`, the
/// free chunks malloc keeps in its arenas (part of them may be untouched
/// or trimmed pages: see the overcount in the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemMalloc;

impl InnerAllocator for SystemMalloc {
    fn stats(&self) -> Option<InnerAllocatorStats> {
        glibc_stats()
    }
}

/// jemalloc through `tikv-jemalloc-ctl` (feature `jemalloc`): in use is
/// `stats.allocated`, held is `stats.resident`; `active` and `retained`
/// (virtual memory kept mapped but returned to the system, not resident)
/// are in the details. `tikv-jemallocator`'s symbols are prefixed by
/// default, so it does not serve C `malloc`.
#[cfg(feature = "jemalloc")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Jemalloc;

#[cfg(feature = "jemalloc")]
impl InnerAllocator for Jemalloc {
    fn stats(&self) -> Option<InnerAllocatorStats> {
        use tikv_jemalloc_ctl::{epoch, stats};
        // The stats are cached until the epoch advances.
        epoch::advance().ok()?;
        let allocated = stats::allocated::read().ok()? as u64;
        let active = stats::active::read().ok()? as u64;
        let resident = stats::resident::read().ok()? as u64;
        let retained = stats::retained::read().ok()? as u64;
        Some(
            InnerAllocatorStats::new("jemalloc", allocated, resident)
                .detail("allocated", allocated)
                .detail("active", active)
                .detail("resident", resident)
                .detail("retained", retained),
        )
    }
}

/// The chosen inner allocator: a leaked `&'static dyn InnerAllocator`
/// (null: [`SystemMalloc`]). An atomic rather than a lock, so a reading in
/// a forked child never waits for a lock a vanished thread held.
static INNER: AtomicPtr<&'static dyn InnerAllocator> = AtomicPtr::new(core::ptr::null_mut());

/// Chooses how [`memory()`] reads the inner allocator (by default
/// [`SystemMalloc`]).
///
/// ```
/// leakscope::memory::set_inner_allocator(&leakscope::memory::SystemMalloc);
/// ```
///
/// Each call keeps one 16-byte cell for the rest of the process (the
/// reference, boxed so it fits an atomic pointer), as leakscope's metadata.
pub fn set_inner_allocator(inner: &'static dyn InnerAllocator) {
    let cell: &'static mut &'static dyn InnerAllocator = {
        let _g = crate::alloc::guard::Guard::enter();
        Box::leak(Box::new(inner))
    };
    INNER.store(cell, Ordering::Release);
}

/// Reads the process's memory and breaks it down (see the
/// [module docs](self)). Cheap: no symbolization, no table walk.
///
/// ```
/// let m = leakscope::memory();
/// assert_eq!(
///     m.thread_stacks_bytes + m.heap_bytes + m.leakscope_bytes + m.allocator_bytes
///         + m.unattributed_bytes,
///     m.rss_bytes
/// );
/// println!("{m}");
/// ```
pub fn memory() -> Memory {
    // Everything here reads into stack buffers; the guard is for the
    // inner allocator's `stats` (an implementation may allocate: its
    // `details` do), whose result is copied out below.
    crate::alloc::as_metadata(read)
}

fn read() -> Memory {
    let status = read_status();
    let stacks = stacks_cached();
    let stats = crate::heap_stats();
    let cell = INNER.load(Ordering::Acquire);
    let inner = if cell.is_null() {
        SystemMalloc.stats()
    } else {
        // SAFETY: a non-null `INNER` is a leaked box from
        // `set_inner_allocator`, never freed.
        unsafe { *cell }.stats()
    };
    // C code's malloc, as far as glibc's malloc can tell.
    let malloc_outside = match &inner {
        Some(i) if i.serves_malloc => {
            let ours = stats
                .live_bytes
                .saturating_add(crate::alloc::metadata_live_raw().max(0) as u64);
            i.in_use_bytes.saturating_sub(ours)
        }
        _ => glibc_stats().map_or(0, |g| g.in_use_bytes),
    };
    let allocator_claim = inner
        .as_ref()
        .map_or(0, |i| i.held_bytes.saturating_sub(i.in_use_bytes));
    let mut m = Memory {
        available: status.available,
        rss_bytes: status.rss,
        rss_anon_bytes: status.anon,
        rss_file_bytes: status.file,
        rss_shmem_bytes: status.shmem,
        thread_stacks_claim: stacks.resident,
        heap_claim: stats.live_bytes,
        leakscope_claim: leakscope_resident(stats.metadata_bytes),
        allocator_claim,
        threads: status.threads,
        thread_stacks: stacks.count,
        thread_stacks_mapped_bytes: stacks.mapped,
        inner_allocator: inner,
        ..Memory::default()
    };
    m.split(malloc_outside);
    m
}

impl Memory {
    /// Cuts the claims to RSS in order and makes unattributed the rest.
    fn split(&mut self, malloc_outside: u64) {
        // Every claim is private anonymous memory (malloc'd, mmapped
        // anonymously, stacks): the claims share RssAnon, not RSS, so the
        // file-backed and shared parts always stay unattributed.
        let anon = if self.rss_anon_bytes > 0 {
            self.rss_anon_bytes.min(self.rss_bytes)
        } else {
            self.rss_bytes
        };
        let mut left = anon;
        let mut over = 0u64;
        let mut take = |claim: u64| {
            let t = claim.min(left);
            left -= t;
            over = over.saturating_add(claim - t);
            t
        };
        self.thread_stacks_bytes = take(self.thread_stacks_claim);
        self.heap_bytes = take(self.heap_claim);
        self.leakscope_bytes = take(self.leakscope_claim);
        self.allocator_bytes = take(self.allocator_claim);
        self.overcount_bytes = over;
        self.unattributed_bytes = self.rss_bytes - (anon - left);
        // C code's malloc is anonymous memory too.
        self.unattributed_malloc_bytes = malloc_outside.min(left);
    }

    /// The parts in report order: (name, bytes). They sum to
    /// [`Memory::rss_bytes`]. The names are the `kind` label values of the
    /// `leakscope_memory_bytes` metric.
    pub fn parts(&self) -> [(&'static str, u64); 5] {
        [
            ("heap", self.heap_bytes),
            ("leakscope", self.leakscope_bytes),
            ("allocator", self.allocator_bytes),
            ("thread_stacks", self.thread_stacks_bytes),
            ("unattributed", self.unattributed_bytes),
        ]
    }

    /// `part` as a share of RSS, in percent (0 when RSS is unknown).
    pub fn share(&self, part: u64) -> f64 {
        if self.rss_bytes == 0 {
            0.0
        } else {
            part as f64 * 100.0 / self.rss_bytes as f64
        }
    }
}

impl fmt::Display for Memory {
    /// The breakdown, one part a line (the text report's first lines).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.available {
            return writeln!(
                f,
                "memory: RSS unknown (no /proc/self/status); Rust heap {} live, leakscope {}",
                fmt_bytes(self.heap_claim),
                fmt_bytes(self.leakscope_claim)
            );
        }
        writeln!(
            f,
            "memory: RSS {} (anonymous {}, file-backed {}, shared {})",
            fmt_bytes(self.rss_bytes),
            fmt_bytes(self.rss_anon_bytes),
            fmt_bytes(self.rss_file_bytes),
            fmt_bytes(self.rss_shmem_bytes)
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, b: u64, note: String| {
            writeln!(
                f,
                "  {name:<14} {:>10} {:>5.1}%{note}",
                fmt_bytes(b),
                self.share(b)
            )
        };
        row(
            f,
            "heap",
            self.heap_bytes,
            "  Rust heap, live (exact)".into(),
        )?;
        row(
            f,
            "leakscope",
            self.leakscope_bytes,
            "  leakscope's own metadata".into(),
        )?;
        let alloc_note = match &self.inner_allocator {
            Some(i) => format!("  {} overhead: held but not in use", i.name),
            None => "  inner allocator not readable".into(),
        };
        row(f, "allocator", self.allocator_bytes, alloc_note)?;
        row(
            f,
            "thread stacks",
            self.thread_stacks_bytes,
            format!(
                "  resident, {} thread(s) ({} stacks mapped: {})",
                self.threads,
                self.thread_stacks,
                fmt_bytes(self.thread_stacks_mapped_bytes)
            ),
        )?;
        let malloc_note = if self.unattributed_malloc_bytes > 0 {
            format!(
                "  of which malloc outside the Rust heap: {}",
                fmt_bytes(self.unattributed_malloc_bytes)
            )
        } else {
            String::new()
        };
        row(f, "unattributed", self.unattributed_bytes, malloc_note)?;
        writeln!(
            f,
            "  unattributed is usually: code and data mapped from files (the binary, libraries: {} file-backed), C code calling malloc directly, anonymous mmaps, allocator headers and rounding",
            fmt_bytes(self.rss_file_bytes + self.rss_shmem_bytes)
        )?;
        if self.overcount_bytes > 0 {
            writeln!(
                f,
                "  claimed but not resident: {} (allocated and never written, pages returned to the system, estimates); cut from the parts above, last first",
                fmt_bytes(self.overcount_bytes)
            )?;
        }
        Ok(())
    }
}

/// leakscope's metadata with its fixed tables (statics, counted at their
/// full size in `metadata_bytes`) counted by their resident pages only.
fn leakscope_resident(metadata_bytes: u64) -> u64 {
    let page = page_size();
    let mut full = 0u64;
    let mut resident = 0u64;
    for (start, len) in crate::alloc::fixed_tables() {
        full += len as u64;
        // Whole pages around the table (a page shared with a neighbour
        // counts when resident: at most two pages per table).
        let lo = start / page * page;
        let hi = (start + len).div_ceil(page) * page;
        resident += private_resident_bytes(lo, hi).min(len as u64);
    }
    metadata_bytes.saturating_sub(full) + resident
}

// -- /proc/self/status --

#[derive(Default)]
struct Status {
    available: bool,
    rss: u64,
    anon: u64,
    file: u64,
    shmem: u64,
    threads: u64,
}

/// Reads `/proc/self/status` into a stack buffer (it is about 1.5 KiB).
fn read_status() -> Status {
    use std::io::Read as _;
    let mut buf = [0u8; 8192];
    let mut st = Status::default();
    let Ok(mut file) = std::fs::File::open("/proc/self/status") else {
        return st;
    };
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return st,
        }
    }
    parse_status(&buf[..n], &mut st);
    st
}

fn parse_status(text: &[u8], st: &mut Status) {
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, rest) = (&line[..colon], &line[colon + 1..]);
        let value = || {
            let digits: u64 = rest
                .iter()
                .skip_while(|b| b.is_ascii_whitespace())
                .take_while(|b| b.is_ascii_digit())
                .fold(0u64, |a, &b| {
                    a.saturating_mul(10).saturating_add((b - b'0') as u64)
                });
            digits
        };
        match key {
            b"VmRSS" => {
                st.rss = value() * 1024;
                st.available = true;
            }
            b"RssAnon" => st.anon = value() * 1024,
            b"RssFile" => st.file = value() * 1024,
            b"RssShmem" => st.shmem = value() * 1024,
            b"Threads" => st.threads = value(),
            _ => {}
        }
    }
}

// -- thread stacks: /proc/self/maps and mincore --

#[derive(Default)]
struct Stacks {
    count: u64,
    mapped: u64,
    resident: u64,
}

/// One line of `/proc/self/maps`, the fields the stack finder needs.
#[derive(Clone, Copy, Default)]
struct MapLine {
    start: usize,
    end: usize,
    /// `rw-p`.
    rw_private: bool,
    /// `---p`.
    guard: bool,
    /// No path, inode 0.
    anonymous: bool,
    /// The `[stack]` pseudo-path.
    main_stack: bool,
}

fn parse_map_line(line: &[u8]) -> Option<MapLine> {
    let mut fields = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let range = fields.next()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let _dev = fields.next()?;
    let inode = fields.next()?;
    let path = fields.next();
    let dash = range.iter().position(|&b| b == b'-')?;
    let start = hex(&range[..dash])?;
    let end = hex(&range[dash + 1..])?;
    Some(MapLine {
        start,
        end,
        rw_private: perms == b"rw-p",
        guard: perms == b"---p",
        anonymous: path.is_none() && inode == b"0",
        main_stack: path == Some(b"[stack]".as_slice()),
    })
}

fn hex(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0usize, |a, &b| {
        let d = (b as char).to_digit(16)? as usize;
        Some((a << 4) | d)
    })
}

/// How long a scan of the thread stacks is reused, on leakscope's clock.
const STACKS_FRESH_NS: u64 = 10_000_000_000;

/// [`read_stacks`], at most once per [`STACKS_FRESH_NS`]: the scan (the
/// maps file, `mincore` over every stack) is most of what a reading costs
/// (about 250 µs with 17 threads, growing with threads), and stacks change
/// slowly. Concurrent readers may both scan; either result is fine.
fn stacks_cached() -> Stacks {
    static AT: AtomicU64 = AtomicU64::new(0);
    static COUNT: AtomicU64 = AtomicU64::new(0);
    static MAPPED: AtomicU64 = AtomicU64::new(0);
    static RESIDENT: AtomicU64 = AtomicU64::new(0);
    let now = crate::clock::now_ns().max(1);
    let at = AT.load(Ordering::Acquire);
    if at != 0 && now >= at && now - at < STACKS_FRESH_NS {
        return Stacks {
            count: COUNT.load(Ordering::Relaxed),
            mapped: MAPPED.load(Ordering::Relaxed),
            resident: RESIDENT.load(Ordering::Relaxed),
        };
    }
    let s = read_stacks();
    COUNT.store(s.count, Ordering::Relaxed);
    MAPPED.store(s.mapped, Ordering::Relaxed);
    RESIDENT.store(s.resident, Ordering::Relaxed);
    AT.store(now, Ordering::Release);
    s
}

/// The largest `---p` mapping taken for a stack's guard.
const MAX_GUARD: usize = 64 * 1024;

/// Whether `line`, right after `prev` in `/proc/self/maps`, is a thread's
/// (or a signal) stack: anonymous `rw-p` just above an anonymous `---p`
/// guard. A guard is a page or a few (glibc: one page, or
/// `pthread_attr_setguardsize`); a long `---p` run is the reserved tail of
/// a glibc arena, and what follows it another arena, not a stack.
fn is_thread_stack(prev: &MapLine, line: &MapLine) -> bool {
    line.rw_private
        && line.anonymous
        && prev.guard
        && prev.anonymous
        && prev.end - prev.start <= MAX_GUARD
        && prev.end == line.start
}

/// Finds the thread stacks in `/proc/self/maps` (streamed through a stack
/// buffer, line by line) and counts their resident pages.
fn read_stacks() -> Stacks {
    use std::io::Read as _;
    let mut out = Stacks::default();
    let Ok(mut file) = std::fs::File::open("/proc/self/maps") else {
        return out;
    };
    let mut buf = [0u8; 8192];
    let mut filled = 0;
    let mut prev = MapLine::default();
    loop {
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let end = filled + n;
        let mut start = 0;
        while let Some(nl) = buf[start..end].iter().position(|&b| b == b'\n') {
            if let Some(line) = parse_map_line(&buf[start..start + nl]) {
                let thread_stack = is_thread_stack(&prev, &line);
                if line.main_stack || thread_stack {
                    out.count += 1;
                    out.mapped += line.end.saturating_sub(line.start) as u64;
                    out.resident += resident_bytes(line.start, line.end);
                }
                prev = line;
            }
            start += nl + 1;
        }
        if n == 0 {
            break;
        }
        // Keep the partial line; a line longer than the buffer (a very
        // long path) is skipped.
        if start == 0 && end == buf.len() {
            filled = 0;
            prev = MapLine::default();
            continue;
        }
        buf.copy_within(start..end, 0);
        filled = end - start;
    }
    out
}

/// Resident bytes of `[start, end)` (page aligned), by `mincore`, in
/// chunks of a stack buffer's worth of pages.
fn resident_bytes(start: usize, end: usize) -> u64 {
    let page = page_size();
    if page == 0 || !start.is_multiple_of(page) || end <= start {
        return 0;
    }
    let mut vec = [0u8; 4096];
    let mut resident = 0u64;
    let mut at = start;
    while at < end {
        let len = (end - at).min(vec.len() * page);
        // A mapping unmapped since /proc/self/maps was read makes mincore
        // fail with ENOMEM, and the loop stops.
        // SAFETY: `at..at + len` is a page-aligned range of this process's
        // address space, and `vec` has a byte per page of it (`len` is at
        // most `vec.len()` pages).
        let rc = unsafe { libc::mincore(at as *mut libc::c_void, len, vec.as_mut_ptr()) };
        if rc != 0 {
            break;
        }
        let pages = len.div_ceil(page);
        resident += vec[..pages].iter().filter(|&&b| b & 1 != 0).count() as u64 * page as u64;
        at += len;
    }
    resident
}

/// Resident bytes of `[start, end)` (page aligned) that are this
/// process's own pages: present and mapped exclusively
/// (`/proc/self/pagemap` bits 63 and 56). Unlike `mincore`, a page of a
/// zero-initialised static that was only *read* (mapped to the kernel's
/// shared zero page, not counted in RSS) does not count. Falls back to
/// `mincore` without pagemap.
fn private_resident_bytes(start: usize, end: usize) -> u64 {
    use std::os::unix::fs::FileExt as _;
    let page = page_size();
    if page == 0 || !start.is_multiple_of(page) || end <= start {
        return 0;
    }
    let Ok(file) = std::fs::File::open("/proc/self/pagemap") else {
        return resident_bytes(start, end);
    };
    let mut buf = [0u8; 4096];
    let mut resident = 0u64;
    let mut at = start / page;
    let last = end / page;
    while at < last {
        let n = (last - at).min(buf.len() / 8);
        let Ok(()) = file.read_exact_at(&mut buf[..n * 8], (at * 8) as u64) else {
            return resident_bytes(start, end);
        };
        for e in buf[..n * 8].chunks_exact(8) {
            let v = u64::from_ne_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
            if v >> 63 & 1 == 1 && v >> 56 & 1 == 1 {
                resident += page as u64;
            }
        }
        at += n;
    }
    resident
}

fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let p = if p > 0 { p as usize } else { 4096 };
    PAGE.store(p, Ordering::Relaxed);
    p
}

// -- glibc's mallinfo2, looked up at run time --

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_stats() -> Option<InnerAllocatorStats> {
    type MallInfo2 = unsafe extern "C" fn() -> libc::mallinfo2;
    // 0: not looked up yet; 1: not there; else the function.
    static FN: AtomicUsize = AtomicUsize::new(0);
    let mut f = FN.load(Ordering::Relaxed);
    if f == 0 {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name; it
        // only looks the symbol up.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"mallinfo2".as_ptr()) };
        f = if p.is_null() { 1 } else { p as usize };
        FN.store(f, Ordering::Relaxed);
    }
    if f == 1 {
        return None;
    }
    // SAFETY: `f` is glibc's `mallinfo2`, whose signature is `MallInfo2`
    // (glibc 2.33+; the symbol exists only there).
    let mi = unsafe { core::mem::transmute::<usize, MallInfo2>(f)() };
    let (arena, hblkhd, uordblks, fordblks) = (
        mi.arena as u64,
        mi.hblkhd as u64,
        mi.uordblks as u64,
        mi.fordblks as u64,
    );
    Some(
        InnerAllocatorStats::new("glibc malloc", uordblks + hblkhd, arena + hblkhd)
            .serving_malloc()
            .detail("arena", arena)
            .detail("hblkhd", hblkhd)
            .detail("uordblks", uordblks)
            .detail("fordblks", fordblks)
            .detail("keepcost", mi.keepcost as u64),
    )
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_stats() -> Option<InnerAllocatorStats> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_parsed() {
        let mut st = Status::default();
        parse_status(
            b"Name:\tx\nVmRSS:\t  2048 kB\nRssAnon:\t 1024 kB\nRssFile:\t1000 kB\nRssShmem:\t24 kB\nThreads:\t7\n",
            &mut st,
        );
        assert!(st.available);
        assert_eq!(
            (st.rss, st.anon, st.file, st.shmem, st.threads),
            (2 << 20, 1 << 20, 1000 * 1024, 24 * 1024, 7)
        );
    }

    #[test]
    fn map_lines_are_parsed() {
        let l = parse_map_line(b"7f00a000-7f00b000 ---p 00000000 00:00 0 ").unwrap();
        assert!(l.guard && l.anonymous && !l.rw_private);
        assert_eq!((l.start, l.end), (0x7f00a000, 0x7f00b000));
        let l = parse_map_line(
            b"7ffd1000-7ffd3000 rw-p 00000000 00:00 0                          [stack]",
        )
        .unwrap();
        assert!(l.main_stack && !l.anonymous && l.rw_private);
        let l = parse_map_line(b"55d0-55e0 r-xp 00001000 08:01 1234 /usr/bin/x").unwrap();
        assert!(!l.anonymous && !l.rw_private && !l.guard);
        assert!(parse_map_line(b"garbage").is_none());
    }

    #[test]
    fn stacks_sit_above_small_guards_only() {
        let l = |t: &[u8]| parse_map_line(t).unwrap();
        let guard = l(b"7f0000000000-7f0000001000 ---p 00000000 00:00 0");
        let stack = l(b"7f0000001000-7f0000201000 rw-p 00000000 00:00 0");
        assert!(is_thread_stack(&guard, &stack));
        // A glibc arena's reserved tail (60 MiB), then the next arena.
        let tail = l(b"7f0004000000-7f0007c00000 ---p 00000000 00:00 0");
        let arena = l(b"7f0007c00000-7f0007e00000 rw-p 00000000 00:00 0");
        assert!(!is_thread_stack(&tail, &arena));
        // Not adjacent, or a file mapping: not a stack either.
        let apart = l(b"7f0000002000-7f0000202000 rw-p 00000000 00:00 0");
        assert!(!is_thread_stack(&guard, &apart));
        let file = l(b"7f0000001000-7f0000201000 rw-p 00000000 08:01 99 /x");
        assert!(!is_thread_stack(&guard, &file));
    }

    #[test]
    fn claims_are_cut_in_order_and_sum_to_rss() {
        let mut m = Memory {
            rss_bytes: 100,
            rss_anon_bytes: 100,
            thread_stacks_claim: 10,
            heap_claim: 50,
            leakscope_claim: 30,
            allocator_claim: 20,
            ..Memory::default()
        };
        m.split(500);
        assert_eq!(
            (
                m.thread_stacks_bytes,
                m.heap_bytes,
                m.leakscope_bytes,
                m.allocator_bytes
            ),
            (10, 50, 30, 10)
        );
        assert_eq!(m.unattributed_bytes, 0);
        assert_eq!(m.overcount_bytes, 10);
        assert_eq!(m.unattributed_malloc_bytes, 0);
        assert_eq!(m.parts().iter().map(|p| p.1).sum::<u64>(), 100);

        m.rss_bytes = 1000;
        m.rss_anon_bytes = 1000;
        m.split(500);
        assert_eq!((m.unattributed_bytes, m.overcount_bytes), (890, 0));
        assert_eq!(m.unattributed_malloc_bytes, 500);

        // The claims share the anonymous part only: files stay unattributed.
        m.rss_anon_bytes = 100;
        m.split(500);
        assert_eq!(m.unattributed_bytes, 900);
        assert_eq!((m.allocator_bytes, m.overcount_bytes), (10, 10));
        assert_eq!(
            m.unattributed_malloc_bytes, 0,
            "no anonymous memory left for it"
        );
        assert_eq!(m.parts().iter().map(|p| p.1).sum::<u64>(), 1000);
    }

    #[test]
    fn this_process_has_stacks_and_rss() {
        let m = memory();
        assert!(m.available);
        assert!(m.rss_bytes > 0);
        assert!(m.thread_stacks >= 1, "the main [stack] at least");
        assert!(m.thread_stacks_claim > 0 && m.thread_stacks_claim <= m.thread_stacks_mapped_bytes);
        assert_eq!(m.parts().iter().map(|p| p.1).sum::<u64>(), m.rss_bytes);
    }
}
