//! Stack capture (allocator path) and lazy, cached symbolization (snapshot
//! path).
//!
//! Capture walks the stack into a fixed buffer of [`MAX_FRAMES`] with
//! leakscope's caching unwinder (`alloc/unwind/`), or, when that cannot walk, with
//! `backtrace::trace_unsynchronized`: no allocation, no lock (the
//! synchronized variant takes a global lock that a user's own `backtrace`
//! call may hold while it allocates).
//!
//! Symbolization happens only when a snapshot is read, under the
//! re-entrancy guard, so the memory the DWARF reader uses is leakscope's
//! metadata and never appears in the user's totals, sites or profiles.
//! Results are cached per address in a bounded map (cleared when it reaches
//! `MAX_CACHED_ADDRS`, so its size stays bounded).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::guard::Guard;
use super::unwind;
use crate::snapshot::Frame;

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

/// Cached symbols of one instruction address: innermost inlined frame first.
#[derive(Clone, Debug)]
pub(super) struct Sym {
    function: String,
    file: Option<String>,
    line: Option<u32>,
}

const MAX_CACHED_ADDRS: usize = 64 * 1024;

pub(super) type SymbolCache = Option<HashMap<usize, Vec<Sym>>>;

static CACHE: Mutex<SymbolCache> = Mutex::new(None);

/// Locks the symbol cache. Never panics: a poisoned lock is used as is.
/// Held by the forking thread across `fork()` (`alloc/fork.rs`).
pub(super) fn lock_cache() -> MutexGuard<'static, SymbolCache> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Symbolizes return addresses (innermost first) into frames, trimming
/// leakscope's own frames and the allocation shims so the first frame is the
/// user's code. Must be called under the re-entrancy [`Guard`]; the returned
/// frames are guarded memory too (clone them out after leaving the guard).
pub(crate) fn symbolize(ips: &[usize]) -> Vec<Frame> {
    trim(symbolize_all(ips))
}

/// Symbolizes without trimming (under the guard, like [`symbolize`]).
fn symbolize_all(ips: &[usize]) -> Vec<Frame> {
    let _g = Guard::enter();
    let mut cache = lock_cache();
    let map = cache.get_or_insert_with(HashMap::new);
    if map.len() > MAX_CACHED_ADDRS {
        map.clear();
    }
    let mut frames = Vec::with_capacity(ips.len() + 4);
    for &ip in ips.iter().filter(|&&ip| ip > 1) {
        // Return addresses point after the call; ip - 1 is inside it.
        let pc = ip.saturating_sub(1);
        let syms = map.entry(pc).or_insert_with(|| resolve(pc));
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

fn resolve(pc: usize) -> Vec<Sym> {
    let mut out = Vec::new();
    backtrace::resolve(pc as *mut core::ffi::c_void, |sym| {
        let function = match sym.name() {
            Some(n) => format!("{n:#}"),
            None => "??".to_string(),
        };
        out.push(Sym {
            function,
            file: sym.filename().map(|p| p.display().to_string()),
            line: sym.lineno(),
        });
    });
    if out.is_empty() {
        out.push(Sym {
            function: format!("{pc:#x}"),
            file: None,
            line: None,
        });
    }
    out
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
