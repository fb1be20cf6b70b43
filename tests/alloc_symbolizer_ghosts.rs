//! Issue 15, item 5 (ghost samples), leakscope's side: while an
//! application thread resolves backtraces in a loop (the `backtrace`
//! crate's `Backtrace::new()`, whose symbol cache is process-global, and
//! `std::backtrace::Backtrace::force_capture()` formatted), across several
//! shared objects (the test binary, libc through `qsort`'s callback, libm
//! and libgcc_s through their entry points when loaded), another thread
//! takes snapshots and scrapes at sample rate 1. leakscope symbolizes with
//! its own symbolizer, so it never allocates into nor evicts from the
//! application's cache. Afterwards, once the application has dropped its
//! own cache (`backtrace::clear_symbol_cache`):
//!
//! - no live heap site is attributed to leakscope's symbolization (a stack
//!   through `leakscope::symbolize`, `leakscope::alloc::stack` or the
//!   snapshot builders): its memory is metadata, never sampled;
//! - the live sampled bytes under `backtrace`, `addr2line` or `gimli`
//!   frames are where they were before the loop (what is there is the
//!   application's: `std::backtrace` keeps its own cache, which nothing
//!   clears, warmed up before the measurement);
//! - `live_bytes` is back to its starting value within a small margin;
//! - the metadata counter never went negative (it would if leakscope freed
//!   blocks the application allocated, or the other way round).
//!
//! Own process (`harness = false`): nothing else allocates.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// One round of the application's backtrace use; returns something derived
/// so nothing is optimised out.
#[inline(never)]
fn app_resolves() -> usize {
    let mut n = 0;
    let bt = backtrace::Backtrace::new();
    n += format!("{bt:?}").len();
    let std_bt = std::backtrace::Backtrace::force_capture();
    n += format!("{std_bt}").len();
    // From inside libc (qsort's comparator): frames in libc.so too.
    extern "C" fn cmp(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
        let bt = backtrace::Backtrace::new();
        std::hint::black_box(format!("{bt:?}").len());
        // SAFETY: qsort passes pointers to two elements of the i32 array.
        unsafe { (*(a as *const i32)).cmp(&*(b as *const i32)) as libc::c_int }
    }
    let mut v = [3i32, 1, 2];
    // SAFETY: a valid array of 3 i32 and a comparator for i32.
    unsafe { libc::qsort(v.as_mut_ptr().cast(), 3, 4, Some(cmp)) };
    n += v[0] as usize;
    // Addresses in other loaded objects, resolved through the crate.
    for f in [
        libc::malloc as *const () as usize,
        libc::pthread_self as *const () as usize,
        libc::dlsym as *const () as usize,
    ] {
        backtrace::resolve((f + 1) as *mut libc::c_void, |s| {
            n += s.name().map_or(0, |n| n.to_string().len());
        });
    }
    n
}

fn ghost_samples_do_not_appear() {
    // Warm-up outside the measurement: thread blocks, clocks, std's own
    // lazily initialised state, the symbolizer's first parse.
    leakscope::set_sample_rate(1);
    std::hint::black_box(app_resolves());
    backtrace::clear_symbol_cache();
    let dwarf = |f: &leakscope::Frame| {
        [
            "backtrace::",
            "addr2line::",
            "gimli::",
            "<addr2line::",
            "<gimli::",
            "<backtrace::",
        ]
        .iter()
        .any(|p| f.function.starts_with(p))
    };
    let dwarf_live = |snap: &leakscope::Snapshot| -> u64 {
        snap.heap
            .sites
            .iter()
            .filter(|s| s.frames.iter().any(dwarf))
            .map(|s| s.live_bytes)
            .sum()
    };
    let dwarf_start = dwarf_live(&leakscope::snapshot());
    let start = leakscope::heap_stats();

    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(Ordering::Relaxed) || rounds < 5 {
                drop(leakscope::snapshot());
                drop(leakscope::server::route("/metrics", ""));
                drop(leakscope::server::route("/debug/pprof/heap", ""));
                let raw = leakscope::testing::metadata_live_raw();
                assert!(raw >= 0, "metadata went negative: {raw}");
                rounds += 1;
            }
            rounds
        })
    };
    let app = std::thread::spawn(|| {
        let t = Instant::now();
        let mut n = 0;
        let mut rounds = 0;
        while t.elapsed() < Duration::from_secs(3) || rounds < 20 {
            n += app_resolves();
            rounds += 1;
        }
        // The application lets its cache go.
        backtrace::clear_symbol_cache();
        (n, rounds)
    });
    let (n, app_rounds) = app.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let scrapes = scraper.join().unwrap();
    std::hint::black_box(n);

    let end = leakscope::heap_stats();
    let snap = leakscope::snapshot();
    if std::env::var_os("GHOSTS_DEBUG").is_some() {
        for s in snap
            .heap
            .sites
            .iter()
            .filter(|s| s.live_bytes > 4096)
            .take(15)
        {
            let names: Vec<&str> = s
                .frames
                .iter()
                .take(6)
                .map(|f| f.function.as_str())
                .collect();
            println!("{:>10} {names:?}", s.live_bytes);
        }
    }
    let own = |f: &leakscope::Frame| {
        [
            "leakscope::symbolize",
            "leakscope::alloc::stack",
            "leakscope::alloc::heap_snapshot",
        ]
        .iter()
        .any(|p| f.function.starts_with(p))
    };
    let ours: Vec<_> = snap
        .heap
        .sites
        .iter()
        .filter(|s| s.live_bytes > 0 && s.frames.iter().any(own))
        .collect();
    assert!(ours.is_empty(), "sites of leakscope's own work: {ours:#?}");
    let dwarf_end = dwarf_live(&snap);
    let grew = end.live_bytes as i64 - start.live_bytes as i64;
    println!(
        "{app_rounds} app rounds, {scrapes} scrape rounds; live bytes {} -> {} ({grew:+}); \
         sampled live under backtrace/addr2line/gimli: {dwarf_start} -> {dwarf_end} B; metadata {} B, \
         symbolizer {} / {} B",
        start.live_bytes,
        end.live_bytes,
        end.metadata_bytes,
        end.symbolizer_bytes,
        end.symbolizer_budget_bytes
    );
    let dwarf_grew = dwarf_end as i64 - dwarf_start as i64;
    assert!(
        dwarf_grew.unsigned_abs() < 256 << 10,
        "live bytes under backtrace/addr2line/gimli moved by {dwarf_grew} ({dwarf_start} -> {dwarf_end})"
    );
    assert!(
        grew.unsigned_abs() < 256 << 10,
        "live bytes moved by {grew} (start {}, end {})",
        start.live_bytes,
        end.live_bytes
    );
    assert!(leakscope::testing::metadata_live_raw() >= 0);
    assert!(end.symbolizer_bytes <= end.symbolizer_budget_bytes);
}

fn main() {
    ghost_samples_do_not_appear();
    println!("test ghost_samples_do_not_appear ... ok");
    println!("test result: ok. 1 passed; 0 failed");
}
