//! leakscope's monotonic clock.
//!
//! Every timestamp leakscope keeps (allocation births, tracked-object births,
//! snapshot times) is a `u64` count of nanoseconds read from
//! `CLOCK_MONOTONIC` plus a test offset. Reading it never allocates and never
//! locks, so it is safe on the allocator path.
//!
//! # Test support
//!
//! [`advance`] moves leakscope's clock forward for the whole process, so a
//! test can make objects "an hour old" without sleeping. It never moves the
//! clock backwards and only affects leakscope's own ages and lifetimes.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

/// Nanoseconds added to every reading; only ever grows (see [`advance`]).
static OFFSET_NS: AtomicU64 = AtomicU64::new(0);

/// Current time in nanoseconds on leakscope's monotonic clock.
///
/// The origin is arbitrary (boot time plus the test offset); only
/// differences are meaningful.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec`; `clock_gettime` with
    // CLOCK_MONOTONIC only writes into it (served by the vDSO on Linux, no
    // allocation, no lock).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let base = if rc == 0 {
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    } else {
        0
    };
    base.wrapping_add(OFFSET_NS.load(Ordering::Relaxed))
}

/// Moves leakscope's clock forward by `by`, for the whole process.
///
/// This exists for tests: it lets a test age tracked objects and sampled
/// allocations by hours in microseconds of real time. It affects only the ages
/// and lifetimes leakscope reports, nothing else in the program.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let before = leakscope::clock::now_ns();
/// leakscope::clock::advance(Duration::from_secs(3600));
/// assert!(leakscope::clock::now_ns() - before >= 3_600_000_000_000);
/// ```
pub fn advance(by: Duration) {
    let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX / 4);
    OFFSET_NS.fetch_add(ns, Ordering::Relaxed);
}

/// The test offset alone (what [`advance`] has added so far), for clocks
/// that read their own time source (the tracked-object clock).
#[inline]
pub(crate) fn offset_ns() -> u64 {
    OFFSET_NS.load(Ordering::Relaxed)
}

/// Age in nanoseconds of something born at `birth_ns`, as of `now_ns`
/// (zero if the birth is in the future, e.g. a racing reader).
#[inline]
pub(crate) fn age_ns(now_ns: u64, birth_ns: u64) -> u64 {
    now_ns.saturating_sub(birth_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_advances() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert_eq!(age_ns(a, b), 0);
        assert_eq!(age_ns(b + 5, b), 5);
    }
}
