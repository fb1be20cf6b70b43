//! The gate between the unwinder's calls into the loader and `fork()`.
//!
//! The unwinder asks glibc's `dl_iterate_phdr` for the loaded objects (the
//! loader's counters on every walk, the whole list on a rebuild). That
//! function takes a lock that glibc does not reset in a `fork()` child: a
//! child forked while another thread held it would hang on its first
//! sample (seen in `tests/alloc_fork.rs` before this gate existed). So the
//! fork protocol (`alloc/fork.rs`) closes this gate before the fork and
//! waits for the threads inside to leave; while it is closed, walks fall
//! back to the system unwinder.

use core::sync::atomic::Ordering::SeqCst;
use core::sync::atomic::{AtomicBool, AtomicU32};

/// Set while a thread forks: walks fall back instead of asking the loader.
static FORKING: AtomicBool = AtomicBool::new(false);
/// Threads inside `dl_iterate_phdr` for the unwinder.
static LOADER_USERS: AtomicU32 = AtomicU32::new(0);

/// Closes the gate: from now on no thread enters `dl_iterate_phdr` for the
/// unwinder, and this waits until those inside have left. Called by the
/// `fork()` prepare handler (`alloc/fork.rs`).
pub(crate) fn fork_prepare() {
    FORKING.store(true, SeqCst);
    while LOADER_USERS.load(SeqCst) != 0 {
        std::thread::yield_now();
    }
}

/// Opens the gate again; called after `fork()`, in the parent and in the
/// child.
pub(crate) fn fork_release() {
    FORKING.store(false, SeqCst);
}

/// Runs `f` (which calls `dl_iterate_phdr`) unless a fork is under way.
/// SeqCst on both sides (here: announce, then check; the forker: flag, then
/// wait for zero) means that either the forker waits for this call or this
/// call sees the flag and does not happen.
pub(super) fn outside_fork<R>(f: impl FnOnce() -> R) -> Option<R> {
    LOADER_USERS.fetch_add(1, SeqCst);
    let r = if FORKING.load(SeqCst) {
        None
    } else {
        Some(f())
    };
    LOADER_USERS.fetch_sub(1, SeqCst);
    r
}
