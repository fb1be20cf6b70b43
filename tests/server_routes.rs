//! The debug server on 127.0.0.1:0, every route hit with a real HTTP
//! client: status, content type and content.

#![cfg(all(feature = "http", feature = "flamegraph"))]

mod common;

#[path = "common/pprof.rs"]
mod pprof_common;

use std::time::Duration;

use common::{get, request};
use leakscope::server::{self, ServerBuilder};
use pprof_common::decode;

/// Every route of the debug server, as its module docs list them.
const ROUTES: [&str; 7] = [
    "/",
    "/metrics",
    "/debug/pprof/heap",
    "/debug/pprof/allocs",
    "/debug/pprof/heap.svg",
    "/debug/leaks",
    "/debug/leaks.json",
];

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// A heap site the reports must name: 8 MiB kept live by the test.
#[inline(never)]
fn server_routes_known_site() -> Vec<u8> {
    std::hint::black_box(vec![7u8; 8 << 20])
}

#[test]
fn every_route_answers() {
    leakscope::set_sample_rate(1);
    let keep = server_routes_known_site();
    // A tracked-object site the report and metrics must name.
    let tracked: Vec<_> = (0..3)
        .map(|i| leakscope::track!(vec![i; 16], "known_object"))
        .collect();
    let srv = server::serve("127.0.0.1:0").expect("serve");
    let addr = srv.local_addr();
    assert!(addr.ip().is_loopback());

    // Index links every route.
    let r = get(addr, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/html; charset=utf-8");
    for route in &ROUTES[1..] {
        assert!(r.text().contains(&format!("href=\"{route}")), "{route}");
    }
    // The summary line, from the exact totals.
    assert!(r.text().contains("<p>live "), "{}", r.text());
    assert!(r.text().contains("| allocs "), "{}", r.text());

    // Metrics: Prometheus text with our families. A scrape labels the
    // stacks symbolized so far and symbolizes a time-boxed batch more (the
    // rest read `[unsymbolized stack …]` until a later scrape; see
    // `scrape_metrics`); at rate 1 this process has thousands of stacks,
    // so a full read symbolizes them all first.
    drop(leakscope::snapshot());
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    let t = r.text();
    assert!(t.contains("# TYPE leakscope_object_lifetime_seconds histogram"));
    let allocs_line = t
        .lines()
        .find(|l| l.starts_with("leakscope_heap_allocations_total "))
        .expect("allocations counter");
    let allocs: u64 = allocs_line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        allocs > 0,
        "the tracking allocator counted nothing: {allocs_line}"
    );
    assert!(
        t.contains("function=\"server_routes::server_routes_known_site\""),
        "known heap site missing from /metrics"
    );
    let live = t
        .lines()
        .find(|l| l.starts_with("leakscope_objects_live{") && l.contains("name=\"known_object\""))
        .expect("tracked site in /metrics");
    assert!(live.ends_with(" 3"), "{live}");
    assert!(live.contains("site=\"tests/server_routes.rs:"), "{live}");

    // pprof heap: gzipped profile.proto that decodes and names the site.
    for (path, default_type) in [
        ("/debug/pprof/heap", "inuse_space"),
        ("/debug/pprof/allocs", "alloc_space"),
    ] {
        let r = get(addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.content_type, "application/octet-stream");
        assert!(r
            .headers
            .get("content-disposition")
            .is_some_and(|v| v.to_str().unwrap().starts_with("attachment")));
        let p = decode(&r.body);
        let default = &p.string_table[p.default_sample_type as usize];
        assert_eq!(default, default_type, "{path}");
        assert!(
            p.string_table
                .iter()
                .any(|s| s.contains("server_routes_known_site")),
            "{path} does not name the known site"
        );
    }

    // Text form and min_age.
    let r = get(addr, "/debug/pprof/heap?debug=1");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/plain; charset=utf-8");
    assert!(
        r.text().contains("server_routes_known_site"),
        "{}",
        r.text()
    );
    let r = get(addr, "/debug/pprof/heap?min_age=1h");
    assert_eq!(r.status, 200);
    decode(&r.body);

    // Flame graph.
    let r = get(addr, "/debug/pprof/heap.svg");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "image/svg+xml");
    assert!(r.text().contains("<svg"), "not an svg");
    assert!(r.text().contains("server_routes_known_site"));

    // Text report names the known sites.
    let r = get(addr, "/debug/leaks");
    assert!(
        r.text()
            .contains("\"known_object\" at tests/server_routes.rs:"),
        "{}",
        r.text()
    );
    assert!(r.text().contains(": 3 live, 3 created"), "{}", r.text());
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/plain; charset=utf-8");
    assert!(r.text().starts_with("leakscope report"));
    assert!(
        r.text().contains("server_routes_known_site"),
        "{}",
        r.text()
    );

    // JSON parses and has the heap and the site.
    let r = get(addr, "/debug/leaks.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json parses");
    assert!(v["heap"]["allocations"].as_u64().unwrap() > 0);
    let objects = v["objects"].as_array().expect("objects array");
    assert!(objects
        .iter()
        .any(|o| o["name"] == "known_object" && o["live"] == 3));
    assert!(r.text().contains("server_routes_known_site"));

    // HEAD: headers, no body.
    let r = request(addr, "HEAD", "/debug/leaks", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());

    // Unknown path and bad queries.
    let r = get(addr, "/debug/pprof/goroutine");
    assert_eq!(r.status, 404);
    assert_eq!(r.text().lines().count(), 1);
    for q in ["min_age=banana", "min_age=-1", "debug=7", "min_age=%zz"] {
        for route in &ROUTES[1..] {
            let r = get(addr, &format!("{route}?{q}"));
            assert_eq!(r.status, 400, "{route}?{q}");
            assert_eq!(r.text().lines().count(), 1, "{route}?{q}: {}", r.text());
        }
    }
    let r = get(addr, "/debug/leaks?min_age=banana");
    assert!(r.text().contains("bad min_age"), "{}", r.text());

    // Methods other than GET/HEAD.
    let r = request(addr, "POST", "/debug/leaks", &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.headers.get("allow").unwrap(), "GET, HEAD");

    srv.shutdown();
    // The port is free again.
    std::net::TcpListener::bind(addr).expect("port released by shutdown");
    drop(keep);
    drop(tracked);
}

