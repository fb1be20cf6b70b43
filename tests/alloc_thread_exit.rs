//! Allocations from thread-local destructors (during and after teardown)
//! are counted exactly, and per-thread counter blocks are recycled when
//! threads exit, so creating threads forever does not grow leakscope.

use std::cell::RefCell;
use std::hint::black_box;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// Allocates 1000 bytes and frees them when the thread's locals are torn down.
struct AllocatesOnDrop;

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        let v = black_box(vec![0u8; 1000]);
        drop(v);
        // And one that outlives the thread: moved into a global list.
        LEAKED.lock().unwrap().push(black_box(vec![0u8; 24]));
    }
}

static LEAKED: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

thread_local! {
    static DROPPER: RefCell<Option<AllocatesOnDrop>> = const { RefCell::new(None) };
}

fn thread_exit_and_block_recycling() {
    leakscope::set_sample_rate(1);
    LEAKED.lock().unwrap().reserve(3000);
    let before = leakscope::heap_stats();
    for _ in 0..3000 {
        std::thread::spawn(|| {
            DROPPER.with(|d| *d.borrow_mut() = Some(AllocatesOnDrop));
            black_box(vec![1u8; 100]);
        })
        .join()
        .unwrap();
    }
    let after = leakscope::heap_stats();
    // Each thread's own allocations (spawn bookkeeping, the 100-byte vec,
    // the 1000-byte vec in the destructor) are freed; the 24-byte vectors
    // moved into LEAKED are the only new live bytes.
    let live_delta = after.live_bytes as i64 - before.live_bytes as i64;
    assert_eq!(live_delta, 3000 * 24, "{before:?}\n{after:?}");
    assert_eq!(
        after.live_allocations as i64 - before.live_allocations as i64,
        3000
    );
    assert!(after.allocated_bytes - before.allocated_bytes >= 3000 * 1124);
    // Sequential threads reuse one block (plus the test threads').
    assert!(
        leakscope::alloc::__testing::thread_blocks_high_water() <= 8,
        "high water {}",
        leakscope::alloc::__testing::thread_blocks_high_water()
    );
    leakscope::set_sample_rate(leakscope::alloc::DEFAULT_SAMPLE_RATE);
}

/// More threads alive at once than the pool has blocks: the rest count into
/// the shared block (atomic adds, parked countdown) and totals stay exact,
/// with sampling on. Their 64 KiB stacks also make the sampled path fall
/// back to the system unwinder, which needs less stack.
fn pool_exhausted_threads_count_exactly() {
    const THREADS: usize = 1100;
    leakscope::set_sample_rate(4096);
    LEAKED.lock().unwrap().reserve(THREADS);
    let before = leakscope::heap_stats();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
    let mut handles = Vec::with_capacity(THREADS);
    for _ in 0..THREADS {
        let b = barrier.clone();
        handles.push(
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    for i in 0..20 {
                        drop(black_box(vec![0u8; 100 + i]));
                    }
                    // Every thread holds its block (or the shared one) here.
                    b.wait();
                    LEAKED.lock().unwrap().push(black_box(vec![0u8; 40]));
                })
                .unwrap(),
        );
    }
    for h in handles.drain(..) {
        h.join().unwrap();
    }
    drop(handles);
    drop(barrier);
    let after = leakscope::heap_stats();
    assert!(
        after.system_unwinds > before.system_unwinds,
        "64 KiB stacks are too small for the caching unwinder: it must fall back"
    );
    assert_eq!(
        leakscope::alloc::__testing::thread_blocks_high_water(),
        1024,
        "the pool should have run out"
    );
    let live_delta = after.live_bytes as i64 - before.live_bytes as i64;
    assert_eq!(live_delta, THREADS as i64 * 40, "{before:?}\n{after:?}");
    assert_eq!(
        after.live_allocations as i64 - before.live_allocations as i64,
        THREADS as i64
    );
    let per_thread: u64 = (0..20).map(|i| 100 + i).sum::<u64>() + 40;
    assert!(after.allocated_bytes - before.allocated_bytes >= THREADS as u64 * per_thread);
    assert!(after.samples > before.samples, "sampling went on");
    leakscope::set_sample_rate(leakscope::alloc::DEFAULT_SAMPLE_RATE);
}

/// `harness = false` (see Cargo.toml): the test runner's own threads would
/// otherwise allocate at unpredictable moments (blocking on its result
/// channel allocates), and this file asserts exact process-wide deltas.
fn main() {
    thread_exit_and_block_recycling();
    println!("test thread_exit_and_block_recycling ... ok");
    pool_exhausted_threads_count_exactly();
    println!("test pool_exhausted_threads_count_exactly ... ok");
    println!("test result: ok. 2 passed; 0 failed");
}
