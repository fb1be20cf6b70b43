//! The fork protocol: what the allocator does around `fork()`, in one place.
//!
//! `fork()` copies only the calling thread. Any lock another thread held at
//! that instant stays held forever in the child, and any protocol another
//! thread was in the middle of stays half-done. So the forking thread takes
//! every lock the allocator's paths can hold before the fork and releases
//! them after it, in the parent and in the child; the child also repairs
//! what it cannot wait for. [`register`] installs the handlers with
//! `pthread_atfork`, once per process, on any thread's first allocation.
//!
//! Two threads may fork at once: glibc >= 2.36 runs the atfork handlers
//! without its own lock, so their prepare and parent handlers interleave.
//! The loader gate counts the forks under way (it reopens when the last
//! one is done); the locks serialize the rest (the second forker waits in
//! `prepare` for the first lock of the order until the first fork has
//! released everything).
//!
//! # Lock order
//!
//! Taken in this order by the prepare handler, and never in another order
//! by any thread (no thread holds a later one while waiting for an earlier
//! one):
//!
//! 1. the unwinder's loader gate (`unwind/loader.rs`, `unwind/gate.rs`):
//!    closed (one more fork under way), then the threads inside
//!    `dl_iterate_phdr` on the unwinder's behalf, the system unwinder's
//!    walks included, are waited out (glibc does not reset that
//!    function's lock in the child). Not a lock: nothing waits for it;
//!    walks that find it closed record an empty stack;
//! 2. the site-history gate (`objects/history.rs`): every per-site history
//!    mutex is taken under it, so holding it means no thread holds one;
//!    their holders neither allocate nor wait for anything else; then the
//!    retired-objects table (`objects/retire.rs`), whose holders may
//!    allocate (a sampled allocation takes the tables, 6 below);
//! 3. the Prometheus exporter's state (`prometheus/build.rs`, with the
//!    `prometheus` feature);
//! 4. the pprof build-id cache (`pprof/mapping.rs`), then the marks table
//!    (`marks.rs`), whose holders only copy fixed slots: no allocation, no
//!    other lock.
//!
//!    2 to 4 are the snapshot/export path's locks. Their holders take no
//!    other lock of this list, except the sample tables (5 and 6 are below
//!    them): they allocate outside the re-entrancy guard, and a sampled
//!    allocation takes the tables' mutex;
//! 5. the symbol cache, which is leakscope's own symbolizer's one mutex
//!    (`symbolize/`, reached as `stack::lock_cache`); its holder symbolizes
//!    under it, under the re-entrancy guard;
//! 6. the sample tables (`table.rs`): their holders hold the re-entrancy
//!    guard and allocate nothing, so they never wait for anything else.
//!
//! Released in the reverse order after the fork.
//!
//! # Protocol
//!
//! ```text
//!  prepare (forking thread):  close loader gate (count + 1), wait for it
//!                             to empty; lock 2, 3, 4, 5, 6
//!  fork()
//!  parent:                    unlock 6 to 2; loader gate count - 1
//!  child:                     repair: even out counter blocks caught
//!                             mid-fold; reset the loader gate's counts,
//!                             the module build's try-lock, the rule
//!                             caches' try-locks (a cache that was taken is
//!                             emptied on its next use); then unlock 6 to 2
//! ```
//!
//! Not covered: locks outside leakscope (the `metrics` facade's recorder,
//! the `backtrace` crate's global lock that `backtrace::resolve` takes on
//! the snapshot path), and the `OnceLock`s that are initialised once per
//! process (`clock/objects.rs`, `objects/arc.rs`): a child forked while one
//! of them is being initialised would block on its first use of it.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::stack::{self, SymbolCache};
use super::table::{self, Tables};
use super::{counters, unwind};

/// The guards the forking thread holds across `fork()`.
struct Held {
    symbols: MutexGuard<'static, SymbolCache>,
    tables: MutexGuard<'static, Tables>,
}

/// [`Held`], between the prepare handler and the parent's or child's.
struct ForkHeld(UnsafeCell<Option<Held>>);

