//! Controls for tests: move leakscope's clock, fix the sampler's seed, and
//! read internal high-water marks.
//!
//! None of these are needed in production; they exist so that tests of
//! leakscope (and of programs that use it) can age objects without
//! sleeping and get the same sample sequence every run. They change
//! process-wide state, so a test that uses them should run in its own
//! process (its own `tests/*.rs` file) or tolerate other tests' effects.

use core::time::Duration;

/// Moves leakscope's clock forward by `by`, for every reader in the process.
///
/// Ages and lifetimes of heap samples and tracked objects are measured on
/// this clock, so a test can make objects hours old without sleeping. It
/// affects only the ages and lifetimes leakscope reports, nothing else in
/// the program. The clock never goes back.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let before = leakscope::snapshot().taken_at_ns;
/// leakscope::testing::advance_clock(Duration::from_secs(3600));
/// assert!(leakscope::snapshot().taken_at_ns - before >= 3_600_000_000_000);
/// ```
pub fn advance_clock(by: Duration) {
    crate::clock::advance(by);
}

/// Seeds the sampler's random draws, so the same allocation sequence is
/// sampled the same way on every run. Takes effect for the calling thread at
/// once and for other threads at their next slow path.
pub fn set_sample_seed(seed: u64) {
    crate::alloc::set_sample_seed(seed);
}

/// The most per-thread counter blocks ever in use at once (they are
/// returned to a pool when threads exit and reused, so thread churn does not
/// grow this).
pub fn thread_blocks_high_water() -> usize {
    crate::alloc::thread_blocks_high_water()
}

/// What the most recent read of the sample tables copied while holding
/// their lock: (stack rows, live samples). A `/metrics` scrape copies one
/// row per interned stack and no live sample.
#[doc(hidden)]
pub fn last_table_read() -> (u64, u64) {
    crate::alloc::last_table_read()
}

/// leakscope's metadata counter, raw (bytes allocated minus bytes freed
/// under the re-entrancy guard): negative would mean leakscope freed
/// memory it did not allocate.
#[doc(hidden)]
pub fn metadata_live_raw() -> i64 {
    crate::alloc::metadata_live_raw()
}

/// `/metrics` rendered from a full snapshot and from the light read of the
/// same state, back to back: (full, light). They must be identical.
#[doc(hidden)]
#[cfg(feature = "prometheus")]
pub fn metrics_both_paths() -> (String, String) {
    crate::prometheus::render_both_paths()
}

/// The symbolizer's lookup calls so far (one per batch of addresses,
/// whether answered from its cache or not). A profile of stacks already
/// in the per-stack frame cache makes none.
#[doc(hidden)]
pub fn symbolizer_lookups() -> u64 {
    crate::symbolize::stats().batches
}

/// The per-stack frame cache: (stacks cached, heap bytes of their
/// entries). At most one entry per interned stack (3072).
#[doc(hidden)]
pub fn stack_cache() -> (u64, u64) {
    crate::alloc::stack_cache_stats()
}
