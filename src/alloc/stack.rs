//! Stack capture (allocator path) and symbolization (snapshot path).
//!
//! Capture walks the stack into a fixed buffer of [`MAX_FRAMES`] with
//! leakscope's caching unwinder (`alloc/unwind/`), or, when that cannot walk, with
//! `backtrace::trace_unsynchronized`: no allocation, no lock (the
//! synchronized variant takes a global lock that a user's own `backtrace`
//! call may hold while it allocates). That capture is all leakscope uses
//! the `backtrace` crate for.
//!
//! Symbolization happens only when a snapshot or a scrape is read, with
//! leakscope's own symbolizer (`crate::symbolize`: its own cache, its own
//! memory budget, all of it allocated and freed under the re-entrancy
//! guard), never with `backtrace::resolve`, whose process-global cache is
//! shared with the application (issue 15, ghost samples). Addresses are
//! looked up as `backtrace::resolve(ip - 1)` looked them up (`ip - 2`), so
//! frames are the ones leakscope always printed.
//!
//! # The first-frame cache (what a scrape reads)
//!
//! Stacks are interned and never removed, so a stack id names one stack
//! for the life of the process. Its first frame after trimming (what
//! Prometheus labels a heap site with: `function` and `site`) is kept per
//! id in [`FIRST`], set once (an atomic pointer per id, no lock, so nothing
//! here needs the fork handlers), by whichever snapshot or scrape
//! symbolizes the stack first. A `/metrics` scrape of known stacks does no
//! symbolization at all. Bounded: [`MAX_STACKS`] entries of one frame each,
//! never freed (they are leakscope metadata).
//!
//! A scrape symbolizes new stacks within a budget ([`ScrapeBudget`]) and
//! only if the symbolizer is free; the rest get a placeholder label for
//! this scrape (see [`placeholder`]) and are resolved by a later one.
//!
//! # The per-stack frame cache (what a profile reads)
//!
//! A stack's whole symbolized, trimmed frame list is kept per id too, in
//! [`STACKS`] ([`CachedStack`]), set once the same way (an atomic pointer
//! per id, no lock), by whichever read symbolizes the stack first (a full
//! snapshot, a profile, or a `/metrics` scrape resolving a new stack). A
//! snapshot or a heap profile of known stacks makes no symbolizer call: a
//! profile interns the cached symbols directly (`pprof::profile_now`), a
//! snapshot copies them into its `Frame`s.
//!
//! Memory: an entry holds, per return address, the address and an `Arc`
//! of that address's symbols, shared with the symbolizer's address cache
//! (one copy of each function name and file however many stacks pass
//! through the address), plus how many leading frames trimming drops: 24
//! bytes per address, at most [`MAX_FRAMES`] addresses, so at most about
//! 1.2 KiB per stack and 3.5 MiB for [`MAX_STACKS`] stacks (counted in
//! [`stack_cache_stats`]; 3000 stacks of 40 addresses: 2.9 MiB). The
//! shared symbols are counted in the symbolizer's budget while its address
//! cache holds them; if it drops them to stay under its budget, entries
//! here keep theirs alive (at most the symbols of the addresses of
//! [`MAX_STACKS`] stacks). Never freed: leakscope metadata, allocated
//! under the guard.
//!
//! # First-time symbolization
//!
//! `/metrics` never waits for the symbolizer (its budget above). A full
//! snapshot or a profile does: it needs every stack's frames, and the
//! first address in an object not parsed yet costs that object's DWARF
//! index (tens to a couple of hundred milliseconds, once per object and
//! process). Answering a profile with placeholders instead would make it
//! a profile whose stacks are not the stacks (tools would merge and diff
//! them wrongly), so profiles stay exact and pay the first parse once;
//! every later profile of known stacks reads the cache.

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use super::guard::Guard;
use super::table::{StackIps, MAX_STACKS};
use super::unwind;
use crate::snapshot::Frame;
use crate::symbolize::{self, Sym};

/// Frames kept per sampled stack (the capture buffer's size; outermost
/// frames beyond it are cut).
pub(crate) const MAX_FRAMES: usize = 48;