// SAFETY: the cell is only touched by a thread that holds the tables'
// mutex, the last lock `prepare` takes: `prepare` fills it right after
// taking that mutex, and `release` empties it before unlocking anything.
// Two threads can be forking at once (glibc >= 2.36 runs the atfork
// handlers without its own lock, so their handlers interleave), but the
// second blocks in `prepare` on the first mutex of the order until the
// first fork's `release` has emptied the cell and unlocked, so the two
// never touch the cell at once. In the child, the only thread is the one
// that forked, holding (its copies of) the guards.
unsafe impl Sync for ForkHeld {}

static FORK_HELD: ForkHeld = ForkHeld(UnsafeCell::new(None));

/// Prepare handler: the loader gate, then the locks, in the order of the
/// module doc.
extern "C" fn prepare() {
    unwind::fork_prepare();
    crate::__hooks::pause(crate::__hooks::Point::ForkPrepared);
    crate::objects::fork_prepare();
    #[cfg(feature = "prometheus")]
    crate::prometheus::fork_prepare();
    crate::pprof::fork_prepare();
    crate::marks::fork_prepare();
    // The symbol cache is the symbolizer's mutex: taken once.
    let symbols = stack::lock_cache();
    let tables = table::lock();
    // SAFETY: see `ForkHeld`: this thread holds the tables' mutex.
    unsafe { *FORK_HELD.0.get() = Some(Held { symbols, tables }) };
}

/// Unlocks what [`prepare`] locked, in the reverse order (the loader gate
/// is the caller's).
fn unlock() {
    // SAFETY: see `ForkHeld`: this thread ran `prepare` and still holds
    // the tables' mutex.
    let held = unsafe { (*FORK_HELD.0.get()).take() };
    if let Some(Held { symbols, tables }) = held {
        // Dropping a guard unlocks its mutex (in the child, the only
        // thread, so no waiter can be lost).
        drop(tables);
        drop(symbols);
    }
    crate::marks::fork_release();
    crate::pprof::fork_release();
    #[cfg(feature = "prometheus")]
    crate::prometheus::fork_release();
    crate::objects::fork_release();
}

/// Parent handler: unlock, then this fork no longer holds the gate shut.
extern "C" fn parent() {
    unlock();
    unwind::fork_parent();
}

/// Child handler: repairs first, while every lock is still held, then
/// unlocks. The gate's counts are reset by the repairs.
extern "C" fn child() {
    counters::fork_child();
    unwind::fork_child();
    unlock();
}

/// A mutex guard held by the forking thread across `fork()`, for the
/// modules outside the allocator whose locks the protocol takes (their
/// `fork_prepare` / `fork_release`).
pub(crate) struct ForkGuard<T: 'static>(UnsafeCell<Option<MutexGuard<'static, T>>>);

// SAFETY: the cell is only touched by the thread that holds its mutex:
// `hold` fills it right after locking, and `release` is called by the same
// thread (the atfork handlers of one fork run on the forking thread) and
// empties it before unlocking. A second thread forking at once blocks in
// `hold` (or on an earlier lock of the order) until then. `T: Send`: the
// guarded value is only reached through the mutex, as `Mutex<T>: Sync`
// requires.
unsafe impl<T: Send> Sync for ForkGuard<T> {}

impl<T> ForkGuard<T> {
    /// An empty cell.
    pub(crate) const fn new() -> Self {
        ForkGuard(UnsafeCell::new(None))
    }

    /// Locks `m` (poisoned or not) and keeps the guard.
    pub(crate) fn hold(&self, m: &'static Mutex<T>) {
        let g = m.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: see the `Sync` impl: this thread holds the mutex.
        unsafe { *self.0.get() = Some(g) };
    }

    /// Unlocks what [`ForkGuard::hold`] locked (on the same thread).
    pub(crate) fn release(&self) {
        // SAFETY: see the `Sync` impl: called by the thread that ran
        // `hold`, which still holds the mutex.
        let g = unsafe { (*self.0.get()).take() };
        drop(g);
    }
}

/// Registers the fork handlers once per process.
pub(crate) fn register() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if !DONE.swap(true, Ordering::AcqRel) {
        // SAFETY: the handlers are `extern "C"` functions valid for the whole
        // program; they neither allocate nor unwind.
        unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    }
}
