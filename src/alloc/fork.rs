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
//! # Lock order
//!
//! Taken in this order by the prepare handler, and never in another order
//! by any thread (no thread holds a later one while waiting for an earlier
//! one):
//!
//! 1. the unwinder's loader gate (`unwind/loader.rs`): closed, then the
//!    threads inside `dl_iterate_phdr` on the unwinder's behalf are waited
//!    out (glibc does not reset that function's lock in the child);
//! 2. the symbol cache (`stack.rs`);
//! 3. the sample tables (`table.rs`).
//!
//! Released in the reverse order after the fork.
//!
//! # Protocol
//!
//! ```text
//!  prepare (forking thread):  close loader gate, wait for it to empty
//!                             lock symbol cache, lock tables
//!  fork()
//!  parent:                    unlock tables, unlock symbol cache, open gate
//!  child:                     even out counter blocks caught mid-fold
//!                             (their owners are gone), then as the parent
//! ```
//!
//! What is not covered yet (`issue 15`): the loader gate is one flag, so two
//! threads forking at once can reopen it early; a child inherits the
//! unwinder's in-flight counters and try-locks as they were; the
//! snapshot/export path's own locks are not taken here.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::MutexGuard;

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

// SAFETY: the cell is only touched by `prepare` (which fills it) and
// `release` (which empties it), and `pthread_atfork` runs the prepare
// handler and then the parent's or child's handler on the thread that
// called `fork()`, one after the other. (Two threads forking at once are
// issue 15's first fork item; nothing here makes that safe yet.)
unsafe impl Sync for ForkHeld {}

static FORK_HELD: ForkHeld = ForkHeld(UnsafeCell::new(None));

/// Prepare handler: the locks, in the order of the module doc.
extern "C" fn prepare() {
    unwind::fork_prepare();
    let symbols = stack::lock_cache();
    let tables = table::lock();
    // SAFETY: see `ForkHeld`: only the forking thread touches the cell, and
    // nothing else borrows it while this store runs.
    unsafe { *FORK_HELD.0.get() = Some(Held { symbols, tables }) };
}

/// Releases what [`prepare`] took, in the reverse order.
fn release() {
    // SAFETY: see `ForkHeld`: only the forking thread touches the cell, and
    // nothing else borrows it while this take runs.
    let held = unsafe { (*FORK_HELD.0.get()).take() };
    if let Some(Held { symbols, tables }) = held {
        // Dropping a guard unlocks its mutex (in the child, the only thread,
        // so no waiter can be lost).
        drop(tables);
        drop(symbols);
    }
    unwind::fork_release();
}

/// Parent handler.
extern "C" fn parent() {
    release();
}

/// Child handler: repairs first, while every lock is still held.
extern "C" fn child() {
    counters::fork_child();
    release();
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
