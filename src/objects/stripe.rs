//! Per-thread stripes: each thread that creates or drops tracked objects
//! claims one of [`OWNED`] stripe ids for as long as it lives, and writes
//! that stripe of every site with plain loads and stores (no `lock`-prefixed
//! instruction, no shared cache line on the common path).
//!
//! # Claiming and recycling
//!
//! ```text
//!   first use on a thread ──► lowest free bit of CLAIMED (CAS, Acquire)
//!                             none free ──► OVERFLOW for the thread's life
//!                                           (counted in `overflowed()`)
//!   thread exit (TLS dtor) ──► clear the bit (Release): the next thread to
//!                              claim it sees every store of the last owner
//! ```
//!
//! Ownership is exclusive, so per-stripe counters need no read-modify-write.
//! Ids are global (the same id in every site), bounded, and recycled when
//! threads exit, so a service that starts threads forever keeps reusing the
//! same [`OWNED`] stripes. Threads beyond that, and code running in a
//! thread's TLS teardown after the stripe was released, use [`OVERFLOW`]:
//! the sites' overflow row and histogram, updated with atomic
//! read-modify-writes.
//!
//! After `fork()`, the child keeps the parent's claimed bits of threads that
//! do not exist in it: those stripes stay unused there (their counts remain
//! valid; new threads of the child get the others, then OVERFLOW).

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Stripe ids that threads own.
pub(crate) const OWNED: usize = 16;
/// The id of the overflow stripe, which every thread without an owned one
/// shares (atomic read-modify-writes).
pub(crate) const OVERFLOW: usize = OWNED;

const _: () = assert!(OWNED <= 32 && OVERFLOW < UNSET as usize);

/// Bit `i` set: stripe `i` is owned by a live thread.
static CLAIMED: AtomicU32 = AtomicU32::new(0);
/// Threads that found every stripe taken.
static OVERFLOWED: AtomicU64 = AtomicU64::new(0);

const UNSET: u8 = u8::MAX;

/// This thread's stripe id; its destructor gives the stripe back.
struct Mine(Cell<u8>);

impl Drop for Mine {
    fn drop(&mut self) {
        let id = usize::from(self.0.get());
        if id < OWNED {
            self.0.set(OVERFLOW as u8);
            CLAIMED.fetch_and(!(1u32 << id), Ordering::Release);
        }
    }
}

std::thread_local! {
    static MINE: Mine = const { Mine(Cell::new(UNSET)) };
}

/// This thread's stripe: an owned id below [`OWNED`], or [`OVERFLOW`].
#[inline]
pub(crate) fn current() -> usize {
    MINE.try_with(|m| {
        let id = m.0.get();
        if id != UNSET {
            usize::from(id)
        } else {
            claim(m)
        }
    })
    .unwrap_or(OVERFLOW)
}

#[cold]
#[inline(never)]
fn claim(m: &Mine) -> usize {
    let all = if OWNED == 32 {
        u32::MAX
    } else {
        (1u32 << OWNED) - 1
    };
    let mut cur = CLAIMED.load(Ordering::Relaxed);
    let id = loop {
        let free = !cur & all;
        if free == 0 {
            OVERFLOWED.fetch_add(1, Ordering::Relaxed);
            break OVERFLOW;
        }
        let id = free.trailing_zeros() as usize;
        match CLAIMED.compare_exchange_weak(
            cur,
            cur | (1u32 << id),
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => break id,
            Err(now) => cur = now,
        }
    };
    m.0.set(id as u8);
    id
}

/// Threads so far that found all [`OWNED`] stripes taken and counted on
/// the overflow stripe (slower: atomic read-modify-writes on shared lines).
pub(crate) fn overflowed() -> u64 {
    OVERFLOWED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_are_exclusive_and_recycled() {
        let mine = current();
        assert_eq!(current(), mine, "stable on one thread");
        // Many short-lived threads, two at a time: ids come back.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let barrier = std::sync::Barrier::new(2);
            let (a, b) = std::thread::scope(|s| {
                let a = s.spawn(|| {
                    let id = current();
                    barrier.wait();
                    id
                });
                let b = s.spawn(|| {
                    let id = current();
                    barrier.wait();
                    id
                });
                (a.join().unwrap(), b.join().unwrap())
            });
            if a < OWNED && b < OWNED {
                assert_ne!(a, b, "two live threads never share an owned stripe");
            }
            seen.insert(a);
            seen.insert(b);
        }
        // Other tests' threads may hold some ids meanwhile; recycling keeps
        // 400 threads within the bounded set.
        assert!(seen.iter().all(|&id| id <= OVERFLOW), "{seen:?}");
    }
}
