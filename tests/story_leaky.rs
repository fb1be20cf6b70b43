//! The story's leak, end to end: contexts held by uncancelled deadline
//! timers are caught from `snapshot()` and from the served endpoints.

use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

#[path = "../examples/leaky_server/scenario.rs"]
#[allow(dead_code)]
mod scenario;

mod common;
#[path = "common/story.rs"]
mod story;

use scenario::{ctx_site, timer_site, Config, Scenario, BAD_CALLER, RETIRE_REASON};

#[test]
fn leaky_run_is_caught() {
    // A denser sampling rate than the default gives tight heap estimates in
    // a run of a few seconds.
    leakscope::set_sample_rate(16 * 1024);
    // Contexts are retired when their response is written; a short grace
    // period shows them retained within a run of a few seconds.
    leakscope::objects::set_retire_grace(Duration::from_secs(1));
    let server = leakscope::server::serve("127.0.0.1:0").expect("debug server");
    let addr = server.local_addr();
    let cfg = Config {
        fixed: false,
        good_timeout: Duration::from_millis(20),
        bad_timeout: Duration::from_secs(600),
        good_rate: 150,
        bad_rate: 50,
    };
    let start = Instant::now();
    let sc = Scenario::start(&cfg).expect("scenario");
    std::thread::sleep(Duration::from_millis(1500));
    let s1 = leakscope::snapshot();
    let m1 = String::from_utf8(story::fetch(addr, "/metrics")).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let s2 = leakscope::snapshot();
    let m2 = String::from_utf8(story::fetch(addr, "/metrics")).unwrap();
    let elapsed = start.elapsed();

    let c1 = ctx_site(&s1).expect("context site after 1.5 s");
    let c2 = ctx_site(&s2).expect("context site after 4 s");
    // The live count grows with the misconfigured caller's requests (50/s).
    assert!(c2.live >= c1.live + 80, "live {} -> {}", c1.live, c2.live);
    // The oldest context is about as old as the run.
    let oldest = c2.oldest_age.expect("oldest age");
    assert!(
        oldest >= Duration::from_secs(3) && oldest <= elapsed + Duration::from_millis(500),
        "oldest {oldest:?}, run {elapsed:?}"
    );
    // The holders point at the timer's clone.
    let timer_line = story::line_of("let held = ctx.clone();");
    let top_holder = c2.holders.iter().max_by_key(|h| h.live).expect("holders");
    assert!(
        top_holder.file.ends_with("scenario.rs") && top_holder.line == timer_line,
        "top holder {top_holder:?}, expected scenario.rs:{timer_line}"
    );
    assert!(
        top_holder.live * 10 >= c2.live * 9,
        "{top_holder:?} of {}",
        c2.live
    );
    // The misconfigured caller's label holds nearly all live contexts.
    let bad = c2
        .labels
        .iter()
        .find(|l| l.key == "caller" && l.value == BAD_CALLER)
        .expect("bad caller label");
    assert!(bad.live * 10 >= c2.live * 9, "{bad:?} of {}", c2.live);
    // Flagged, with the reason in words.
    assert!(c2.suspected.is_some(), "not flagged:\n{s2}");

    // Retired when the response was written, and still held: retained,
    // with the reason, the ages and the timer's clone as the holder.
    assert!(c2.retained >= 80, "retained {}:\n{s2}", c2.retained);
    assert!(c2.retained <= c2.live);
    assert_eq!(c2.retained_reasons[0].reason, RETIRE_REASON);
    let retired_for = c2.retained_oldest.expect("retained oldest");
    // Ages are upper bounds (the objects' coarse clock reads up to one
    // tick plus an epoch high), so allow what the oldest-age check allows.
    assert!(
        retired_for >= Duration::from_secs(2)
            && retired_for <= elapsed + Duration::from_millis(500),
        "retired for {retired_for:?}, run {elapsed:?}"
    );
    let retained_holder = &c2.retained_holders[0];
    assert!(
        retained_holder.file.ends_with("scenario.rs") && retained_holder.line == timer_line,
        "{retained_holder:?}"
    );
    assert_eq!(retained_holder.live, c2.retained);
    assert!(c2
        .retained_labels
        .iter()
        .any(|l| l.value == BAD_CALLER && l.live * 10 >= c2.retained * 9));
    let why = c2.suspected.as_deref().unwrap();
    assert!(
        why.contains(&format!(
            "object(s) retired '{RETIRE_REASON}' more than 1s ago are still held at"
        )) && why.contains(&format!("scenario.rs:{timer_line}")),
        "{why}"
    );

    // The deadline timers are tracked tasks: live by spawn site, pending and
    // not polled for about as long as the run, flagged as stuck.
    let t2 = timer_site(&s2).expect("timer site");
    let spawn_line = story::line_of("let timer = leakscope::track!(");
    assert!(
        t2.file.ends_with("scenario.rs") && t2.line == spawn_line,
        "{}:{}",
        t2.file,
        t2.line
    );
    assert!(t2.polled_live + 20 >= c2.live, "{} timers", t2.polled_live);
    let idle = t2.oldest_idle.expect("idle");
    assert!(idle >= Duration::from_secs(3), "idle {idle:?}");
    assert!(
        t2.suspected
            .as_deref()
            .is_some_and(|w| w.contains("have not been polled")),
        "{:?}",
        t2.suspected
    );

    // The heap profile restricted to old memory puts the context builder on top.
    let gz = story::fetch(addr, "/debug/pprof/heap?min_age=1s");
    let leaves = story::inuse_by_leaf(&gz);
    assert!(
        leaves
            .first()
            .is_some_and(|(f, _)| f.ends_with("build_request_context")),
        "top of min_age profile: {:?}",
        &leaves[..leaves.len().min(5)]
    );

    // /metrics shows the context site's live count growing between scrapes.
    let needles = ["RequestCtx", "scenario.rs"];
    let v1 = story::metric_value(&m1, "leakscope_objects_live", &needles).expect("metric 1");
    let v2 = story::metric_value(&m2, "leakscope_objects_live", &needles).expect("metric 2");
    assert!(v2 > v1 + 50.0, "leakscope_objects_live {v1} -> {v2}");
    let retained = story::metric_value(
        &m2,
        "leakscope_objects_retained",
        &["RequestCtx", RETIRE_REASON],
    )
    .expect("retained metric");
    assert!(retained >= 50.0, "leakscope_objects_retained {retained}");
    let idle = story::metric_value(
        &m2,
        "leakscope_tasks_oldest_idle_seconds",
        &["deadline timer"],
    )
    .expect("oldest idle metric");
    assert!(idle >= 2.0, "leakscope_tasks_oldest_idle_seconds {idle}");

    // The text report says it all.
    let text = String::from_utf8(story::fetch(addr, "/debug/leaks")).unwrap();
    assert!(text.contains("RETAINED: "), "{text}");
    assert!(
        text.contains(&format!("retired '{RETIRE_REASON}': ")),
        "{text}"
    );
    assert!(text.contains("tasks: "), "{text}");

    sc.stop();
    server.shutdown();
}
