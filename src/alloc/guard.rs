//! The re-entrancy guard.
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
//! The flag is a `const`-initialised `Cell<bool>` in a thread-local with no
//! destructor, so it is readable during and after thread-local teardown.

use core::cell::Cell;

thread_local! {
    static IN_LEAKSCOPE: Cell<bool> = const { Cell::new(false) };
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
        let was_set = IN_LEAKSCOPE.try_with(|f| f.replace(true)).unwrap_or(true);
        Guard { was_set }
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        if !self.was_set {
            let _ = IN_LEAKSCOPE.try_with(|f| f.set(false));
        }
    }
}

/// Whether this thread is inside leakscope (or its thread-locals are gone, in
/// which case nothing is recorded).
#[inline]
pub(crate) fn is_entered() -> bool {
    IN_LEAKSCOPE.try_with(|f| f.get()).unwrap_or(true)
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
