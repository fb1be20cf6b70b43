//! Dumps are rate-limited, capped in files and bytes (oldest removed
//! first), survive an unwritable directory, and are never seen half
//! written. Driven by `SIGUSR2` and `Dumper::check_now` on leakscope's
//! controlled clock; one test, since the signal is process-wide.

#![cfg(feature = "dumps")]

use std::io::Read as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leakscope::dumps::{rule, Dumper};
use leakscope::testing::advance_clock;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

fn signal() {
    // SAFETY: raise has no preconditions; every dumper here registers a
    // SIGUSR2 handler (a flag) before any raise.
    unsafe { libc::raise(libc::SIGUSR2) };
}

fn dump_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Reads a dump file whole: gunzip for profiles, JSON parse for `.json`.
fn parse(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let name = path.to_string_lossy();
    if name.ends_with(".pb.gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| format!("{name}: {e}"))?;
        if out.is_empty() {
            return Err(format!("{name}: empty profile"));
        }
    } else if name.ends_with(".json") {
        serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| format!("{name}: {e}"))?;
    } else if name.ends_with(".txt") && !bytes.ends_with(b"\n") {
        return Err(format!("{name}: truncated"));
    }
    Ok(())
}

#[test]
fn rate_limit_caps_failures_and_atomic_writes() {
    let tmp = tempfile::tempdir().unwrap();

    // Rate limit: at most 2 an hour, 10 minutes apart.
    let dir = tmp.path().join("rate");
    let d = Dumper::builder(&dir)
        .manual()
        .on_signal()
        .max_per_hour(2)
        .min_gap(Duration::from_secs(600))
        .start()
        .unwrap();
    signal();
    assert_eq!(d.check_now(), [rule::SIGNAL]);
    assert_eq!(d.stats().written, 1);
    signal();
    assert_eq!(d.check_now(), [rule::SIGNAL], "fires, held back by the gap");
    assert_eq!(d.check_now(), [rule::SIGNAL], "still pending");
    let s = d.stats();
    assert_eq!((s.written, s.suppressed), (1, 1), "suppressed once: {s:?}");
    advance_clock(Duration::from_secs(600));
    assert_eq!(
        d.check_now(),
        [rule::SIGNAL],
        "the pending signal, now allowed"
    );
    assert_eq!(d.stats().written, 2);
    assert!(d.check_now().is_empty());
    signal();
    advance_clock(Duration::from_secs(600));
    d.check_now();
    let s = d.stats();
    assert_eq!(
        (s.written, s.suppressed),
        (2, 2),
        "2 within the hour: {s:?}"
    );
    advance_clock(Duration::from_secs(3600));
    d.check_now();
    assert_eq!(d.stats().written, 3, "a new hour");
    assert_eq!(dump_files(&dir).len(), 12);
    drop(d);

    // File cap: 2 dumps (8 files) kept, oldest removed first.
    let dir = tmp.path().join("files");
    let d = Dumper::builder(&dir)
        .manual()
        .on_signal()
        .max_per_hour(1000)
        .min_gap(Duration::ZERO)
        .max_files(8)
        .start()
        .unwrap();
    let mut stems = Vec::new();
    for _ in 0..4 {
        signal();
        d.check_now();
        let files = dump_files(&dir);
        let newest = files.last().unwrap().split('.').next().unwrap().to_string();
        stems.push(newest);
    }
    let files = dump_files(&dir);
    assert_eq!(files.len(), 8, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.starts_with(&stems[2]) || f.starts_with(&stems[3])),
        "{files:?} {stems:?}"
    );
    let s = d.stats();
    assert_eq!((s.written, s.removed_files), (4, 8), "{s:?}");
    drop(d);

    // Byte cap: 1 byte keeps only the newest dump (never removed).
    let dir = tmp.path().join("bytes");
    let d = Dumper::builder(&dir)
        .manual()
        .on_signal()
        .max_per_hour(1000)
        .min_gap(Duration::ZERO)
        .max_bytes(1)
        .start()
        .unwrap();
    // A file that is not a dump is neither counted nor removed.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "keep me").unwrap();
    for _ in 0..3 {
        signal();
        d.check_now();
    }
    let files = dump_files(&dir);
    assert_eq!(files.len(), 5, "{files:?}");
    assert!(files.contains(&"notes.txt".to_string()));
    assert!(
        files
            .iter()
            .filter(|f| f.starts_with("leakscope-"))
            .all(|f| f.contains("-000003-")),
        "{files:?}"
    );
    drop(d);

    // Unwritable: the directory's parent is a regular file (root too
    // cannot create it). Counted, kept as the last error, no panic.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let d = Dumper::builder(file.join("dumps"))
        .manual()
        .on_signal()
        .max_per_hour(1000)
        .min_gap(Duration::ZERO)
        .start()
        .unwrap();
    for _ in 0..3 {
        signal();
        assert_eq!(d.check_now(), [rule::SIGNAL]);
    }
    let s = d.stats();
    assert_eq!((s.written, s.failed), (0, 3), "{s:?}");
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("a-file")),
        "{s:?}"
    );
    drop(d);

    // Atomic: a reader polling the directory while a background dumper
    // writes never sees a file that does not parse whole.
    let dir = tmp.path().join("atomic");
    std::fs::create_dir_all(&dir).unwrap();
    let d = Dumper::builder(&dir)
        .on_signal()
        .poll_interval(Duration::from_millis(1))
        .max_per_hour(1000)
        .min_gap(Duration::ZERO)
        .max_files(12)
        .start()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut read, mut temps) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                for e in std::fs::read_dir(&dir).unwrap() {
                    let e = e.unwrap();
                    let name = e.file_name().into_string().unwrap();
                    if name.starts_with(".leakscope-tmp-") {
                        temps += 1;
                        continue;
                    }
                    match parse(&e.path()) {
                        Ok(()) => read += 1,
                        // Removed by the cap between listing and reading.
                        Err(m) if m.contains("No such file") => {}
                        Err(m) => panic!("partial dump file seen: {m}"),
                    }
                }
            }
            (read, temps)
        })
    };
    let mut written = 0;
    while written < 40 {
        signal();
        std::thread::sleep(Duration::from_millis(2));
        written = d.stats().written;
    }
    stop.store(true, Ordering::Relaxed);
    let (read, _temps) = reader.join().unwrap();
    assert!(read > 0, "the reader read whole dumps");
    drop(d);
    let left = dump_files(&dir);
    assert!(
        left.iter().all(|f| f.starts_with("leakscope-")),
        "no temporary left: {left:?}"
    );
    assert_eq!(left.len(), 12, "{left:?}");
}
