//! The story's leak, reproduced and caught.
//!
//! A request framework creates a context with a deadline per request and
//! hands a clone to a deadline timer, but never cancels the timer when the
//! handler returns. One of two callers sends its timeout in seconds instead
//! of milliseconds, so its contexts (and their metadata) live for the whole
//! timeout instead of a few milliseconds. The framework retires each
//! context when its response is written, and the deadline timer is a
//! tracked task: leakscope names the object, the caller, where it was
//! created, that it was retired and is still held, which code holds it, and
//! the timer tasks that wait without being polled.
//!
//! ```text
//! cargo run --release --example leaky_server                  # 20 s, prints the leak
//! cargo run --release --example leaky_server -- --fixed        # the one-line fix
//! cargo run --release --example leaky_server -- --serve 127.0.0.1:6060
//! cargo run --release --example leaky_server -- --dump-dir dumps   # evidence on disk
//! ```
//!
//! With `--dump-dir DIR`, a `leakscope::dumps::Dumper` writes the heap
//! profile, the leak view, the report and the JSON into `DIR` when a tracked
//! site is flagged as a suspected leak, when the live heap grows by more
//! than 4 MiB within a minute, or on `kill -USR2 <pid>` (at most 6 dumps an
//! hour, 5 s apart, 40 files kept).

use std::time::{Duration, Instant};

mod scenario;

use scenario::{ctx_site, timer_site, Config, Scenario};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

