//! With jemalloc as the inner allocator (feature `jemalloc`), the allocator
//! part reads jemalloc's own numbers, and a touched 64 MiB Rust allocation
//! moves the heap part, not the allocator part.

#![cfg(feature = "jemalloc")]

use std::hint::black_box;

use leakscope::memory::{set_inner_allocator, Jemalloc};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator<tikv_jemallocator::Jemalloc> =
    leakscope::TrackingAllocator::new(tikv_jemallocator::Jemalloc);

const SIZE: usize = 64 << 20;

#[test]
fn jemalloc_numbers_and_the_heap_part() {
    set_inner_allocator(&Jemalloc);
    let before = leakscope::memory();
    let inner = before.inner_allocator.clone().expect("jemalloc stats");
    assert_eq!(inner.name, "jemalloc");
    assert!(!inner.serves_malloc);
    let names: Vec<&str> = inner.details.iter().map(|d| d.0).collect();
    assert_eq!(names, ["allocated", "active", "resident", "retained"]);
    assert!(inner.held_bytes >= inner.in_use_bytes, "{inner:?}");

    let v = black_box(vec![9u8; SIZE]);
    let after = leakscope::memory();
    let inner2 = after.inner_allocator.clone().unwrap();
    // jemalloc counts the block (its size class) as allocated.
    assert!(inner2.in_use_bytes - inner.in_use_bytes >= SIZE as u64);
    let heap = after.heap_bytes as i64 - before.heap_bytes as i64;
    assert!(
        (heap - SIZE as i64).unsigned_abs() < 2 << 20,
        "heap moved {heap}\n{before}{after}"
    );
    let alloc = after.allocator_bytes as i64 - before.allocator_bytes as i64;
    assert!(
        alloc.unsigned_abs() < 4 << 20,
        "allocator part moved {alloc}\n{before}{after}"
    );
    assert_eq!(
        after.parts().iter().map(|p| p.1).sum::<u64>(),
        after.rss_bytes
    );
    drop(v);
}
