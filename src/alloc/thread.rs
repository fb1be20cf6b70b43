//! A thread's first allocation and its exit: the transitions of the thread
//! state machine drawn in `guard.rs`.
//!
//! On its first allocation a thread takes a counter block from the pool
//! (or, when the pool is empty, counts into the shared block), registers
//! its exit hook and, once per process, the fork handlers. The exit hook
//! folds the block's countdowns into its totals and returns the block to
//! the pool; the thread's later allocations (other thread-locals'
//! destructors) count into the shared block.

use super::counters::{self, PARKED, SHARED};
use super::fork;
use super::guard::{Guard, ThreadState, BUSY, EXITED, SLOW, STATE};

thread_local! {
    /// Returns the thread's counter block to the pool when the thread exits.
    static EXIT_HOOK: ExitHook = const { ExitHook };
}

struct ExitHook;

impl Drop for ExitHook {
    fn drop(&mut self) {
        let _ = STATE.try_with(|t| {
            let owned = t.owns_block().then(|| t.block.get());
            // Parked first: from here on this thread (a signal handler
            // included) counts into the shared block, so nothing writes the
            // block once it is back in the pool, where another thread may
            // take it at once.
            t.fast.set(&PARKED);
            t.flags.set((t.flags.get() & BUSY) | SLOW | EXITED);
            t.block.set(&SHARED);
            if let Some(b) = owned {
                // Countdowns folded into the totals: the block's next owner
                // starts from clean countdowns.
                b.restart();
                counters::release(b);
            }
        });
    }
}

/// Takes a counter block for a thread's first allocation.
#[cold]
#[inline(never)]
pub(crate) fn init_thread(t: &ThreadState) {
    let taken = {
        // Registering the exit hook may allocate (thread-local destructor list).
        let _g = Guard::enter();
        counters::mark_active();
        fork::register();
        if EXIT_HOOK.try_with(|_| ()).is_err() {
            // Thread-local teardown has begun: count into the shared block.
            None
        } else {
            Some(counters::acquire())
        }
    };
    // After the guard is gone, so that it cannot restore a stale state. The
    // allocation countdown is armed by the slow path that follows.
    let keep = t.flags.get() & BUSY;
    match taken {
        None => t.flags.set(keep | SLOW | EXITED),
        Some(Some(b)) => {
            b.restart();
            t.block.set(b);
            t.flags.set(keep);
            if t.is_owner() {
                t.fast.set(b);
            }
        }
        Some(None) => t.flags.set(keep | SLOW),
    }
}
