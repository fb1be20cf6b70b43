//! The calling thread's allocator state and the re-entrancy guard.
//!
//! Any leakscope code that can allocate while it is recording or reading its
//! tables (stack interning, symbolization, snapshot building) runs inside a
//! [`Guard`]. While a thread holds one, the tracking allocator sends that
//! thread's allocations and frees straight to the inner allocator: not
//! counted in the user's totals, never sampled, never recursing into the
//! recording code. Their bytes are counted as leakscope's metadata instead.
//!
//! Invariant that keeps the totals exact: memory allocated under the guard is
//! freed under the guard (leakscope's caches are never handed to users; what
//! a snapshot returns is cloned out after the guard is released).
//!
//! The guard is one bit of the thread's `flags`, in the same
//! `const`-initialised thread-local (no destructor, so readable during and
//! after thread-local teardown) as the rest of the thread's allocator state.
//!
//! The fast paths do not read `flags` at all: they go through the thread's
//! `fast` block pointer, kept under this invariant:
//!
//! **`fast` is the thread's own counter block only while the thread is an
//! *owner*** ([`ThreadState::is_owner`]: `flags == 0`, i.e. it owns a block,
//! is not inside leakscope, and is not exiting). Every other state points
//! `fast` at [`PARKED`], whose countdowns stay far below zero, so any
//! allocation or free takes the slow path, which reads `flags`. An owner
//! whose countdown runs out takes the same slow path (sampling decision,
//! fold and re-arm).
//!
//! # The thread state machine
//!
//! The one diagram of a thread's allocator state (`flags`; where it counts
//! in brackets; the transitions are in `thread.rs`):
//!
//! ```text
//!   FRESH|SLOW ──first allocation, block taken──► OWNER: flags == 0
//!   [nothing yet]                                 [own block, fast path]
//!        │                                                │
//!        │ pool empty                                     │ exit hook
//!        ▼                                                ▼ (block released)
//!   SLOW [SHARED, atomic adds] ──────exit hook───────► EXITED|SLOW
//!                                                     [SHARED, atomic adds]
//!   FRESH|SLOW ──first allocation during TLS teardown──► EXITED|SLOW
//!
//!   BUSY is or-ed in while a Guard is held, in any state: allocations pass
//!   through uncounted (metadata). The guard points `fast` at PARKED and,
//!   when dropped, back at the block if the thread is an owner again.
//! ```

use core::cell::Cell;

use super::counters::{Block, PARKED, SHARED};

// The flags are bits, so a state is one byte compared against 0 on every
// slow path; the states they make are drawn in the module doc.

/// Inside leakscope: allocations pass through uncounted.
pub(crate) const BUSY: u8 = 1;
/// Not on the fast path: counts go to the shared block with atomic adds.
pub(crate) const SLOW: u8 = 2;
/// No block taken yet.
pub(crate) const FRESH: u8 = 4;
/// The thread's exit hook ran.
pub(crate) const EXITED: u8 = 8;

/// The calling thread's allocator state.
#[derive(Debug)]
pub(crate) struct ThreadState {
    pub(crate) flags: Cell<u8>,
    /// The block the fast paths count into: `block` while `flags == 0`,
    /// else [`PARKED`].
    pub(crate) fast: Cell<&'static Block>,
    /// The thread's own counter block ([`SHARED`] while it owns none).
    pub(crate) block: Cell<&'static Block>,
    /// Bytes left until the next sample.
    pub(crate) sample_left: Cell<i64>,
    /// Bytes allocated since the last peak check.
    pub(crate) since_peak: Cell<i64>,
    /// The sampler epoch the countdown was drawn under.
    pub(crate) epoch: Cell<u64>,
    /// The sampling generator's state.
    pub(crate) rng: Cell<u64>,
}

thread_local! {
    pub(crate) static STATE: ThreadState = const {
        ThreadState {
            flags: Cell::new(FRESH | SLOW),
            fast: Cell::new(&PARKED),
            block: Cell::new(&SHARED),
            sample_left: Cell::new(0),
            since_peak: Cell::new(0),
            epoch: Cell::new(0),
            rng: Cell::new(0),
        }
    };
}

