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

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::MutexGuard;
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
    let mut n = 0;
    // `trace_unsynchronized` is unsafe only because some platforms'
    // unwinders (dbghelp on Windows) are not thread-safe without the crate's
    // lock. On the Unix targets leakscope supports it uses the system
    // unwinder (`_Unwind_Backtrace`).
    // SAFETY: that unwinder is thread-safe; the callback writes within `buf`.
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
}

/// The symbolizer's state, held across `fork()` by the forking thread
/// (`alloc/fork.rs`) as "the symbol cache".
pub(super) type SymbolCache = symbolize::State;

/// Locks the symbolizer (see [`SymbolCache`]). Never panics.
pub(super) fn lock_cache() -> MutexGuard<'static, SymbolCache> {
    symbolize::lock()
}

/// Symbolizes return addresses (innermost first) into frames, trimming
/// leakscope's own frames and the allocation shims so the first frame is the
/// user's code. Must be called under the re-entrancy [`Guard`]; the returned
/// frames are guarded memory too (clone them out after leaving the guard).
pub(crate) fn symbolize(ips: &[usize]) -> Vec<Frame> {
    trim(to_frames(ips, &symbolize::resolve_many(&lookup_pcs(ips))))
}

/// Like [`symbolize`], or `None` without waiting if the symbolizer is busy.
fn try_symbolize(ips: &[usize]) -> Option<Vec<Frame>> {
    let syms = symbolize::try_resolve_many(&lookup_pcs(ips))?;
    Some(trim(to_frames(ips, &syms)))
}

/// Symbolizes without trimming (under the guard, like [`symbolize`]).
#[cfg(test)]
fn symbolize_all(ips: &[usize]) -> Vec<Frame> {
    to_frames(ips, &symbolize::resolve_many(&lookup_pcs(ips)))
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

/// Frames of `syms` (one `Vec` per address of `ips` that is > 1); each
/// frame's `address` is the return address minus one, as always.
fn to_frames(ips: &[usize], syms: &[Vec<Sym>]) -> Vec<Frame> {
    let _g = Guard::enter();
    let mut frames = Vec::with_capacity(ips.len() + 4);
    for (&ip, syms) in ips.iter().filter(|&&ip| ip > 1).zip(syms) {
        let pc = ip.saturating_sub(1);
        let last = syms.len().saturating_sub(1);
        for (k, s) in syms.iter().enumerate() {
            frames.push(Frame {
                function: s.function.clone(),
                file: s.file.clone(),
                line: s.line,
                address: pc as u64,
                inlined: k < last,
            });
        }
    }
    frames
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
        match try_symbolize(p.ips()) {
            Some(frames) => remember_first(p.id, &frames),
            None => break,
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
fn is_std_frame(frame: &Frame) -> bool {
    if let Some(file) = &frame.file {
        return file.starts_with("/rustc/")
            || file.starts_with("/rust/deps/")
            || file.contains("/rustlib/src/rust/library/");
    }
    let f = frame.function.as_str();
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
    STD.iter().any(|p| f.starts_with(p))
}

fn trim(frames: Vec<Frame>) -> Vec<Frame> {
    let own = frames
        .iter()
        .position(|f| !is_own_frame(&f.function))
        .unwrap_or(frames.len());
    let rest = &frames[own..];
    // Then the standard library's plumbing, and leakscope's own wrappers
    // called through it (e.g. a `track_arc!` site registering itself), up
    // to the first frame of the user's code.
    let user = rest
        .iter()
        .position(|f| !is_std_frame(f) && !is_own_frame(&f.function))
        // Everything is std (e.g. a thread's own start-up): keep it.
        .unwrap_or(0);
    // std internals inlined into the user's function share its address and
    // come first in its inlined group: dropping them leaves the user's
    // function as the group's first line, which is what pprof should show.
    rest[user..].to_vec()
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
