//! Model check (loom) of the counter blocks' sequence lock
//! (`src/alloc/counters.rs`): the owner's fast path (a countdown taken
//! from) and its fold (the countdown's consumption folded into the total,
//! the countdown re-armed, inside the sequence lock) against a reader that
//! retries while the sequence is odd or moved.
//!
//! A faithful extracted copy, not the crate's code: `Block` is the fast
//! path's memory, and making it generic over loom's atomics would touch the
//! hot path's codegen. Same fields (the allocation side: the free side is
//! the same code), same orderings, same fence placement as
//! `Block::fold` and `Block::read`. Keep the two in step.
//!
//! The property: every reading is a total the owner actually had at some
//! point (106, 108 or 109 here), never a torn mix (a re-armed countdown
//! with a stale folded total would read 100; the folded total with the old
//! countdown 116), and two readings in a row never go backwards.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_counters_seqlock`
//! (`scripts/loom.sh`).
#![cfg(loom)]

use loom::sync::atomic::{fence, AtomicI64, AtomicU64, Ordering};
use loom::sync::Arc;

struct Block {
    alloc_left: AtomicI64,
    seq: AtomicU64,
    alloc_armed: AtomicI64,
    alloc_bytes: AtomicU64,
}

/// `counters::take`: load, check, then one store of a fresh load minus n.
fn take(c: &AtomicI64, n: i64) -> bool {
    let ok = c.load(Ordering::Relaxed) >= n;
    if ok {
        c.store(c.load(Ordering::Relaxed) - n, Ordering::Relaxed);
    }
    ok
}

fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl Block {
    /// `Block::fold` with `arm_alloc: Some(arm)`, no extra bytes.
    fn fold(&self, arm: i64) {
        if self.seq.load(Ordering::Relaxed) & 1 == 1 {
            unreachable!("no nested fold in this model (no signal handler)");
        }
        self.seq.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        let used = self
            .alloc_armed
            .load(Ordering::Relaxed)
            .wrapping_sub(self.alloc_left.load(Ordering::Relaxed)) as u64;
        bump(&self.alloc_bytes, used);
        self.alloc_armed.store(arm, Ordering::Relaxed);
        self.alloc_left.store(arm, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// `Block::read`'s loop, retrying until a consistent reading.
    fn read(&self) -> u64 {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            let armed = self.alloc_armed.load(Ordering::Relaxed);
            let left = self.alloc_left.load(Ordering::Relaxed);
            let bytes = self.alloc_bytes.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            let s2 = self.seq.load(Ordering::Relaxed);
            if s1 == s2 && s1 & 1 == 0 {
                return bytes.wrapping_add(armed.wrapping_sub(left) as u64);
            }
            loom::thread::yield_now();
        }
    }
}

/// Executions explored (the test checks loom explored more than one).
static ITERATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn readers_never_see_a_torn_fold() {
    loom::model(|| {
        // Folded 100, armed 10, 4 left: 106 allocated.
        let blk = Arc::new(Block {
            alloc_left: AtomicI64::new(4),
            seq: AtomicU64::new(0),
            alloc_armed: AtomicI64::new(10),
            alloc_bytes: AtomicU64::new(100),
        });
        let reader = {
            let blk = blk.clone();
            loom::thread::spawn(move || {
                let first = blk.read();
                let second = blk.read();
                (first, second)
            })
        };
        // The owner: a take, a slow path (the take fails), its fold, a take.
        assert!(take(&blk.alloc_left, 2)); // 108
        assert!(!take(&blk.alloc_left, 3));
        blk.fold(5); // 108 (the bytes at hand would be the fold's extra)
        assert!(take(&blk.alloc_left, 1)); // 109
        let (first, second) = reader.join().unwrap();
        ITERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!([106, 108, 109].contains(&first), "torn reading {first}");
        assert!([106, 108, 109].contains(&second), "torn reading {second}");
        assert!(second >= first, "went back: {first} -> {second}");
        assert_eq!(blk.read(), 109);
    });
    let n = ITERATIONS.load(std::sync::atomic::Ordering::Relaxed);
    println!("{n} executions explored");
    assert!(n > 100, "loom explored only {n} executions");
}
