//! The benchmark service (`service.rs`) over the system allocator: the
//! baseline of `scripts/bench-service.sh`.

#[global_allocator]
static ALLOC: std::alloc::System = std::alloc::System;

#[path = "service.rs"]
mod service;

fn main() {
    service::run(false);
}
