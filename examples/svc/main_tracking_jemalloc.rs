//! The benchmark service (`service.rs`) over leakscope's `TrackingAllocator`
//! wrapping jemalloc, at the default sample rate, with the debug server on
//! an ephemeral loopback port.

use tikv_jemallocator::Jemalloc;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator<Jemalloc> = leakscope::TrackingAllocator::new(Jemalloc);

#[path = "service.rs"]
mod service;

fn main() {
    service::run(true);
}
