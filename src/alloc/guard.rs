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
//! **`fast` is the thread's own counter block only while `flags == 0`** (the
//! thread owns a block, is not inside leakscope, and is not exiting). Every
//! other state points `fast` at [`PARKED`], whose countdowns stay far below
//! zero, so any allocation or free takes the slow path, which reads `flags`.
//! An owner whose countdown runs out takes the same slow path (sampling
//! decision, fold and re-arm).
//!
//! ```text
//!  flags:  FRESH|SLOW ──first alloc──► 0 (owns a block)  ──exit hook──► EXITED|SLOW
//!              │                                                          ▲
//!              └──── pool empty ────► SLOW (shared block, atomic adds) ───┘
//!  BUSY is or-ed in while a Guard is held, in any state; the guard points
//!  `fast` at PARKED and points it back when it is dropped.
//! ```

use core::cell::Cell;

use super::counters::{Block, PARKED, SHARED};

/// Inside leakscope: allocations pass through uncounted.
pub(crate) const BUSY: u8 = 1;
/// Not on the fast path: counts go to the shared block with atomic adds.
pub(crate) const SLOW: u8 = 2;
/// No block taken yet.
pub(crate) const FRESH: u8 = 4;
/// The thread's exit hook ran.
pub(crate) const EXITED: u8 = 8;

/// The calling thread's allocator state.
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

/// RAII re-entrancy guard: mandatory around any leakscope code that may
/// allocate while touching leakscope's own tables or caches.
#[derive(Debug)]
#[must_use = "the guard is released when dropped"]
pub(crate) struct Guard {
    was_set: bool,
}

impl Guard {
    /// Marks this thread as inside leakscope until the guard is dropped.
    /// Nested guards are fine: only the outermost one clears the flag.
    #[inline]
    pub(crate) fn enter() -> Guard {
        let was_set = STATE
            .try_with(|t| {
                let f = t.flags.get();
                if f & BUSY != 0 {
                    return true;
                }
                t.flags.set(f | BUSY);
                t.fast.set(&PARKED);
                false
            })
            .unwrap_or(true);
        Guard { was_set }
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        if !self.was_set {
            let _ = STATE.try_with(|t| {
                let f = t.flags.get() & !BUSY;
                t.flags.set(f);
                // Only an owner goes back to the fast path (the state may
                // have changed while the guard was held).
                t.fast.set(if f == 0 { t.block.get() } else { &PARKED });
            });
        }
    }
}

/// Whether this thread is inside leakscope.
#[inline]
pub(crate) fn is_entered() -> bool {
    STATE
        .try_with(|t| t.flags.get() & BUSY != 0)
        .unwrap_or(true)
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