/// Walks the calling thread's stack into `buf`, innermost first. Returns the
/// number of frames written. Never allocates.
#[inline(never)]
pub(crate) fn capture(buf: &mut [usize; MAX_FRAMES]) -> usize {
    if let Some(n) = unwind::capture(buf) {
        return n;
    }
    // The system unwinder may call `dl_iterate_phdr` (libgcc before GCC
    // 12): it walks inside the fork gate, and not at all while a fork is
    // under way (an empty stack, counted: see `unwind::system_walk`).
    unwind::system_walk(|| {
        let mut n = 0;
        // `trace_unsynchronized` is unsafe only because some platforms'
        // unwinders (dbghelp on Windows) are not thread-safe without the
        // crate's lock. On the Unix targets leakscope supports it uses the
        // system unwinder (`_Unwind_Backtrace`).
        // SAFETY: that unwinder is thread-safe; the callback writes within
        // `buf`.
        unsafe {
            backtrace::trace_unsynchronized(|frame| {
                if n < MAX_FRAMES {
                    buf[n] = frame.ip() as usize;
                    n += 1;
                }
                n < MAX_FRAMES
            });
        }
        n
    })
    .unwrap_or(0)
}

/// The symbolizer's state, held across `fork()` by the forking thread
/// (`alloc/fork.rs`) as "the symbol cache".
pub(super) type SymbolCache = symbolize::State;

/// Locks the symbolizer (see [`SymbolCache`]). Never panics.
pub(super) fn lock_cache() -> MutexGuard<'static, SymbolCache> {
    symbolize::lock()
}

/// Symbolizes `ips` without trimming (the frames of every address), under
/// the guard.
#[cfg(test)]
fn symbolize_all(ips: &[usize]) -> Vec<Frame> {
    let syms = symbolize::resolve_many(&lookup_pcs(ips));
    let mut out = Vec::new();
    for (&ip, syms) in ips.iter().filter(|&&ip| ip > 1).zip(&syms) {
        push_frames(&mut out, ip.saturating_sub(1) as u64, syms);
    }
    out
}

/// The addresses looked up for `ips`: `ip - 2`, which is what
/// `backtrace::resolve(ip - 1)` looked up (it subtracts one itself), so
/// frames are exactly the ones leakscope printed before it had its own
/// symbolizer. For a return address that is inside the call instruction.
fn lookup_pcs(ips: &[usize]) -> Vec<usize> {
    ips.iter()
        .filter(|&&ip| ip > 1)
        .map(|&ip| ip.saturating_sub(2))
        .collect()
}

/// Appends the frames of one address's symbols: each frame's `address` is
/// `address` (the return address minus one, as always); all but the last
/// are marked inlined into the next.
fn push_frames(out: &mut Vec<Frame>, address: u64, syms: &[Sym]) {
    let last = syms.len().saturating_sub(1);
    for (k, s) in syms.iter().enumerate() {
        // leakscope's allocator code inlined into the caller with no
        // inline record of its own lends the caller's frame its location
        // (`src/alloc/path.rs`): that is not where the caller allocated,
        // so the location is left unknown rather than wrong.
        let lent = !is_own_frame(&s.function)
            && s.file.as_deref().is_some_and(crate::format::is_own_source);
        out.push(Frame {
            function: s.function.clone(),
            file: if lent { None } else { s.file.clone() },
            line: if lent { None } else { s.line },
            address,
            inlined: k < last,
        });
    }
}

/// One interned stack, symbolized and trimmed, as the per-stack cache
/// ([`STACKS`]) keeps it: per return address (those > 1) the address
/// frames carry and its symbols, shared with the symbolizer's address
/// cache (an `Arc` per address, not a copy of its strings); `skip` frames
/// of the flat list are trimmed off the front (see [`trim_start`]).
pub(crate) struct CachedStack {
    groups: Box<[(u64, Arc<[Sym]>)]>,
    skip: usize,
}

impl CachedStack {
    /// Under the guard.
    fn new(ips: &[usize], syms: Vec<Arc<[Sym]>>) -> CachedStack {
        let groups: Box<[(u64, Arc<[Sym]>)]> = ips
            .iter()
            .filter(|&&ip| ip > 1)
            .map(|&ip| ip.saturating_sub(1) as u64)
            .zip(syms)
            .collect();
        let skip = trim_start(
            groups
                .iter()
                .flat_map(|(_, s)| s.iter())
                .map(|s| (s.function.as_str(), s.file.as_deref())),
        );
        CachedStack { groups, skip }
    }

    /// Heap bytes of this entry (its groups; the symbols are shared).
    fn heap_bytes(&self) -> usize {
        core::mem::size_of::<Self>() + self.groups.len() * core::mem::size_of::<(u64, Arc<[Sym]>)>()
    }

