//! The tracking global allocator (work in progress: pass-through).

use core::alloc::{GlobalAlloc, Layout};
use std::alloc::System;

use crate::snapshot::{HeapSnapshot, HeapStats};

/// A `GlobalAlloc` wrapper that counts and samples allocations.
#[derive(Debug, Default)]
pub struct TrackingAllocator<A = System> {
    inner: A,
}

impl TrackingAllocator<System> {
    /// Wraps the system allocator.
    pub const fn system() -> Self {
        TrackingAllocator { inner: System }
    }
}

impl<A> TrackingAllocator<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        TrackingAllocator { inner }
    }
}

// SAFETY: pass-through to the inner allocator, which upholds the contract.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { self.inner.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { self.inner.dealloc(ptr, layout) }
    }
}

/// Sets the sampling rate in bytes.
pub fn set_sample_rate(_bytes: usize) {}

/// The sampling rate in bytes.
pub fn sample_rate() -> usize {
    512 * 1024
}

pub(crate) fn heap_stats() -> HeapStats {
    HeapStats::default()
}

pub(crate) fn heap_snapshot(_now: u64, _min_age: Option<core::time::Duration>) -> HeapSnapshot {
    HeapSnapshot::default()
}
