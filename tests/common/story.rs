//! Shared checks of the story's end-to-end tests (leaky and fixed runs, each
//! in its own test binary: tracked sites are process-wide).

#[path = "pprof.rs"]
mod pprof_common;

use std::collections::HashMap;
use std::net::SocketAddr;

/// The scenario's source, to find line numbers the report must point at.
pub const SCENARIO_SRC: &str = include_str!("../../examples/leaky_server/scenario.rs");

/// 1-based line of the first line of the scenario containing `needle`.
pub fn line_of(needle: &str) -> u32 {
    SCENARIO_SRC
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i as u32 + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in scenario.rs"))
}

/// The value of the first sample line of `metric` whose labels contain
/// every one of `needles`, from a Prometheus text exposition.
pub fn metric_value(text: &str, metric: &str, needles: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with('{'))
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// In-use bytes per leaf function (the first line of each sample's first
/// location) of a gzipped pprof heap profile, largest first.
pub fn inuse_by_leaf(gz: &[u8]) -> Vec<(String, i64)> {
    let p = pprof_common::decode(gz);
    let inuse = p
        .sample_type
        .iter()
        .position(|t| p.string_table[t.r#type as usize] == "inuse_space")
        .expect("inuse_space sample type");
    let funcs: HashMap<u64, &str> = p
        .function
        .iter()
        .map(|f| (f.id, p.string_table[f.name as usize].as_str()))
        .collect();
    let locs: HashMap<u64, &pprof_common::proto::Location> =
        p.location.iter().map(|l| (l.id, l)).collect();
    let mut by: HashMap<String, i64> = HashMap::new();
    for s in &p.sample {
        let Some(loc) = s.location_id.first().and_then(|id| locs.get(id)) else {
            continue;
        };
        // pprof: the last line of a location is the caller the others were
        // inlined into; the first is the innermost function.
        let Some(line) = loc.line.first() else {
            continue;
        };
        let name = funcs.get(&line.function_id).copied().unwrap_or("?");
        *by.entry(name.to_string()).or_default() += s.value[inuse];
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v
}

/// GET `path` from the debug server and return the body, checking 200.
pub fn fetch(addr: SocketAddr, path: &str) -> Vec<u8> {
    let got = crate::common::get(addr, path);
    assert_eq!(got.status, 200, "GET {path}: {}", got.text());
    got.body
}
