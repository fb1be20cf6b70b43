//! pprof build -> decode round trips: a snapshot made from the fuzz input is
//! encoded with `leakscope::pprof::profile`, gunzipped and decoded with
//! prost, and the decoded profile must be well formed (every id and string
//! index in range, four values per sample) with totals equal to the
//! snapshot's. The text form (`?debug=1`) must not panic either.

#![no_main]

use std::io::Read;
use std::time::Duration;

use arbitrary::Arbitrary;
use leakscope::histogram::{Histogram, BOUNDS_NS, BUCKETS};
use leakscope::pprof::{self, ProfileOptions};
use leakscope::{Frame, HeapSite, Snapshot};
use libfuzzer_sys::fuzz_target;
use prost::Message;

#[path = "../../src/pprof/proto.rs"]
mod proto;

#[derive(Arbitrary, Debug)]
struct FrameIn {
    function: String,
    file: Option<String>,
    line: Option<u32>,
    /// Few distinct addresses, so that locations are shared and collide.
    address: u8,
    inlined: bool,
}

#[derive(Arbitrary, Debug)]
struct SiteIn {
    frames: Vec<FrameIn>,
    live_objects: u32,
    live_bytes: u32,
    allocated_objects: u32,
    allocated_bytes: u32,
    oldest_secs: Option<u32>,
    /// (bucket, objects) pairs of the live-age histogram.
    ages: Vec<(u8, u32)>,
    /// Live bytes per age bucket (any length, as the type allows).
    bytes_by_age: Vec<u32>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    sample_rate: u32,
    sites: Vec<SiteIn>,
    min_age_secs: Option<u32>,
    allocs: bool,
}

/// What the profile must add up to: `[alloc_objects, alloc_space,
/// inuse_objects, inuse_space]`, as `ProfileOptions::min_age` documents it
/// (live buckets whose upper bound is at least `min_age`; without buckets,
/// the whole live part if the oldest allocation is old enough).
fn expected(site: &HeapSite, min_age: Option<Duration>) -> [i64; 4] {
    let min_ns = min_age.map(|d| d.as_nanos() as u64);
    let counts = &site.live_ages.counts;
    let by_age = &site.live_bytes_by_age;
    let has_buckets = by_age.iter().any(|&b| b > 0) || counts.iter().any(|&c| c > 0);
    let (mut lo, mut lb) = (0u64, 0u64);
    if has_buckets {
        for i in 0..BUCKETS.max(by_age.len()) {
            let keep = match (min_ns, BOUNDS_NS.get(i)) {
                (Some(min), Some(&bound)) => bound >= min,
                _ => true,
            };
            if keep {
                lo += counts.get(i).copied().unwrap_or(0);
                lb += by_age.get(i).copied().unwrap_or(0);
            }
        }
    } else {
        let old_enough = match (min_age, site.oldest_age) {
            (Some(min), Some(oldest)) => oldest >= min,
            _ => true,
        };
        if old_enough {
            (lo, lb) = (site.live_objects, site.live_bytes);
        }
    }
    [
        lo.max(site.allocated_objects) as i64,
        lb.max(site.allocated_bytes) as i64,
        lo as i64,
        lb as i64,
    ]
}

fuzz_target!(|input: Input| {
    if input.sites.len() > 64 {
        return;
    }
    let mut snap = Snapshot::default();
    snap.heap.sample_rate = u64::from(input.sample_rate);
    for s in &input.sites {
        let mut site = HeapSite::default();
        site.frames = s
            .frames
            .iter()
            .take(32)
            .map(|f| {
                Frame::new(f.function.clone(), f.file.clone(), f.line)
                    .with_address(u64::from(f.address), f.inlined)
            })
            .collect();
        site.live_objects = u64::from(s.live_objects);
        site.live_bytes = u64::from(s.live_bytes);
        site.allocated_objects = u64::from(s.allocated_objects);
        site.allocated_bytes = u64::from(s.allocated_bytes);
        site.live_samples = site.live_objects;
        site.oldest_age = s.oldest_secs.map(|x| Duration::from_secs(u64::from(x)));
        site.live_ages = Histogram::empty();
        for &(b, n) in s.ages.iter().take(64) {
            let c = &mut site.live_ages.counts[usize::from(b) % BUCKETS];
            *c = c.saturating_add(u64::from(n));
        }
        site.live_bytes_by_age = s.bytes_by_age.iter().take(64).map(|&b| u64::from(b)).collect();
        snap.heap.live_bytes += site.live_bytes;
        snap.heap.sites.push(site);
    }
    let mut opts = if input.allocs {
        ProfileOptions::allocs()
    } else {
        ProfileOptions::heap()
    };
    let min_age = input.min_age_secs.map(|s| Duration::from_secs(u64::from(s)));
    if let Some(a) = min_age {
        opts = opts.min_age(a);
    }

    let _ = pprof::text(&snap, &opts);

    let gz = pprof::profile(&snap, &opts);
    assert_eq!(gz.get(..2), Some(&[0x1f, 0x8b][..]), "not gzip");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .expect("gunzip");
    let p = proto::Profile::decode(raw.as_slice()).expect("decode");

    // Well formed.
    let strings = p.string_table.len() as i64;
    assert_eq!(p.string_table.first().map(String::as_str), Some(""));
    let string_ok = |i: i64| (0..strings).contains(&i);
    assert_eq!(p.sample_type.len(), 4);
    for t in p.sample_type.iter().chain(&p.period_type) {
        assert!(string_ok(t.r#type) && string_ok(t.unit));
    }
    assert!(string_ok(p.default_sample_type));
    assert_eq!(p.period, i64::from(input.sample_rate));
    for (i, f) in p.function.iter().enumerate() {
        assert_eq!(f.id, i as u64 + 1);
        assert!(string_ok(f.name) && string_ok(f.system_name) && string_ok(f.filename));
    }
    for (i, l) in p.location.iter().enumerate() {
        assert_eq!(l.id, i as u64 + 1);
        assert!(l.mapping_id <= p.mapping.len() as u64);
        for line in &l.line {
            assert!((1..=p.function.len() as u64).contains(&line.function_id));
        }
    }
    for (i, m) in p.mapping.iter().enumerate() {
        assert_eq!(m.id, i as u64 + 1);
        assert!(string_ok(m.filename) && string_ok(m.build_id));
    }

    // Totals.
    let mut got = [0i64; 4];
    for s in &p.sample {
        assert_eq!(s.value.len(), 4);
        for id in &s.location_id {
            assert!((1..=p.location.len() as u64).contains(id));
        }
        for l in &s.label {
            assert!(string_ok(l.key) && string_ok(l.str) && string_ok(l.num_unit));
        }
        for (g, v) in got.iter_mut().zip(&s.value) {
            assert!(*v >= 0, "negative value {v}");
            *g += v;
        }
    }
    let mut want = [0i64; 4];
    for site in &snap.heap.sites {
        for (w, e) in want.iter_mut().zip(expected(site, min_age)) {
            *w += e;
        }
    }
    assert_eq!(got, want, "decoded totals differ from the snapshot's");
});