struct Args {
    fixed: bool,
    duration: Duration,
    serve: Option<String>,
    flamegraph: Option<String>,
    dump_dir: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        fixed: false,
        duration: Duration::from_secs(20),
        serve: None,
        flamegraph: None,
        dump_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--fixed" => a.fixed = true,
            "--duration" => {
                let v = it.next().ok_or("--duration needs seconds")?;
                let s: f64 = v.parse().map_err(|_| format!("bad --duration {v:?}"))?;
                if !(0.5..=86_400.0).contains(&s) {
                    return Err(format!("--duration {s} out of range (0.5..86400)"));
                }
                a.duration = Duration::from_secs_f64(s);
            }
            "--serve" => a.serve = Some(it.next().ok_or("--serve needs an address")?),
            "--flamegraph" => a.flamegraph = Some(it.next().ok_or("--flamegraph needs a path")?),
            "--dump-dir" => a.dump_dir = Some(it.next().ok_or("--dump-dir needs a directory")?),
            "-h" | "--help" => {
                return Err("usage: leaky_server [--fixed] [--duration SECS] [--serve ADDR] [--flamegraph OUT.svg] [--dump-dir DIR]".into())
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // A short demo wants tighter heap estimates than the 512 KiB default
    // gives in 20 s: sample every 64 KiB unless LEAKSCOPE_SAMPLE_RATE says.
    if std::env::var_os("LEAKSCOPE_SAMPLE_RATE").is_none() {
        leakscope::set_sample_rate(64 * 1024);
    }
    let cfg = Config {
        fixed: args.fixed,
        ..Config::default()
    };
    println!(
        "leaky_server: {} sends {} req/s with {:?} deadlines, {} sends {} req/s with {:?} (seconds where ms were meant); timers {}",
        scenario::GOOD_CALLER,
        cfg.good_rate,
        cfg.good_timeout,
        scenario::BAD_CALLER,
        cfg.bad_rate,
        cfg.bad_timeout,
        if cfg.fixed { "cancelled on return (--fixed)" } else { "NOT cancelled on return (the bug)" }
    );
    println!(
        "heap sampling: one sample per {} bytes on average",
        leakscope::sample_rate()
    );
    let server = args.serve.as_deref().map(|addr| {
        let s = leakscope::server::serve(addr).unwrap_or_else(|e| {
            eprintln!("cannot serve on {addr}: {e}");
            std::process::exit(1);
        });
        let a = s.local_addr();
        println!("debug server on http://{a}/  (curl http://{a}/debug/leaks; go tool pprof http://{a}/debug/pprof/heap)");
        s
    });
    let dumper = args.dump_dir.as_deref().map(|dir| {
        let d = leakscope::dumps::Dumper::builder(dir)
            .on_suspected_leak()
            .heap_growth(4 << 20, Duration::from_secs(60))
            .on_signal()
            .leak_min_age(Duration::from_secs(5))
            .max_per_hour(6)
            .min_gap(Duration::from_secs(5))
            .max_files(40)
            .start()
            .unwrap_or_else(|e| {
                eprintln!("cannot start the dumper: {e}");
                std::process::exit(1);
            });
        println!(
            "dumping into {dir}/ on a suspected leak, +4 MiB heap within 60 s, or kill -USR2 {}",
            std::process::id()
        );
        d
    });
    let sc = Scenario::start(&cfg).expect("start the framework on 127.0.0.1");
    let start = Instant::now();
    let mut prev = leakscope::snapshot();
    while start.elapsed() < args.duration {
        std::thread::sleep(
            Duration::from_secs(1).min(args.duration.saturating_sub(start.elapsed())),
        );
        let snap = leakscope::snapshot();
        let (live, oldest, bad) = match ctx_site(&snap) {
            Some(o) => (
                o.live,
                o.oldest_age.unwrap_or_default(),
                o.labels
                    .iter()
                    .find(|l| l.value == scenario::BAD_CALLER)
                    .map_or(0, |l| l.live),
            ),
            None => (0, Duration::ZERO, 0),
        };
        let retained = ctx_site(&snap).map_or(0, |o| o.retained);
        let (timers, timers_idle) = timer_site(&snap).map_or((0, Duration::ZERO), |t| {
            (t.polled_live, t.oldest_idle.unwrap_or_default())
        });
        const MIB: f64 = 1024.0 * 1024.0;
        let dt = snap.taken_at_ns.saturating_sub(prev.taken_at_ns) as f64 / 1e9;
        let growth = (snap.heap.live_bytes as f64 - prev.heap.live_bytes as f64) / dt.max(1e-9);
        println!(
            "t={:>4.1}s  contexts live {:>5} ({} of them {}), oldest {:>6.1?}, retained {:>4} | timer tasks {:>4}, idle up to {:>6.1?} | heap live {:.1} MiB ({:+.1} MiB/s){}",
            start.elapsed().as_secs_f64(),
            live,
            bad,
            scenario::BAD_CALLER,
            oldest,
            retained,
            timers,
            timers_idle,
            snap.heap.live_bytes as f64 / MIB,
            growth / MIB,
            if ctx_site(&snap).is_some_and(|o| o.suspected.is_some()) { " | SUSPECTED LEAK" } else { "" }
        );
        prev = snap;
    }
    let snap = leakscope::snapshot();
    println!("\n{snap}");
    match ctx_site(&snap).filter(|o| o.retained > 0) {
        Some(o) => println!(
            "RequestCtx: {} retained ('{}'), retired up to {:.1?} ago, held at {}",
            o.retained,
            scenario::RETIRE_REASON,
            o.retained_oldest.unwrap_or_default(),
            o.retained_holders
                .first()
                .map_or("?".to_string(), |h| format!("{}:{}", h.file, h.line)),
        ),
        None => println!("RequestCtx: nothing retained"),
    }
    match timer_site(&snap).filter(|t| t.suspected.is_some()) {
        Some(t) => println!(
            "deadline timer tasks at {}: {} live, not polled for up to {:.1?}: stuck or forgotten",
            t.site(),
            t.polled_live,
            t.oldest_idle.unwrap_or_default()
        ),
        None => println!("deadline timer tasks: none stuck"),
    }
    if let Some(d) = &dumper {
        let st = d.stats();
        println!(
            "dumps in {}: {} written, {} failed, {} held back by the rate limit",
            d.dir().display(),
            st.written,
            st.failed,
            st.suppressed
        );
    }
    if let Some(path) = &args.flamegraph {
        match leakscope::flamegraph::heap_svg(&snap) {
            Ok(svg) => match std::fs::write(path, svg) {
                Ok(()) => println!("flame graph of in-use memory written to {path}"),
                Err(e) => eprintln!("cannot write {path}: {e}"),
            },
            Err(e) => eprintln!("flame graph: {e}"),
        }
    }
    if let Some(s) = server {
        println!(
            "debug server still up at http://{}/ ; press Ctrl-C to stop",
            s.local_addr()
        );
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let _ = sc.addr;
    sc.stop();
}
