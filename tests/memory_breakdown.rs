//! `leakscope::memory()`: the parts sum to RSS exactly, and each measured
//! part moves with an independent reading: a 64 MiB Rust allocation moves
//! the heap part, a 64 MiB C `malloc` behind Rust's back only unattributed
//! (named there as malloc outside the Rust heap), a thread that touches
//! 1 MiB of its stack the thread-stack part.
//!
//! One test: the steps share the process's RSS and must not overlap.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::Duration;

use leakscope::Memory;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

const MIB: u64 = 1 << 20;
const SIZE: usize = 64 << 20;

fn sum(m: &Memory) -> u64 {
    m.thread_stacks_bytes
        + m.heap_bytes
        + m.leakscope_bytes
        + m.allocator_bytes
        + m.unattributed_bytes
}

fn read() -> Memory {
    let m = leakscope::memory();
    assert!(m.available, "Linux /proc expected");
    assert_eq!(sum(&m), m.rss_bytes, "parts must sum to RSS\n{m}");
    assert_eq!(
        m.parts().iter().map(|p| p.1).sum::<u64>(),
        m.rss_bytes,
        "parts()"
    );
    m
}

fn near(delta: i64, want: u64, slack: u64) -> bool {
    (delta - want as i64).unsigned_abs() <= slack
}

fn d(after: u64, before: u64) -> i64 {
    after as i64 - before as i64
}

#[inline(never)]
fn touch_stack() -> u8 {
    let buf = black_box([1u8; 1 << 20]);
    buf[black_box(12345)]
}

#[test]
fn breakdown_sums_to_rss_and_parts_move_with_their_cause() {
    // Warm up: the first read looks glibc's mallinfo2 up, the first
    // snapshot symbolizes.
    let _ = read();
    let _ = leakscope::snapshot();

    // 1. A touched 64 MiB Rust allocation: the heap part.
    let before = read();
    let v = black_box(vec![7u8; SIZE]);
    let after = read();
    // Exact, but for the `before` reading itself (its copy of the inner
    // allocator's details is the caller's memory).
    let claim = after.heap_claim - before.heap_claim;
    assert!(
        (SIZE as u64..SIZE as u64 + 1024).contains(&claim),
        "the heap claim is exact: {claim}"
    );
    let heap = d(after.heap_bytes, before.heap_bytes);
    let unattr = d(after.unattributed_bytes, before.unattributed_bytes);
    assert!(
        near(heap, SIZE as u64, 2 * MIB),
        "heap part moved {heap}\n{before}{after}"
    );
    assert!(
        unattr.unsigned_abs() < 4 * MIB,
        "unattributed moved {unattr}\n{before}{after}"
    );
    assert!(near(
        d(after.rss_bytes, before.rss_bytes),
        SIZE as u64,
        4 * MIB
    ));
    drop(v);

    // 2. A touched 64 MiB C malloc behind Rust's back: only unattributed.
    let before = read();
    // SAFETY: malloc of a nonzero size; the block is written within its
    // bounds and freed once below.
    let p = unsafe { libc::malloc(SIZE) } as *mut u8;
    assert!(!p.is_null());
    // SAFETY: `p` points to SIZE writable bytes.
    unsafe { std::ptr::write_bytes(p, 3, SIZE) };
    let after = read();
    let heap = d(after.heap_bytes, before.heap_bytes);
    let unattr = d(after.unattributed_bytes, before.unattributed_bytes);
    let malloc = d(
        after.unattributed_malloc_bytes,
        before.unattributed_malloc_bytes,
    );
    assert!(
        heap.unsigned_abs() < MIB,
        "heap part moved {heap}\n{before}{after}"
    );
    assert!(
        near(unattr, SIZE as u64, 4 * MIB),
        "unattributed moved {unattr}\n{before}{after}"
    );
    if after
        .inner_allocator
        .as_ref()
        .is_some_and(|i| i.serves_malloc)
    {
        // glibc: mallinfo2 sees the chunk (hblkhd), and it is not Rust's.
        assert!(
            near(malloc, SIZE as u64, MIB),
            "malloc outside Rust moved {malloc}\n{after}"
        );
    }
    let text = after.to_string();
    assert!(text.contains("unattributed is usually:"), "{text}");
    // SAFETY: `p` came from malloc and is freed once.
    unsafe { libc::free(p as *mut libc::c_void) };

    // 3. A thread that touched 1 MiB of its stack: the stack part.
    let before = read();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let t = std::thread::Builder::new()
        .stack_size(4 << 20)
        .spawn(move || {
            black_box(touch_stack());
            ready_tx.send(()).unwrap();
            let _ = done_rx.recv();
        })
        .unwrap();
    ready_rx.recv().unwrap();
    // The stack scan is reused for 10 s of leakscope's clock.
    leakscope::testing::advance_clock(Duration::from_secs(11));
    let after = read();
    assert!(
        after.thread_stacks > before.thread_stacks,
        "{before}{after}"
    );
    assert!(after.threads > before.threads);
    let stacks = d(after.thread_stacks_claim, before.thread_stacks_claim);
    assert!(
        stacks >= MIB as i64,
        "stacks moved {stacks}\n{before}{after}"
    );
    assert!(
        after.thread_stacks_mapped_bytes - before.thread_stacks_mapped_bytes >= 4 * MIB,
        "the new stack's mapping is counted whole as mapped"
    );
    done_tx.send(()).unwrap();
    t.join().unwrap();

    // 4. In the text report first, and in the snapshot's JSON.
    let snap = leakscope::snapshot();
    let report = snap.to_string();
    let second = report.lines().nth(1).unwrap_or_default();
    assert!(second.starts_with("memory: RSS "), "{report}");
    let json = serde_json::to_value(&snap).unwrap();
    assert!(json["memory"]["rss_bytes"].as_u64().unwrap() > 0);
}