    /// The stack's frames after trimming, one group per instruction
    /// address, innermost first: `(address, symbols)`, the symbols of an
    /// address innermost inlined first (the first group may have lost its
    /// leading symbols to trimming). Joined, the groups are
    /// [`CachedStack::to_frames`].
    pub(crate) fn groups(&self) -> impl Iterator<Item = (u64, &[Sym])> {
        let mut skip = self.skip;
        self.groups.iter().filter_map(move |(addr, syms)| {
            let k = skip.min(syms.len());
            skip -= k;
            (k < syms.len()).then(|| (*addr, &syms[k..]))
        })
    }

    /// Addresses in the stack (an upper bound on its groups).
    pub(crate) fn len(&self) -> usize {
        self.groups.len()
    }

    /// The stack's frames after trimming, as a snapshot holds them.
    pub(crate) fn to_frames(&self) -> Vec<Frame> {
        let mut out = Vec::new();
        for (addr, syms) in self.groups() {
            push_frames(&mut out, addr, syms);
        }
        out
    }
}

/// Per stack id: its symbolized, trimmed frames ([`CachedStack`]), set
/// once by whichever full snapshot or profile reads the stack first, never
/// freed (like [`FIRST`]; stacks are never removed from the table, so an
/// id names one stack for ever).
static STACKS: [AtomicPtr<CachedStack>; MAX_STACKS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_STACKS];

/// Stacks in [`STACKS`] and their entries' heap bytes (for the statistics
/// and the bound's test).
static STACKS_COUNT: AtomicU64 = AtomicU64::new(0);
static STACKS_BYTES: AtomicU64 = AtomicU64::new(0);

/// `(stacks cached, their entries' heap bytes)` of the per-stack frame
/// cache ([`STACKS`]); the symbols they share are the symbolizer's.
pub(crate) fn stack_cache_stats() -> (u64, u64) {
    (
        STACKS_COUNT.load(Ordering::Relaxed),
        STACKS_BYTES.load(Ordering::Relaxed),
    )
}

/// Stack `id`'s cached frames, if known (one atomic load).
pub(crate) fn cached_stack(id: u32) -> Option<&'static CachedStack> {
    let p = STACKS.get(id as usize)?.load(Ordering::Acquire);
    // SAFETY: a non-null pointer in `STACKS` came from `Box::into_raw` in
    // `stack_frames` and is never freed or written again.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Stack `id`'s frames (return addresses `ips`): from the per-stack cache,
/// or symbolized now and cached (its first frame too, see [`FIRST`]).
/// With `wait == false`, `None` if the stack is not cached and the
/// symbolizer is busy. Under the guard. An `id` past the table (not a
/// stack id) is symbolized each time and not cached.
pub(crate) fn stack_frames(id: u32, ips: &[usize], wait: bool) -> Option<&'static CachedStack> {
    if let Some(c) = cached_stack(id) {
        return Some(c);
    }
    let slot = STACKS.get(id as usize)?;
    let _g = Guard::enter();
    let syms = symbolize::resolve_shared(&lookup_pcs(ips), wait)?;
    let entry = CachedStack::new(ips, syms);
    if !has_first_frame(id) {
        let mut first = Vec::new();
        if let Some((addr, syms)) = entry.groups().next() {
            push_frames(&mut first, addr, syms);
            first.truncate(1);
        }
        remember_first(id, &first);
    }
    let bytes = entry.heap_bytes() as u64;
    let b = Box::into_raw(Box::new(entry));
    match slot.compare_exchange(
        core::ptr::null_mut(),
        b,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            STACKS_COUNT.fetch_add(1, Ordering::Relaxed);
            STACKS_BYTES.fetch_add(bytes, Ordering::Relaxed);
            // SAFETY: just published; never freed.
            Some(unsafe { &*b })
        }
        Err(other) => {
            // SAFETY: `b` came from `Box::into_raw` above and was not
            // published.
            drop(unsafe { Box::from_raw(b) });
            // SAFETY: `other` is a published entry (never freed).
            Some(unsafe { &*other })
        }
    }
}

/// Per stack id: its first frame after trimming (an empty `Vec` when
/// trimming left nothing), set once, never freed.
static FIRST: [AtomicPtr<Vec<Frame>>; MAX_STACKS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_STACKS];

/// Stacks whose first frame is cached (for the statistics).
static FIRST_COUNT: AtomicU64 = AtomicU64::new(0);

