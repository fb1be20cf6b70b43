//! Lifetimes, ages, cohort conservation under racing threads, and leak
//! suspicion. This binary moves leakscope's clock
//! (`testing::advance_clock`), so its tests take a lock and run one at a
//! time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use leakscope::histogram::bucket_index;
use leakscope::testing::advance_clock as advance;
use leakscope::{track, track_arc, Tracked};

#[path = "common/sites.rs"]
mod sites;
use sites::{named, site};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn lifetimes_land_in_their_buckets() {
    let _g = serial();
    fn make(v: u8) -> Tracked<u8> {
        track!(v, "lifetimes")
    }
    let a = make(1);
    let b = make(2);
    drop(a); // microseconds
    advance(90 * MIN);
    drop(b); // 90 minutes: the (1 h, 3 h] bucket
    let s = site("lifetimes");
    assert_eq!(s.lifetimes.count(), 2);
    let h90 = bucket_index(90 * 60 * 1_000_000_000);
    assert_eq!(s.lifetimes.counts[h90], 1, "{:?}", s.lifetimes.counts);
    // The short one is off by at most one tick of the objects' clock (a
    // kernel timer tick by default): within the bucket of that tick.
    let tick = leakscope::objects::clock_resolution().as_nanos() as u64;
    let short = bucket_index(tick.max(1_000_000));
    assert!(short < h90);
    assert_eq!(s.lifetimes.counts[..=short].iter().sum::<u64>(), 1);
    assert!((s.lifetimes.sum_seconds - 5400.0).abs() < 1.0);
}

#[test]
fn ages_grow_while_objects_stay_live() {
    let _g = serial();
    let o = track!(3u8, "ages");
    let a1 = site("ages").oldest_age.unwrap();
    advance(10 * MIN);
    let s = site("ages");
    let a2 = s.oldest_age.unwrap();
    assert!(a2 >= a1 + 10 * MIN, "{a2:?} vs {a1:?}");
    // At most 1/7.875 (+ one level-0 epoch) too old.
    assert!(
        a2.as_secs_f64() <= 600.0 * (1.0 + 1.0 / 7.875) + 1.0,
        "{a2:?}"
    );
    assert_eq!(s.live_ages.counts[bucket_index(a2.as_nanos() as u64)], 1);
    drop(o);
    assert_eq!(site("ages").oldest_age, None);
}

#[test]
fn holder_ages_grow() {
    let _g = serial();
    let a = track_arc!(4u8, "holder-ages");
    advance(2 * HOUR);
    let (b, lb) = (a.clone(), line!());
    let s = site("holder-ages");
    let old = s.holders.iter().find(|h| h.line != lb).unwrap();
    let young = s.holders.iter().find(|h| h.line == lb).unwrap();
    assert!(old.oldest_age.unwrap() >= 2 * HOUR);
    assert!(young.oldest_age.unwrap() < MIN);
    let text = leakscope::snapshot().to_string();
    assert!(text.contains("held at"), "{text}");
    drop((a, b));
}

/// Creators and droppers race while the clock jumps, forcing cohort moves
/// at every level; the live count and the ages must stay exact.
#[test]
fn cohorts_conserve_under_racing_threads() {
    let _g = serial();
    fn make(i: u64) -> Tracked<u64> {
        track!(i, "race-ages")
    }
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(20);
    let all_started = &barrier;
    let kept: Vec<Vec<Tracked<u64>>> = thread::scope(|s| {
        let ticker = s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // 1 ms .. ~8 min steps: every level sees retags
                advance(Duration::from_micros(1_000 << (n % 19)));
                n += 1;
                thread::yield_now();
            }
            n
        });
        // 20 threads, all alive at once (the barrier): more than the 16
        // owned stripes, so some count on the shared one. The kept objects
        // are dropped by this thread (remote drops into the workers'
        // stripes).
        let workers: Vec<_> = (0..20u64)
            .map(|t| {
                s.spawn(move || {
                    let mut keep = Vec::new();
                    let mut pending = Vec::new();
                    for i in 0..4_500u64 {
                        if i == 1 {
                            all_started.wait();
                        }
                        if i % 64 == 0 {
                            thread::yield_now(); // let the clock jump mid-run
                        }
                        let o = make(t * 100_000 + i);
                        if i % 97 == 0 {
                            keep.push(o);
                        } else if i % 3 == 0 {
                            pending.push(o); // dropped later, after moves
                        }
                        if pending.len() > 500 {
                            pending.clear();
                        }
                    }
                    keep
                })
            })
            .collect();
        let kept = workers.into_iter().map(|w| w.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        let ticks = ticker.join().unwrap();
        eprintln!("clock jumps during the race: {ticks}");
        kept
    });
    assert!(
        leakscope::objects::stripe_overflows() >= 1,
        "some on the shared stripe"
    );
    let n_kept: u64 = kept.iter().map(|k| k.len() as u64).sum();
    let s = site("race-ages");
    assert_eq!(s.created, 90_000);
    assert_eq!(s.live, n_kept);
    assert_eq!(s.live_ages.count(), n_kept, "cohort counts sum to live");
    assert_eq!(s.dropped, 90_000 - n_kept);
    drop(kept);
    let s = site("race-ages");
    assert_eq!(s.live, 0);
    assert_eq!(s.live_ages.count(), 0, "no ghost cohort: {:?}", s.live_ages);
    assert_eq!(s.oldest_age, None);
}

#[test]
fn flags_objects_far_older_than_their_siblings_lifetimes() {
    let _g = serial();
    // The seed story: most contexts end in milliseconds, a few are held by
    // a forgotten timer for hours (the live count has plateaued).
    fn ctx() -> Tracked<String> {
        track!(String::from("ctx"), "story")
    }
    let held: Vec<_> = (0..3).map(|_| ctx()).collect();
    for _ in 0..200 {
        drop(ctx());
    }
    advance(16 * HOUR);
    for _ in 0..200 {
        drop(ctx());
    }
    let s = site("story");
    let why = s.suspected.clone().expect("flagged");
    assert!(
        why.contains("3 of 3 live object(s) are older than 1s"),
        "{why}"
    );
    // A stable pool: old, flat, never churning: not a leak.
    let pool: Vec<_> = (0..5).map(|_| track!(0u32, "pool")).collect();
    advance(16 * HOUR);
    assert_eq!(site("pool").suspected, None);
    let text = leakscope::snapshot().to_string();
    assert!(text.contains("SUSPECTED LEAK"), "{text}");
    drop((held, pool));
}

#[test]
fn flags_a_growing_site_whose_oldest_keep_ageing() {
    let _g = serial();
    fn grow() -> Tracked<u16> {
        track!(0u16, "growing")
    }
    fn steady() -> Tracked<u32> {
        track!(0u32, "steady")
    }
    let mut leaked = Vec::new();
    let pool: Vec<_> = (0..10).map(|_| steady()).collect();
    for _ in 0..5 {
        for _ in 0..20 {
            leaked.push(grow());
        }
        let _ = leakscope::snapshot(); // one observation per step
        advance(30 * Duration::from_secs(1));
    }
    let snap = leakscope::snapshot();
    let g = named(&snap, "growing");
    let why = g.suspected.clone().expect("growing site flagged");
    assert!(why.starts_with("live count grew from 20 to 100"), "{why}");
    let st = named(&snap, "steady");
    assert_eq!(st.suspected, None, "a stable pool is not a leak");
    drop((leaked, pool));
}
