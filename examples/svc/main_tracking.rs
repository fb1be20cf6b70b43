//! The benchmark service (`service.rs`) over leakscope's `TrackingAllocator`
//! wrapping the system allocator, at the default sample rate, with the
//! debug server on an ephemeral loopback port.

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

#[path = "service.rs"]
mod service;

fn main() {
    service::run(true);
}