#[test]
fn bearer_token_is_required_when_set() {
    let srv = ServerBuilder::new()
        .bearer_token("s3cret")
        .serve("127.0.0.1:0")
        .expect("serve");
    let addr = srv.local_addr();
    let r = get(addr, "/debug/leaks");
    assert_eq!(r.status, 401);
    assert!(r.headers.get("www-authenticate").is_some());
    let r = request(
        addr,
        "GET",
        "/debug/leaks",
        &[("authorization", "Bearer wrong")],
    );
    assert_eq!(r.status, 401);
    let r = request(
        addr,
        "GET",
        "/debug/leaks",
        &[("authorization", "Bearer s3cret")],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn non_loopback_is_refused_without_opt_in() {
    let e = server::serve("0.0.0.0:0").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("allow_remote"), "{e}");
    // With the opt-in it binds (tests only ever talk to it over loopback).
    let srv = ServerBuilder::new()
        .allow_remote(true)
        .bearer_token("t")
        .serve("0.0.0.0:0")
        .expect("explicit opt-in binds");
    let port = srv.local_addr().port();
    let r = request(
        ([127, 0, 0, 1], port).into(),
        "GET",
        "/",
        &[("authorization", "Bearer t")],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn dropping_the_server_stops_it() {
    let srv = server::serve("127.0.0.1:0").expect("serve");
    let addr = srv.local_addr();
    assert_eq!(get(addr, "/").status, 200);
    drop(srv);
    let refused = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    assert!(refused.is_err(), "still accepting after drop");
}