impl ThreadState {
    /// On the fast path: owns a block, not inside leakscope, not exiting
    /// (`flags == 0`). Exactly then `fast` is `block`.
    #[inline(always)]
    pub(crate) fn is_owner(&self) -> bool {
        self.flags.get() == 0
    }

    /// Inside leakscope (a [`Guard`] is held): allocations are metadata.
    #[inline(always)]
    pub(crate) fn is_busy(&self) -> bool {
        self.flags.get() & BUSY != 0
    }

    /// No block taken yet: the next allocation's slow path takes one.
    #[inline(always)]
    pub(crate) fn is_fresh(&self) -> bool {
        self.flags.get() & FRESH != 0
    }

    /// Owns a counter block, inside leakscope or not.
    #[inline(always)]
    pub(crate) fn owns_block(&self) -> bool {
        self.flags.get() & SLOW == 0
    }
}

/// Makes the calling thread take the slow path on its next allocation, so a
/// rate or seed change applies to it at once (other threads pick it up
/// within their next `PEAK_CHECK_BYTES` of allocation).
pub(crate) fn rearm_current_thread() {
    let _ = STATE.try_with(|t| {
        // A thread that is not an owner meets the new rate on its next slow
        // path anyway.
        if t.is_owner() {
            // What the countdown consumed is folded into the totals; armed
            // with 0, it runs out on the next allocation.
            t.block.get().expire_alloc();
        }
    });
}

/// RAII re-entrancy guard: mandatory around any leakscope code that may
/// allocate while touching leakscope's own tables or caches.
#[derive(Debug)]
#[must_use = "the guard is released when dropped"]
pub(crate) struct Guard {
    was_set: bool,
    /// Whether the thread was on the fast path when it entered.
    was_fast: bool,
}

impl Guard {
    /// Marks this thread as inside leakscope until the guard is dropped.
    /// Nested guards are fine: only the outermost one clears the flag.
    #[inline]
    pub(crate) fn enter() -> Guard {
        let (was_set, was_fast) = STATE
            .try_with(|t| {
                if t.is_busy() {
                    return (true, false);
                }
                let was_fast = !core::ptr::eq(t.fast.get(), &PARKED);
                // Parked first: a signal handler running in between
                // counts its allocations and frees on the slow path, as
                // the user's both (not its allocations as metadata, after
                // `BUSY`, and its frees on the fast path as the user's).
                t.fast.set(&PARKED);
                t.flags.set(t.flags.get() | BUSY);
                (false, was_fast)
            })
            .unwrap_or((true, false));
        Guard { was_set, was_fast }
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        if !self.was_set {
            let _ = STATE.try_with(|t| {
                t.flags.set(t.flags.get() & !BUSY);
                // Only a thread that was on the fast path goes back to it,
                // and only if it is still an owner (the state may have
                // changed while the guard was held). Not one that entered
                // parked: that is a signal handler's guard that ran between
                // the two stores of `enter`, and putting the block back
                // would leave the interrupted thread inside leakscope with
                // its frees on the fast path.
                t.fast.set(if self.was_fast && t.is_owner() {
                    t.block.get()
                } else {
                    &PARKED
                });
            });
            crate::__hooks::pause(crate::__hooks::Point::GuardLeft);
        }
    }
}

/// Marks the calling thread as leakscope's own for the rest of its life
/// (the debug server's worker threads): everything it allocates and frees
/// is leakscope's metadata. For a thread whose body leakscope runs, prefer
/// a [`Guard`] held for the body, so what the spawning thread allocated and
/// moved in is freed as it was allocated.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn enter_for_thread() {
    core::mem::forget(Guard::enter());
}

/// Whether this thread is inside leakscope.
#[inline]
pub(crate) fn is_entered() -> bool {
    STATE.try_with(|t| t.is_busy()).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_and_clears() {
        assert!(!is_entered());
        {
            let _a = Guard::enter();
            assert!(is_entered());
            {
                let _b = Guard::enter();
                assert!(is_entered());
            }
            assert!(is_entered(), "inner guard must not clear the outer one");
        }
        assert!(!is_entered());
    }
}
