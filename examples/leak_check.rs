//! `LeakCheck` around a workload: a request handler whose deadline timer
//! keeps a clone of the request context (the seed story in miniature).
//!
//! Run: `cargo run --example leak_check` (it prints the report it caught).

use std::sync::mpsc;
use std::thread;

use leakscope::{track_arc, LeakCheck, TrackedArc};

#[derive(Debug)]
struct RequestCtx {
    caller: &'static str,
}

/// A "timer" that holds its context until it fires; a misconfigured caller
/// gets a timer that never fires.
fn spawn_deadline_timer(ctx: TrackedArc<RequestCtx>, fires: bool) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        if fires {
            drop(ctx);
        } else {
            std::mem::forget(ctx); // the forgotten timer keeps ctx alive
        }
    })
}

fn handle(caller: &'static str) {
    let ctx = track_arc!(RequestCtx { caller }, caller = caller);
    let fires = ctx.caller != "the-misconfigured-calling-service";
    spawn_deadline_timer(ctx.clone(), fires)
        .join()
        .expect("timer thread");
}

fn main() {
    // Clean workload: passes.
    let check = LeakCheck::new();
    for _ in 0..100 {
        handle("web");
    }
    check.assert_no_leaks();
    println!("clean workload: no leaks");
    drop(check);

    // Leaky workload: the check panics with a report; show it.
    let (tx, rx) = mpsc::channel();
    let leaky = thread::spawn(move || {
        let check = LeakCheck::new();
        for i in 0..100 {
            handle(if i % 10 == 0 {
                "the-misconfigured-calling-service"
            } else {
                "web"
            });
        }
        let caught = std::panic::catch_unwind(|| check.assert_no_leaks());
        let msg = match caught {
            Ok(()) => "no leak found".to_string(),
            Err(e) => e.downcast_ref::<String>().cloned().unwrap_or_default(),
        };
        tx.send(msg).expect("main is waiting");
    });
    leaky.join().expect("leaky workload");
    println!("leaky workload:\n{}", rx.recv().expect("report"));
}