/// The cached first frame of stack `id` (see [`FIRST`]), if known. The
/// frames are leakscope's, valid for ever: clone them, never free them.
pub(crate) fn first_frame(id: u32) -> Option<&'static [Frame]> {
    let p = FIRST.get(id as usize)?.load(Ordering::Acquire);
    // SAFETY: a non-null pointer in `FIRST` came from `Box::into_raw` in
    // `remember_first` and is never freed or written again.
    (!p.is_null()).then(|| unsafe { (*p).as_slice() })
}

/// Whether stack `id`'s first frame is cached (one atomic load).
pub(crate) fn has_first_frame(id: u32) -> bool {
    FIRST
        .get(id as usize)
        .is_some_and(|p| !p.load(Ordering::Relaxed).is_null())
}

/// Caches stack `id`'s first frame from its trimmed `frames`, unless it
/// is known already. Must be called under the guard (the cache entry is
/// leakscope's metadata, kept for ever).
pub(crate) fn remember_first(id: u32, frames: &[Frame]) {
    let Some(slot) = FIRST.get(id as usize) else {
        return;
    };
    if !slot.load(Ordering::Relaxed).is_null() {
        return;
    }
    let _g = Guard::enter();
    let b = Box::into_raw(Box::new(frames.first().cloned().into_iter().collect()));
    match slot.compare_exchange(
        core::ptr::null_mut(),
        b,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            FIRST_COUNT.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `b` came from `Box::into_raw` above and was not published.
        Err(_) => drop(unsafe { Box::from_raw(b) }),
    }
}

/// How much first-time symbolization one scrape may do: new stacks are
/// symbolized, one after the other, until [`ScrapeBudget::TIME`] has passed
/// (checked between stacks) or the symbolizer is found busy (another
/// thread is symbolizing: the scrape does not wait for it). One stack can
/// overrun the budget: the first address in an object not yet parsed
/// costs the parse of that object's DWARF index (measured in the module
/// docs of `crate::symbolize`), which cannot be cut short.
pub(crate) struct ScrapeBudget;

impl ScrapeBudget {
    /// Wall time a scrape spends symbolizing new stacks, at most (but for
    /// the one stack in progress).
    pub(crate) const TIME: Duration = Duration::from_millis(2);
}

/// Symbolizes the first frames of `pending` stacks within the scrape
/// budget (see [`ScrapeBudget`]) and caches them. Returns how many were
/// done. Under the guard.
pub(crate) fn symbolize_pending(pending: &[StackIps]) -> usize {
    let _g = Guard::enter();
    let start = Instant::now();
    let mut done = 0;
    for p in pending {
        if has_first_frame(p.id) {
            continue;
        }
        if start.elapsed() >= ScrapeBudget::TIME {
            break;
        }
        if stack_frames(p.id, p.ips(), false).is_none() {
            break;
        }
        done += 1;
    }
    done
}

/// The label frame of a stack not symbolized yet: its hash in hex, as
/// `[unsymbolized stack 0x…]` (function and site alike). Such a site is
/// labelled by its frame from the next scrape that resolves it.
pub(crate) fn placeholder(hash: u64) -> Frame {
    Frame::new(format!("[unsymbolized stack {hash:#x}]"), None, None)
}

/// Frames that belong to leakscope's recording path and the allocator shims.
fn is_own_frame(f: &str) -> bool {
    const OWN: [&str; 7] = [
        "backtrace::",
        // leakscope's recorder, and its wrappers that allocate on the
        // user's behalf (a `track_arc!` handle, a snapshot's clone): the
        // allocation is charged to the user's frame that called them.
        "leakscope::",
        "<leakscope::",
        "__rust_alloc",
        "__rust_dealloc",
        "__rust_realloc",
        "__rg_",
    ];
    OWN.iter().any(|p| f.starts_with(p))
        || f.starts_with("__rustc::")
        || f == "??"
        || f.starts_with("_Unwind")
}

/// Standard-library allocation plumbing between the user's code and the
/// allocator (`Vec` growth, `Box::new`, `String` clone...): code whose source
/// is the toolchain's library (`/rustc/<hash>/library/...`), or, without
/// debug info, whose name is in `alloc`, `core`, `std` or `hashbrown`.
fn is_std_frame(function: &str, file: Option<&str>) -> bool {
    if let Some(file) = file {
        return file.starts_with("/rustc/")
            || file.starts_with("/rust/deps/")
            || file.contains("/rustlib/src/rust/library/");
    }
    const STD: [&str; 8] = [
        "alloc::",
        "<alloc::",
        "core::",
        "<core::",
        "std::",
        "<std::",
        "hashbrown::",
        "<hashbrown::",
    ];
    STD.iter().any(|p| function.starts_with(p))
}

