//! Two threads switching to the coarse (ticker) clock at once: the one that
//! finds the ticker already claimed switches the clock at once, and must
//! not stamp objects with a ticker reading that was never taken (0: the
//! objects would look as old as the machine's uptime). With `test-hooks`,
//! the claimer pauses 100 ms between claiming the ticker and its first
//! reading.
//!
//! Own binary: the switch is process-wide.

use std::time::Duration;

#[path = "common/sites.rs"]
mod sites;
use sites::site;

#[test]
fn a_second_switch_never_stamps_an_unread_ticker() {
    leakscope::__hooks::arm(leakscope::__hooks::Point::TickerStart, 100_000);
    let claimer = std::thread::spawn(|| {
        leakscope::objects::use_coarse_clock(Duration::from_millis(1)).expect("ticker thread")
    });
    std::thread::sleep(Duration::from_millis(20));
    leakscope::objects::use_coarse_clock(Duration::from_millis(1)).expect("ticker thread");
    let obj = leakscope::track!(1u8, "raced");
    let age = site("raced").oldest_age.expect("one live");
    claimer.join().unwrap();
    leakscope::__hooks::arm(leakscope::__hooks::Point::TickerStart, 0);
    assert!(
        age < Duration::from_secs(10),
        "a fresh object is {age:?} old"
    );
    drop(obj);
}
