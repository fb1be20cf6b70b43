//! The gate between the unwinder's calls into the loader and `fork()`.
//!
//! The unwinder asks glibc's `dl_iterate_phdr` for the loaded objects (the
//! loader's counters on every walk, the whole list on a rebuild), and the
//! system unwinder that walks when this one cannot may ask it too (libgcc
//! before GCC 12 on every frame). That function takes a lock that glibc
//! does not reset in a `fork()` child: a child forked while another thread
//! held it would hang on its first sample (seen in `tests/alloc_fork.rs`
//! before this gate existed). So the fork protocol (`alloc/fork.rs`)
//! closes this gate before the fork and waits for the threads inside to
//! leave; while it is closed, walks do not happen (the sample gets an
//! empty stack, counted in `dropped_samples`).
//!
//! The protocol itself (two counts, so that two threads forking at once
//! keep the gate closed until both are done) is `gate.rs`.

use core::sync::atomic::AtomicU32;

use super::gate::Gate;

static GATE: Gate = Gate {
    forking: AtomicU32::new(0),
    users: AtomicU32::new(0),
};

/// Closes the gate: from now on no thread enters `dl_iterate_phdr` for the
/// unwinder, and this waits until those inside have left. Called by the
/// `fork()` prepare handler (`alloc/fork.rs`).
pub(crate) fn fork_prepare() {
    GATE.close();
}

/// This thread's fork is done (parent handler): the gate opens when no
/// other thread's fork is under way.
pub(crate) fn fork_parent() {
    GATE.reopen();
}

/// In the child: the counts start again from zero (see `Gate::reset_in_child`).
pub(crate) fn fork_child() {
    GATE.reset_in_child();
}

/// Runs `f` (which may call `dl_iterate_phdr`) unless a fork is under way.
pub(crate) fn outside_fork<R>(f: impl FnOnce() -> R) -> Option<R> {
    if !GATE.enter(|| crate::__hooks::pause(crate::__hooks::Point::LoaderEnter)) {
        return None;
    }
    let r = f();
    GATE.leave();
    Some(r)
}
