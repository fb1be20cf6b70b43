//! The story's fix: with deadline timers cancelled on return, contexts stay
//! few and young, and nothing is flagged.

use std::time::Duration;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

#[path = "../examples/leaky_server/scenario.rs"]
#[allow(dead_code)]
mod scenario;

mod common;
#[path = "common/story.rs"]
#[allow(dead_code)]
mod story;

use scenario::{ctx_site, timer_site, Config, Scenario};

#[test]
fn fixed_run_stays_bounded_and_quiet() {
    leakscope::set_sample_rate(16 * 1024);
    // A short grace period: a context held a second after its response was
    // written would be reported as retained within the run.
    leakscope::objects::set_retire_grace(Duration::from_secs(1));
    let server = leakscope::server::serve("127.0.0.1:0").expect("debug server");
    let cfg = Config {
        fixed: true,
        good_timeout: Duration::from_millis(20),
        bad_timeout: Duration::from_secs(600),
        good_rate: 150,
        bad_rate: 50,
    };
    let sc = Scenario::start(&cfg).expect("scenario");
    let mut max_live = 0;
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        let s = leakscope::snapshot();
        let c = ctx_site(&s).expect("context site");
        max_live = max_live.max(c.live);
        // Contexts live about as long as a request, never near the run time.
        let oldest = c.oldest_age.unwrap_or_default();
        assert!(
            oldest < Duration::from_millis(500),
            "oldest {oldest:?}\n{s}"
        );
        assert!(c.suspected.is_none(), "false alarm:\n{s}");
        // Retired when the response was written and dropped at once.
        assert_eq!(c.retained, 0, "retained:\n{s}");
        // Timers are cancelled on return: few live, none stuck.
        if let Some(t) = timer_site(&s) {
            assert!(t.polled_live <= 20, "{} live timers", t.polled_live);
            assert!(t.suspected.is_none(), "stuck timers:\n{s}");
        }
    }
    let s = leakscope::snapshot();
    let c = ctx_site(&s).expect("context site");
    assert!(c.created > 500, "traffic flowed: {}", c.created);
    // Bounded near the concurrency (two callers, one request in flight each).
    assert!(max_live <= 20, "max live {max_live}");
    let text = String::from_utf8(story::fetch(server.local_addr(), "/debug/leaks")).unwrap();
    assert!(!text.contains("SUSPECTED LEAK"), "{text}");
    assert!(!text.contains("RETAINED"), "{text}");
    let t = timer_site(&s).expect("timer site");
    assert!(t.created > 500 && t.dropped + 20 >= t.created, "{t:?}");
    sc.stop();
    server.shutdown();
}
