//! Model check (loom) of the fork protocol's loader gate: two threads
//! forking at once (their prepare and parent handlers interleave, as
//! glibc >= 2.36 runs them) and a walker. The property: no walker is
//! inside the loader while any fork is between its prepare handler
//! (`close`) and its parent handler (`reopen`).
//!
//! The model runs the real protocol: `src/alloc/unwind/gate.rs` is compiled
//! here unchanged, against loom's atomics (`gate_sync` below).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_fork_gate`
//! (`scripts/loom.sh`).
#![cfg(loom)]

mod gate_sync {
    pub(crate) use loom::sync::atomic::{AtomicU32, Ordering};
    pub(crate) use loom::thread::yield_now;
}

#[allow(dead_code)]
#[path = "../src/alloc/unwind/gate.rs"]
mod gate;

use gate::Gate;
use loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;

/// Executions explored by a model (each test checks loom explored many).
fn explored(n: &std::sync::atomic::AtomicUsize, name: &str) {
    let n = n.load(std::sync::atomic::Ordering::Relaxed);
    println!("{name}: {n} executions explored");
    assert!(n > 10, "loom explored only {n} executions");
}

fn new_gate() -> Gate {
    Gate {
        forking: AtomicU32::new(0),
        users: AtomicU32::new(0),
    }
}

fn forker(g: &Gate, in_window: &AtomicUsize, inside: &AtomicUsize) {
    g.close();
    in_window.fetch_add(1, SeqCst);
    assert_eq!(inside.load(SeqCst), 0, "a walker is inside during a fork");
    in_window.fetch_sub(1, SeqCst);
    g.reopen();
}

fn walker(g: &Gate, in_window: &AtomicUsize, inside: &AtomicUsize) {
    if g.enter(|| ()) {
        inside.fetch_add(1, SeqCst);
        assert_eq!(
            in_window.load(SeqCst),
            0,
            "a fork is under way while a walker is inside"
        );
        inside.fetch_sub(1, SeqCst);
        g.leave();
    }
}

#[test]
fn two_forkers_and_a_walker() {
    let mut b = loom::model::Builder::new();
    // Each forker's wait is a spin (with yields): bound the preemptions
    // and allow the branches spinning takes.
    b.preemption_bound = Some(2);
    b.max_branches = 100_000;
    b.check(|| {
        let g = Arc::new(new_gate());
        let in_window = Arc::new(AtomicUsize::new(0));
        let inside = Arc::new(AtomicUsize::new(0));
        let w = {
            let (g, w, i) = (g.clone(), in_window.clone(), inside.clone());
            loom::thread::spawn(move || walker(&g, &w, &i))
        };
        let f = {
            let (g, w, i) = (g.clone(), in_window.clone(), inside.clone());
            loom::thread::spawn(move || forker(&g, &w, &i))
        };
        forker(&g, &in_window, &inside);
        w.join().unwrap();
        f.join().unwrap();
        assert_eq!(g.forking.load(SeqCst), 0);
        assert_eq!(g.users.load(SeqCst), 0);
        N2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    explored(&N2, "two_forkers_and_a_walker");
}

static N2: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static N1: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn one_forker_and_two_walkers() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let g = Arc::new(new_gate());
        let in_window = Arc::new(AtomicUsize::new(0));
        let inside = Arc::new(AtomicUsize::new(0));
        let w = {
            let (g, w, i) = (g.clone(), in_window.clone(), inside.clone());
            loom::thread::spawn(move || walker(&g, &w, &i))
        };
        let f = {
            let (g, w, i) = (g.clone(), in_window.clone(), inside.clone());
            loom::thread::spawn(move || forker(&g, &w, &i))
        };
        walker(&g, &in_window, &inside);
        w.join().unwrap();
        f.join().unwrap();
        N1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    explored(&N1, "one_forker_and_two_walkers");
}
