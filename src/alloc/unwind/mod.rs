//! A caching DWARF unwinder for the sampled path (Linux, x86_64, glibc).
//!
//! The system unwinder (`_Unwind_Backtrace`, what `backtrace` calls) finds
//! and interprets each frame's CFI afresh on every walk: about 2,400
//! instructions a frame, 2.8 µs for a typical sampled stack, which at the
//! default sampling rate alone cost 5% on allocation-heavy code. This one
//! reads the same `.eh_frame` CFI in place from the loaded images (parsed
//! with `gimli`), reduces each frame's CFI row to a small rule (CFA = SP or
//! BP + offset, return address and saved BP at fixed offsets from the CFA)
//! and caches the rule per return address, so a frame it has seen costs a
//! hash probe and one or two bounds-checked stack reads.
//!
//! The rule cache is hand-written because it is the hot path and the
//! obvious crate for this, `framehop`, caches rules in a fixed 509-slot
//! direct-mapped table: two return addresses of one stack that collide
//! there evict each other on every walk (about one stack in five), and each
//! miss re-parses the CFI. Measured with it: 2,800 ns per sample on the
//! churn benchmark; with this cache (4096 slots, 4-way): see ARCHITECTURE.md.
//!
//! Everything that can go wrong falls back to the system unwinder (the
//! caller sees `None`) rather than guessing: a module list being rebuilt
//! after a `dlopen` (`modules.rs`), a stack that is not the thread's own
//! or too full (`walk.rs`), a CFI row that is not a simple rule
//! (`rules.rs`), all rule caches taken, a `fork()` under way
//! (`loader.rs`: then the system unwinder does not walk either, see
//! [`system_walk`]). Stack reads are bounds-checked, so a wrong rule can
//! truncate a stack, never crash; nothing here waits, so nothing here can
//! deadlock, including in a child after `fork()`.
//!
//! Why not frame pointers: Rust code is built without them by default, and
//! a frame-pointer walk over code without them silently skips callers.
//!
//! # Files
//!
//! Everything but this file exists only where the caching unwinder runs
//! (Linux, x86_64, glibc: see `supported!`); elsewhere [`capture`] always
//! answers `None` and the fork hooks have nothing to do.
//!
//! - `loader.rs`: the gate around `dl_iterate_phdr` that `fork()` closes;
//! - `gate.rs`: that gate's protocol (two counts), model-checked with loom;
//! - `modules.rs`: the module list (loaded objects and their `.eh_frame`);
//! - `rules.rs`: CFI rows reduced to rules, and the per-slot rule caches;
//! - `walk.rs`: the walk itself, bounds-checked stack reads;
//! - `bounds.rs`: the calling thread's stack bounds;
//! - `mmap.rs`: memory for long-lived state, straight from the kernel.
//!
//! The unwinder knows nothing of the capture buffer's size (it fills the
//! slice it is given) and nothing of the rest of the allocator: it sits at
//! the bottom of the allocator's layers.

use core::sync::atomic::{AtomicU64, Ordering};

/// Where the caching unwinder runs: items given to `supported!` are
/// compiled only there, items given to `unsupported!` only elsewhere. The
/// one place that names the platform.
macro_rules! supported {
    ($($item:item)*) => {
        $(#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))] $item)*
    };
}

/// The complement of `supported!`.
macro_rules! unsupported {
    ($($item:item)*) => {
        $(#[cfg(not(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu")))] $item)*
    };
}

supported! {
    mod bounds;
    mod gate;
    mod loader;
    mod mmap;
    mod modules;
    mod rules;
    mod walk;

    /// Walks the calling thread's stack into `buf` (innermost first) with
    /// the caching unwinder; returns the number of frames written. `None`
    /// means "use the system unwinder instead". Never allocates except, once
    /// per process and after each `dlopen`, to build the module list
    /// (callers hold the re-entrancy guard).
    pub(crate) fn capture(buf: &mut [usize]) -> Option<usize> {
        let r = walk::walk(buf);
        match r {
            Some(_) => FAST.fetch_add(1, Ordering::Relaxed),
            None => FALLBACK.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    /// The atomics `gate.rs` is written against (loom's in its model).
    mod gate_sync {
        pub(super) use core::sync::atomic::{AtomicU32, Ordering};
        pub(super) use std::thread::yield_now;
    }

    pub(crate) use self::loader::{fork_parent, fork_prepare};

    /// The child handler's repairs: the only thread left is the forking
    /// one, so every count, try-lock and build another thread had under
    /// way at the fork is reset (the loader gate's counts, the module
    /// build's try-lock, the rule caches' try-locks; a cache that was taken
    /// may hold a half-written entry, so it is emptied on its next use).
    pub(crate) fn fork_child() {
        loader::fork_child();
        modules::fork_child();
        rules::fork_child();
    }

    /// Runs the system unwinder's walk `f` inside the loader gate (it may
    /// call `dl_iterate_phdr`, see `loader.rs`); `None`, without running
    /// it, while a fork is under way (the caller records an empty stack,
    /// which the tables count in `dropped_samples`).
    pub(crate) fn system_walk(f: impl FnOnce() -> usize) -> Option<usize> {
        loader::outside_fork(f)
    }
}

unsupported! {
    /// Other platforms always use the system unwinder.
    pub(crate) fn capture(_buf: &mut [usize]) -> Option<usize> {
        None
    }

    /// Nothing to close: no walk asks the loader here.
    pub(crate) fn fork_prepare() {}

    /// Nothing to reopen (see [`fork_prepare`]).
    pub(crate) fn fork_parent() {}

    /// Nothing to repair (see [`fork_prepare`]).
    pub(crate) fn fork_child() {}

    /// No gate here: the system unwinder's walk runs as is.
    pub(crate) fn system_walk(f: impl FnOnce() -> usize) -> Option<usize> {
        Some(f())
    }
}

/// Bytes the unwinder mapped for its caches and module lists (leakscope
/// metadata, outside the malloc heap).
pub(crate) fn mapped_bytes() -> u64 {
    MAPPED.load(Ordering::Relaxed)
}

/// Written by `mmap.rs`.
static MAPPED: AtomicU64 = AtomicU64::new(0);

/// How many walks the caching unwinder did and how many fell back.
pub(crate) fn counts() -> (u64, u64) {
    (
        FAST.load(Ordering::Relaxed),
        FALLBACK.load(Ordering::Relaxed),
    )
}

static FAST: AtomicU64 = AtomicU64::new(0);
static FALLBACK: AtomicU64 = AtomicU64::new(0);