/// How many frames of a stack (`(function, file)`, innermost first) are
/// trimmed off its front: leakscope's own frames and the allocation shims,
/// then the standard library's plumbing, so the first frame left is the
/// user's code.
fn trim_start<'a>(frames: impl Iterator<Item = (&'a str, Option<&'a str>)> + Clone) -> usize {
    let own = frames
        .clone()
        .position(|(f, _)| !is_own_frame(f))
        .unwrap_or(frames.clone().count());
    // Then the standard library's plumbing, and leakscope's own wrappers
    // called through it (e.g. a `track_arc!` site registering itself), up
    // to the first frame of the user's code.
    let user = frames
        .skip(own)
        .position(|(f, file)| !is_std_frame(f, file) && !is_own_frame(f))
        // Everything is std (e.g. a thread's own start-up): keep it.
        .unwrap_or(0);
    // std internals inlined into the user's function share its address and
    // come first in its inlined group: dropping them leaves the user's
    // function as the group's first line, which is what pprof should show.
    own + user
}

#[cfg(test)]
fn trim(frames: Vec<Frame>) -> Vec<Frame> {
    let skip = trim_start(
        frames
            .iter()
            .map(|f| (f.function.as_str(), f.file.as_deref())),
    );
    frames[skip..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn capture_here() -> Vec<usize> {
        let mut buf = [0; MAX_FRAMES];
        let n = capture(&mut buf);
        buf[..n].to_vec()
    }

    #[test]
    fn captures_and_symbolizes_this_test() {
        let ips = capture_here();
        assert!(ips.len() > 2);
        let frames = symbolize_all(&ips);
        let pos = |name: &str| frames.iter().position(|f| f.function.contains(name));
        let helper = pos("capture_here").expect("helper frame");
        let test = pos("captures_and_symbolizes_this_test").expect("test frame");
        assert!(helper < test, "innermost first: {frames:#?}");
        assert!(frames[test]
            .file
            .as_deref()
            .unwrap_or("")
            .ends_with("stack.rs"));
        // Symbols are cached: a second pass returns the same frames.
        assert_eq!(symbolize_all(&ips), frames);
    }

    /// A caller whose location the debug info gives as leakscope's own
    /// inlined allocator code gets no location, not a wrong one; its own
    /// frames and others keep theirs.
    #[test]
    fn a_location_lent_by_inlined_allocator_code_is_dropped() {
        let own = concat!(env!("CARGO_MANIFEST_DIR"), "/src/alloc/path.rs");
        let sym = |function: &str, file: &str| Sym {
            function: function.to_string(),
            file: Some(file.to_string()),
            line: Some(42),
        };
        let mut out = Vec::new();
        push_frames(
            &mut out,
            0x1000,
            &[
                sym("leakscope::alloc::path::alloc_entry", own),
                sym("serde_json::de::Deserializer::deserialize_any", own),
                sym("app::handle", "src/main.rs"),
            ],
        );
        assert_eq!(out[0].file.as_deref(), Some(own));
        assert_eq!((out[1].file.as_deref(), out[1].line), (None, None));
        assert_eq!(
            out[1].function,
            "serde_json::de::Deserializer::deserialize_any"
        );
        assert_eq!(
            (out[2].file.as_deref(), out[2].line),
            (Some("src/main.rs"), Some(42))
        );
    }

    #[test]
    fn trims_own_and_std_frames() {
        let f = |n: &str| Frame::new(n, None, None);
        let t = trim(vec![
            f("backtrace::trace_unsynchronized"),
            f("leakscope::alloc::sample"),
            f("<leakscope::objects::TrackedArc<T>>::new"),
            f("__rust_alloc"),
            f("alloc::raw_vec::RawVec<T>::grow"),
            Frame::new(
                "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
                Some("/rustc/abc/library/alloc/src/vec/spec_from_elem.rs".into()),
                Some(53),
            ),
            f("leakscope::objects::site::Site::register"),
            f("myapp::handler"),
            f("std::rt::lang_start"),
        ]);
        assert_eq!(t[0].function, "myapp::handler");
        assert_eq!(t.len(), 2);
        let only_std = trim(vec![f("leakscope::alloc::x"), f("std::thread::spawn")]);
        assert_eq!(only_std[0].function, "std::thread::spawn");
    }
}
