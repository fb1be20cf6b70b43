//! Writes pprof heap profiles of a small workload to files, for `go tool
//! pprof` (scripts/compat-pprof.sh runs it).
//!
//! ```text
//! cargo run --example pprof_dump -- --base base.pb.gz --grown grown.pb.gz \
//!     [--allocs allocs.pb.gz] [--old old.pb.gz] [--text heap.txt] [--svg heap.svg] \
//!     [--window window.pb.gz] [--since since.pb.gz] [--until until.pb.gz] \
//!     [--since-text since.txt]
//! go tool pprof -top grown.pb.gz
//! go tool pprof -top -base base.pb.gz grown.pb.gz   # what grew
//! go tool pprof -tags grown.pb.gz                   # how old the live memory is
//! go tool pprof -top -tagfocus=age=600s: grown.pb.gz
//! ```
//!
//! The workload, in named functions so the profiles show them:
//! 1. `build_pool` keeps 4 MiB for the whole run (a pool);
//! 2. `leak_sessions` keeps 2 MiB, `handle_requests` churns (allocates and
//!    frees); then the `--base` profile is written;
//! 3. 20 minutes pass (on leakscope's clock: `testing::advance_clock`, so the example
//!    runs in a second), then the mark `deploy` is set;
//! 4. `leak_sessions` keeps 6 MiB more, `fresh_cache` 3 MiB; then `--grown`
//!    (heap), `--allocs`, `--old` (only memory at least 10 minutes old),
//!    `--text` (the `?debug=1` form) and `--svg` (flame graph) are written,
//!    and the time windows: `--window` (`min_age=10m&max_age=30m`: the
//!    memory of step 1-2), `--since` and `--until` (`since=deploy`: step 4;
//!    `until=deploy`: steps 1-2) and `--since-text` (`since=deploy`,
//!    `?debug=1`).

use std::process::ExitCode;
use std::time::Duration;

use leakscope::pprof::{self, ProfileOptions};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

const BUF: usize = 64 * 1024;

/// A pool allocated once and kept: 4 MiB.
#[inline(never)]
fn build_pool() -> Vec<Vec<u8>> {
    (0..64).map(|i| vec![i as u8; BUF]).collect()
}

/// Keeps every session buffer it makes: the leak.
#[inline(never)]
fn leak_sessions(store: &mut Vec<Vec<u8>>, n: usize) {
    for i in 0..n {
        store.push(vec![i as u8; BUF]);
    }
}

/// Allocates and frees: churn, nothing stays live.
#[inline(never)]
fn handle_requests(n: usize) -> usize {
    let mut total = 0;
    for i in 0..n {
        let body = vec![0u8; 1024 + (i % 4096)];
        let id = format!("req-{i}");
        total += std::hint::black_box(body).len() + id.len();
    }
    total
}

/// A cache filled late in the run: young memory.
#[inline(never)]
fn fresh_cache() -> Vec<Vec<u8>> {
    (0..48).map(|i| vec![i as u8; BUF]).collect()
}

#[derive(Default)]
struct Out {
    base: Option<String>,
    grown: Option<String>,
    allocs: Option<String>,
    old: Option<String>,
    text: Option<String>,
    svg: Option<String>,
    window: Option<String>,
    since: Option<String>,
    until: Option<String>,
    since_text: Option<String>,
}

fn parse_args() -> Result<Out, String> {
    let mut out = Out::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--base" => &mut out.base,
            "--grown" => &mut out.grown,
            "--allocs" => &mut out.allocs,
            "--old" => &mut out.old,
            "--text" => &mut out.text,
            "--svg" => &mut out.svg,
            "--window" => &mut out.window,
            "--since" => &mut out.since,
            "--until" => &mut out.until,
            "--since-text" => &mut out.since_text,
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        *slot = Some(args.next().ok_or(format!("{flag} needs a file name"))?);
    }
    if out.base.is_none() && out.grown.is_none() {
        return Err("nothing to write: give --base and/or --grown".into());
    }
    Ok(out)
}

fn write(path: &Option<String>, bytes: impl FnOnce() -> Vec<u8>) -> Result<(), String> {
    if let Some(p) = path {
        std::fs::write(p, bytes()).map_err(|e| format!("cannot write {p}: {e}"))?;
        eprintln!("wrote {p}");
    }
    Ok(())
}

fn run(out: &Out) -> Result<(), String> {
    // Small sampling rate so every 64 KiB buffer is sampled (weight ~1): the
    // numbers in the profiles are then close to exact.
    if std::env::var_os("LEAKSCOPE_SAMPLE_RATE").is_none() {
        leakscope::set_sample_rate(4096);
    }
    let pool = build_pool();
    // Room for every session up front, so leak_sessions holds only the
    // 64 KiB buffers (no Vec growth).
    let mut sessions = Vec::with_capacity(128);
    leak_sessions(&mut sessions, 32);
    handle_requests(20_000);
    write(&out.base, pprof::heap_profile)?;

    leakscope::testing::advance_clock(Duration::from_secs(20 * 60));
    leakscope::mark("deploy").map_err(|e| e.to_string())?;
    leak_sessions(&mut sessions, 96);
    let cache = fresh_cache();
    handle_requests(20_000);

    let snap = leakscope::snapshot();
    write(&out.grown, || {
        pprof::profile(&snap, &ProfileOptions::heap())
    })?;
    write(&out.allocs, || {
        pprof::profile(&snap, &ProfileOptions::allocs())
    })?;
    write(&out.old, || {
        pprof::profile_now(&ProfileOptions::heap().min_age(Duration::from_secs(600)))
    })?;
    write(&out.text, || {
        pprof::text(&snap, &ProfileOptions::heap()).into_bytes()
    })?;
    let deploy = leakscope::marks::find("deploy").map_err(|e| e.to_string())?;
    write(&out.window, || {
        pprof::profile_now(
            &ProfileOptions::heap()
                .min_age(Duration::from_secs(600))
                .max_age(Duration::from_secs(1800)),
        )
    })?;
    write(&out.since, || {
        pprof::profile_now(&ProfileOptions::heap().since(deploy.clone()))
    })?;
    write(&out.until, || {
        pprof::profile_now(&ProfileOptions::heap().until(deploy.clone()))
    })?;
    write(&out.since_text, || {
        let opts = leakscope::SnapshotOptions::new().since(deploy.clone());
        pprof::text(&leakscope::snapshot_with(&opts), &ProfileOptions::heap()).into_bytes()
    })?;
    #[cfg(feature = "flamegraph")]
    if let Some(p) = &out.svg {
        let svg = leakscope::flamegraph::heap_svg(&snap).map_err(|e| e.to_string())?;
        write(&Some(p.clone()), || svg)?;
    }
    eprintln!("{}", snap.summary());
    drop((pool, sessions, cache));
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|o| run(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pprof_dump: {e}");
            eprintln!(
                "usage: pprof_dump --base FILE --grown FILE [--allocs FILE] [--old FILE] [--text FILE] [--svg FILE] [--window FILE] [--since FILE] [--until FILE] [--since-text FILE]"
            );
            ExitCode::from(2)
        }
    }
}
