//! The benchmark service (`service.rs`) over jemalloc: the baseline for
//! `svc_tracking_jemalloc`.

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "service.rs"]
mod service;

fn main() {
    service::run(false);
}
