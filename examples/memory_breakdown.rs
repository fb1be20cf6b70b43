//! Where the memory is: a program that keeps 32 MiB on the Rust heap and
//! has C code `malloc` 48 MiB behind Rust's back, then prints
//! `leakscope::memory()`. The C part lands in *unattributed*, named there
//! as malloc outside the Rust heap.
//!
//! ```text
//! cargo run --release --example memory_breakdown
//! ```

use std::hint::black_box;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// What a C library does with its own buffers: `malloc` directly.
fn c_library_buffers(total: usize) -> Vec<*mut u8> {
    (0..total >> 20)
        .map(|_| {
            // SAFETY: malloc of 1 MiB; the block is written within its
            // bounds and freed once in `main`.
            unsafe {
                let p = libc::malloc(1 << 20).cast::<u8>();
                assert!(!p.is_null());
                core::ptr::write_bytes(p, 1, 1 << 20);
                p
            }
        })
        .collect()
}

fn main() {
    println!("before:\n{}", leakscope::memory());
    let rust: Vec<Vec<u8>> = (0..32).map(|i| vec![i as u8; 1 << 20]).collect();
    let c = c_library_buffers(48 << 20);
    let m = leakscope::memory();
    println!("32 MiB on the Rust heap, 48 MiB malloc'd by C code:\n{m}");
    black_box(&rust);
    for p in c {
        // SAFETY: each `p` came from malloc and is freed once.
        unsafe { libc::free(p.cast()) };
    }
}
