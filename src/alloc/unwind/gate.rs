//! The loader gate's protocol, on its own: two counters and the four moves
//! of the threads that fork and the threads that walk.
//!
//! This file is also compiled, unchanged, into the `loom` model
//! (`tests/loom_fork_gate.rs`), which is why it names its atomics through
//! `super::gate_sync` (the standard ones here, loom's there) and takes no
//! other crate item.
//!
//! Why counts: glibc >= 2.36 runs the atfork handlers without its own
//! lock, so two threads forking at once interleave their prepare and
//! parent handlers. With a flag, the first fork's parent handler would
//! reopen the gate while the second fork is still inside its window. With
//! a count, the gate stays closed until every fork that closed it is done.

use super::gate_sync::{yield_now, AtomicU32, Ordering::SeqCst};

/// The gate: forks under way, and walkers inside the loader.
#[derive(Debug)]
pub(crate) struct Gate {
    /// Forks between their prepare handler and their parent handler.
    pub(crate) forking: AtomicU32,
    /// Threads that announced themselves (inside the loader, or about to
    /// check [`Gate::forking`]).
    pub(crate) users: AtomicU32,
}

impl Gate {
    /// A forker's prepare handler: closes the gate (one more fork under
    /// way), then waits until no walker is inside.
    ///
    /// Either this waits for a walker or that walker sees the count and
    /// stays out: each side writes its own count, then reads the other's,
    /// and both reads are read-modify-writes (`fetch_add(0)`), not loads.
    /// Two RMWs of one location are ordered, and the later one reads the
    /// earlier one's value and synchronizes with it, so whichever side's
    /// RMW on `forking` comes second sees the other's write: this holds
    /// under acquire/release alone (which is what loom checks; a load would
    /// need the total order of SeqCst, which loom does not model). The
    /// cost, a locked instruction, is on the sampled path and in `fork()`.
    pub(crate) fn close(&self) {
        self.forking.fetch_add(1, SeqCst);
        while self.users.fetch_add(0, SeqCst) != 0 {
            yield_now();
        }
    }

    /// A forker's parent handler: this fork is done; the gate opens when
    /// no other fork is under way.
    pub(crate) fn reopen(&self) {
        self.forking.fetch_sub(1, SeqCst);
    }

    /// The child handler: the forking thread is the only thread left. Its
    /// own fork is over, and every other count (another thread's fork, a
    /// walker caught between its announcement and its check) belongs to a
    /// thread the child does not have: both counts start again from zero.
    pub(crate) fn reset_in_child(&self) {
        self.users.store(0, SeqCst);
        self.forking.store(0, SeqCst);
    }

    /// A walker: announces itself and checks for a fork (`between` runs
    /// in between: a test hook). `true`: inside, call [`Gate::leave`] when
    /// done; `false`: a fork is under way, stay out.
    pub(crate) fn enter(&self, between: impl FnOnce()) -> bool {
        self.users.fetch_add(1, SeqCst);
        between();
        if self.forking.fetch_add(0, SeqCst) != 0 {
            self.users.fetch_sub(1, SeqCst);
            return false;
        }
        true
    }

    /// A walker leaves (after an [`Gate::enter`] that returned `true`).
    pub(crate) fn leave(&self) {
        self.users.fetch_sub(1, SeqCst);
    }
}
