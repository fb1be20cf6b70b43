//! `/debug/memory`, `/debug/memory.json` and the `leakscope_memory_bytes`
//! family: the breakdown where people and Prometheus look.

#![cfg(feature = "http")]

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

#[test]
fn memory_routes_and_metric() {
    let r = leakscope::server::route("/debug/memory", "");
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body.clone()).unwrap();
    assert!(text.starts_with("memory: RSS "), "{text}");
    assert!(text.contains("unattributed"), "{text}");
    assert_eq!(
        leakscope::server::route("/debug/memory", "min_age=x").status,
        400
    );

    let r = leakscope::server::route("/debug/memory.json", "");
    assert_eq!(r.status, 200);
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let parts: u64 = [
        "heap_bytes",
        "leakscope_bytes",
        "allocator_bytes",
        "thread_stacks_bytes",
        "unattributed_bytes",
    ]
    .iter()
    .map(|k| j[k].as_u64().unwrap())
    .sum();
    assert_eq!(parts, j["rss_bytes"].as_u64().unwrap(), "{j}");

    let metrics = leakscope::prometheus::render(&leakscope::snapshot());
    let mut sum = 0u64;
    for kind in [
        "heap",
        "leakscope",
        "allocator",
        "thread_stacks",
        "unattributed",
    ] {
        let prefix = format!("leakscope_memory_bytes{{kind=\"{kind}\"}} ");
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix}\n{metrics}"));
        sum += line[prefix.len()..].parse::<u64>().unwrap();
    }
    assert!(sum > 0);
    assert!(metrics.contains("# TYPE leakscope_memory_bytes gauge"));
    let index = leakscope::server::route("/", "");
    assert!(String::from_utf8(index.body.clone())
        .unwrap()
        .contains("/debug/memory.json"));
}
