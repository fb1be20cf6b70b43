//! `prometheus::install`: the exporter's recorder becomes the global
//! recorder, `/metrics` serves the application's metrics plus leakscope's
//! (exact histograms), refreshed on the interval; a second install fails
//! cleanly.

#![cfg(feature = "http")]

mod common;

use std::time::{Duration, Instant};

use common::get;
use leakscope::prometheus::{self, InstallBuilder};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn install_serves_app_and_leakscope_metrics() {
    // A bad address fails before anything is installed.
    let e = prometheus::install("0.0.0.0:0").unwrap_err();
    assert!(!e.is_recorder_installed());
    assert_eq!(
        e.io_error().unwrap().kind(),
        std::io::ErrorKind::InvalidInput
    );

    let installed = InstallBuilder::new()
        .interval(Duration::from_millis(50))
        .install("127.0.0.1:0")
        .expect("install");
    let addr = installed.local_addr();
    metrics::counter!("app_requests_total").increment(3);

    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    let t = r.text();
    assert_eq!(value(&t, "app_requests_total"), Some(3.0), "{t}");
    assert!(t.contains("# TYPE leakscope_object_lifetime_seconds histogram"));
    assert!(t.contains("# TYPE leakscope_heap_allocations_total counter"));
    // leakscope's families appear once (not also through the recorder).
    assert_eq!(t.matches("# TYPE leakscope_heap_live_bytes ").count(), 1);

    // The publisher refreshes the values.
    let first = value(&t, "leakscope_heap_allocations_total").unwrap();
    let keep: Vec<Vec<u8>> = (0..1000).map(|i| vec![0u8; i]).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = get(addr, "/metrics").text();
        if value(&t, "leakscope_heap_allocations_total").unwrap() >= first + 1000.0 {
            break;
        }
        assert!(Instant::now() < deadline, "values never refreshed");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(keep);
    assert_eq!(get(addr, "/debug/leaks").status, 404);

    // A second install: error, no panic.
    let e = prometheus::install("127.0.0.1:0").unwrap_err();
    assert!(e.is_recorder_installed());

    installed.shutdown();
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}
