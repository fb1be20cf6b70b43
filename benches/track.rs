//! What `track!` and `TrackedArc` add to a hot path.
//!
//! - `create_drop`: `Box::new` + drop (baseline) vs `track!(Box::new(..))` +
//!   drop, on one thread and on 2 threads sharing one site, with the
//!   default clock (`CLOCK_MONOTONIC_COARSE`).
//! - `arc_clone_drop`: `Arc::clone` + drop (baseline) vs `TrackedArc::clone`
//!   + drop, on one thread and on 2 threads cloning one object.
//! - `create_drop_precise_clock`: `track!` after
//!   `objects::use_precise_clock()` (TSC), then
//!   `create_drop_ticker_clock`: after `objects::use_coarse_clock(1 ms)`.
//!   These run last: the switches are process-wide.
//!
//! - `contention`: `track!(u64)` (no allocation, so the allocator's own
//!   cross-thread behaviour stays out) on one thread, on 2 threads at one
//!   site, and on 2 threads at two sites. Equal times mean sharing a site
//!   costs nothing.
//!
//! - `poll`: polling a ready future (baseline) vs the same future inside
//!   `track!` (one clock read and a compare per poll); and `retire` of a
//!   tracked value before its drop (the retired table's lock, off the
//!   create/drop path).
//!
//! The 2-thread cases report the time per operation *per thread* (each
//! thread runs `iters` operations; the wall time is divided by `iters`).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use leakscope::{track, track_arc, Tracked, TrackedArc};

#[inline(never)]
fn tracked_box(v: u64) -> Tracked<Box<u64>> {
    track!(Box::new(v))
}

fn on_two_threads<F: Fn(u64) + Sync>(iters: u64, f: F) -> Duration {
    let barrier = Barrier::new(2);
    let mut wall = Duration::ZERO;
    std::thread::scope(|s| {
        let other = s.spawn(|| {
            barrier.wait();
            f(iters);
        });
        barrier.wait();
        let t = Instant::now();
        f(iters);
        other.join().expect("bench thread");
        wall = t.elapsed();
    });
    wall
}

fn create_drop(c: &mut Criterion) {
    let mut g = c.benchmark_group("create_drop");
    g.bench_function("box", |b| {
        b.iter(|| drop(black_box(Box::new(black_box(7u64)))))
    });
    g.bench_function("track", |b| {
        b.iter(|| drop(black_box(tracked_box(black_box(7)))))
    });
    g.bench_function("box_2_threads", |b| {
        b.iter_custom(|iters| {
            on_two_threads(iters, |n| {
                for _ in 0..n {
                    drop(black_box(Box::new(black_box(7u64))));
                }
            })
        })
    });
    g.bench_function("track_2_threads_one_site", |b| {
        b.iter_custom(|iters| {
            on_two_threads(iters, |n| {
                for _ in 0..n {
                    drop(black_box(tracked_box(black_box(7))));
                }
            })
        })
    });
    g.finish();
}

#[inline(never)]
fn tracked_u64(v: u64) -> Tracked<u64> {
    track!(v)
}

#[inline(never)]
fn tracked_u64_elsewhere(v: u64) -> Tracked<u64> {
    track!(v)
}

fn contention(c: &mut Criterion) {
    let mut g = c.benchmark_group("contention");
    g.bench_function("track_u64", |b| {
        b.iter(|| drop(black_box(tracked_u64(black_box(7)))))
    });
    g.bench_function("track_u64_2_threads_one_site", |b| {
        b.iter_custom(|iters| {
            on_two_threads(iters, |n| {
                for _ in 0..n {
                    drop(black_box(tracked_u64(black_box(7))));
                }
            })
        })
    });
    g.bench_function("track_u64_2_threads_two_sites", |b| {
        b.iter_custom(|iters| {
            let turn = std::sync::atomic::AtomicUsize::new(0);
            on_two_threads(iters, |n| {
                let first = turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
                if first {
                    for _ in 0..n {
                        drop(black_box(tracked_u64(black_box(7))));
                    }
                } else {
                    for _ in 0..n {
                        drop(black_box(tracked_u64_elsewhere(black_box(7))));
                    }
                }
            })
        })
    });
    g.finish();
}

fn arc_clone_drop(c: &mut Criterion) {
    let mut g = c.benchmark_group("arc_clone_drop");
    let arc = Arc::new(7u64);
    let tarc: TrackedArc<u64> = track_arc!(7u64);
    g.bench_function("arc", |b| b.iter(|| drop(black_box(Arc::clone(&arc)))));
    g.bench_function("tracked_arc", |b| b.iter(|| drop(black_box(tarc.clone()))));
    g.bench_function("arc_2_threads", |b| {
        b.iter_custom(|iters| {
            on_two_threads(iters, |n| {
                for _ in 0..n {
                    drop(black_box(Arc::clone(&arc)));
                }
            })
        })
    });
    g.bench_function("tracked_arc_2_threads", |b| {
        b.iter_custom(|iters| {
            on_two_threads(iters, |n| {
                for _ in 0..n {
                    drop(black_box(tarc.clone()));
                }
            })
        })
    });
    g.finish();
}

/// A future that is always ready and can be polled again.
struct Again;

impl std::future::Future for Again {
    type Output = u64;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<u64> {
        std::task::Poll::Ready(7)
    }
}

fn poll(c: &mut Criterion) {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Waker};

    let mut g = c.benchmark_group("poll");
    let mut cx = Context::from_waker(Waker::noop());
    let mut plain = Again;
    g.bench_function("future", |b| {
        b.iter(|| black_box(Pin::new(&mut plain).poll(&mut cx)))
    });
    let mut tracked = track!(Again);
    g.bench_function("tracked_future", |b| {
        b.iter(|| black_box(Pin::new(&mut tracked).poll(&mut cx)))
    });
    g.bench_function("retire_then_drop", |b| {
        b.iter(|| {
            let t = tracked_box(black_box(7));
            t.retire("bench");
            drop(black_box(t))
        })
    });
    g.finish();
}

/// The same `track!` and clone cases on the clock in use.
fn clock_group(c: &mut Criterion, name: &str) {
    let mut g = c.benchmark_group(name);
    g.bench_function("box", |b| {
        b.iter(|| drop(black_box(Box::new(black_box(7u64)))))
    });
    g.bench_function("track", |b| {
        b.iter(|| drop(black_box(tracked_box(black_box(7)))))
    });
    g.bench_function("track_2_threads_one_site", |b| {
        b.iter_custom(|iters| {
            on_two_threads(iters, |n| {
                for _ in 0..n {
                    drop(black_box(tracked_box(black_box(7))));
                }
            })
        })
    });
    g.bench_function("tracked_arc", |b| {
        let tarc: TrackedArc<u64> = track_arc!(7u64);
        b.iter(|| drop(black_box(tarc.clone())))
    });
    g.finish();
}

/// After the default-clock groups: switches the process to the TSC.
fn create_drop_precise_clock(c: &mut Criterion) {
    leakscope::objects::use_precise_clock();
    clock_group(c, "create_drop_precise_clock");
}

/// Last: switches the process to the ticker clock for good.
fn create_drop_ticker_clock(c: &mut Criterion) {
    leakscope::objects::use_coarse_clock(Duration::from_millis(1)).expect("ticker thread");
    clock_group(c, "create_drop_ticker_clock");
}

criterion_group!(
    benches,
    create_drop,
    contention,
    arc_clone_drop,
    poll,
    create_drop_precise_clock,
    create_drop_ticker_clock
);
criterion_main!(benches);
