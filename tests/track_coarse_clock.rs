//! `objects::use_coarse_clock` (own binary: the switch is process-wide).

use std::time::Duration;

use leakscope::histogram::bucket_index;
use leakscope::{track, Tracked};

#[path = "common/sites.rs"]
mod sites;
use sites::site;

fn make(v: u8) -> Tracked<u8> {
    track!(v, "coarse")
}

#[test]
fn the_coarse_clock_ticks_and_follows_advance() {
    leakscope::objects::use_coarse_clock(Duration::from_millis(1)).expect("ticker thread");
    let short = make(1);
    let long = make(2);
    std::thread::sleep(Duration::from_millis(30));
    drop(short); // ~30 ms on a 1 ms tick (the ticker may lag when starved)
    leakscope::testing::advance_clock(Duration::from_secs(2 * 3600));
    let coarse = || site("coarse");
    let age = coarse().oldest_age.expect("one live");
    assert!(age >= Duration::from_secs(2 * 3600), "{age:?}");
    drop(long);
    let s = coarse();
    assert_eq!((s.created, s.dropped, s.live), (2, 2, 0));
    let ms30 = bucket_index(30_000_000);
    let short_bucket = s.lifetimes.counts[..bucket_index(2 * 3600 * 1_000_000_000)]
        .iter()
        .position(|&c| c == 1)
        .expect("the short lifetime");
    assert!(
        short_bucket >= bucket_index(1_000_000) && short_bucket <= ms30 + 3,
        "short lifetime bucket {short_bucket}: {:?}",
        s.lifetimes.counts
    );
    assert_eq!(
        s.lifetimes.counts[bucket_index(2 * 3600 * 1_000_000_000 + 30_000_000)],
        1
    );
}
