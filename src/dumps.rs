//! Dumps when nobody is watching: a [`Dumper`] watches a few rules from one
//! background thread and, when one fires, writes the evidence to a
//! directory, so a leak at 3 a.m. leaves a heap profile behind even if the
//! process is OOM-killed at 3:05.
//!
//! ```no_run
//! use std::time::Duration;
//! use leakscope::dumps::Dumper;
//!
//! let _dumper = Dumper::builder("/var/tmp/leakscope")
//!     .heap_above(2 << 30)                          // live heap above 2 GiB
//!     .rss_above(3 << 30)                           // RSS above 3 GiB
//!     .heap_growth(512 << 20, Duration::from_secs(600)) // +512 MiB within 10 minutes
//!     .on_suspected_leak()                          // a site flagged, or retaining
//!     .on_signal()                                  // `kill -USR2 <pid>`
//!     .start()
//!     .expect("dumper");
//! ```
//!
//! # Rules
//!
//! | rule (file name) | fires when |
//! |---|---|
//! | `heap_above` | the Rust heap's exact live bytes exceed the bound |
//! | `rss_above` | RSS ([`crate::memory()`]) exceeds the bound |
//! | `heap_growth` | live bytes now minus the lowest live bytes seen within the window exceed the bound |
//! | `suspected_leak` | a tracked-object site is suspected (`suspected`) or holds retained objects (`retained > 0`), or a heap site is suspected (`HeapSite::suspected`: steady growth over a minute) |
//! | `signal` | the process got `SIGUSR2` (opt-in; the handler only sets a flag, the thread polls it) |
//!
//! Rules are **edge-triggered**: a rule fires once when its condition
//! becomes true and re-arms only after the condition has been seen false
//! (live heap back under the bound, no more growth than the bound within
//! the window, no flagged site). A rule held back by the rate limit stays
//! pending and fires at the first check the limit allows, if its condition
//! still holds; it is counted as suppressed once per condition. Each
//! signal asks for one dump. Rules that fire at the same check share one
//! dump, their names joined with `+`.
//!
//! The rules are checked every [`DumperBuilder::poll_interval`] (1 s by
//! default) from the thread `leakscope-dumps`: each check reads the
//! allocator totals, [`crate::memory()`] if an RSS rule is set, and the
//! tracked-object sites if the suspected-leak rule is set, and, for that
//! rule, a full heap read at most every 10 s (heap sites are judged on
//! their live ages; their growth slots are 10 s long, so the verdict cannot
//! change faster; its first read symbolizes new stacks). [`Dumper::check_now`] runs a check on the caller's
//! thread (tests; [`DumperBuilder::manual`] starts no thread at all).
//!
//! # What a dump holds
//!
//! Four files sharing one stem, `leakscope-<UTC time>-<seq>-<rules>`
//! (`leakscope-20261201T031502Z-000003-heap_growth`):
//!
//! - `.heap.pb.gz`: the heap profile (`go tool pprof`);
//! - `.leaks.pb.gz`: the leak view beside it, only live memory at least
//!   [`DumperBuilder::leak_min_age`] old (10 minutes by default);
//! - `.txt`: the text report (memory breakdown first, then objects, heap);
//! - `.json`: the whole snapshot.
//!
//! # Safe in production
//!
//! - Rate-limited: at most [`DumperBuilder::max_per_hour`] dumps per hour
//!   (default 4) and [`DumperBuilder::min_gap`] between two (default 60 s),
//!   on leakscope's clock. A failed dump counts as one.
//! - Capped: after each dump, whole dumps are removed oldest first until the
//!   directory holds at most [`DumperBuilder::max_files`] dump files
//!   (default 64) and [`DumperBuilder::max_bytes`] bytes of them (default
//!   256 MiB). The newest dump is always kept, even alone over the byte
//!   cap. Only files named `leakscope-*` are counted or removed.
//! - Atomic: each file is written to a hidden temporary name
//!   (`.leakscope-tmp-…`) in the same directory, synced, then renamed, so
//!   a reader listing `leakscope-*` never sees half a file. A temporary
//!   left by a crash is never counted as a dump.
//! - Never in the way: one background thread that holds leakscope's
//!   re-entrancy guard for its whole life (what it builds and writes is
//!   leakscope's memory, never the application's `live_bytes`); nothing
//!   runs on the application's threads. A failure (missing directory that
//!   cannot be created, read-only or full disk) is counted
//!   ([`DumperStats::failed`]), printed to stderr once per dumper, kept as
//!   [`DumperStats::last_error`], and never panics.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::alloc::guard::Guard;
use crate::pprof::{self, ProfileOptions};

const HOUR_NS: u64 = 3600 * 1_000_000_000;
/// Growth-rule samples kept at most (thinned to one per window / this).
const GROWTH_SAMPLES: usize = 1024;
/// The prefix of every dump file; temporaries start with a dot.
const PREFIX: &str = "leakscope-";
const TMP_PREFIX: &str = ".leakscope-tmp-";

/// The rule names, as they appear in file names.
pub mod rule {
    /// Live heap above a bound.
    pub const HEAP_ABOVE: &str = "heap_above";
    /// RSS above a bound.
    pub const RSS_ABOVE: &str = "rss_above";
    /// Live heap grew by more than a bound within a window.
    pub const HEAP_GROWTH: &str = "heap_growth";
    /// A site suspected of leaking or holding retained objects.
    pub const SUSPECTED_LEAK: &str = "suspected_leak";
    /// `SIGUSR2`.
    pub const SIGNAL: &str = "signal";
}

/// Options of a [`Dumper`]; [`Dumper::builder`] makes one.
#[derive(Clone, Debug)]
#[must_use = "call start() to run the dumper"]
pub struct DumperBuilder {
    dir: PathBuf,
    heap_above: Option<u64>,
    rss_above: Option<u64>,
    growth: Option<(u64, Duration)>,
    suspected: bool,
    signal: bool,
    max_per_hour: u32,
    min_gap: Duration,
    max_files: usize,
    max_bytes: u64,
    leak_min_age: Duration,
    poll: Duration,
    manual: bool,
}

impl DumperBuilder {
    /// Fire when the Rust heap's live bytes exceed `bytes`.
    pub fn heap_above(mut self, bytes: u64) -> Self {
        self.heap_above = Some(bytes);
        self
    }

    /// Fire when RSS exceeds `bytes` (read with [`crate::memory()`]).
    pub fn rss_above(mut self, bytes: u64) -> Self {
        self.rss_above = Some(bytes);
        self
    }

    /// Fire when live bytes grew by more than `bytes` within `window` (now
    /// minus the lowest value seen by the checks within the window).
    pub fn heap_growth(mut self, bytes: u64, window: Duration) -> Self {
        self.growth = Some((bytes, window));
        self
    }

    /// Fire when a tracked-object site is suspected of leaking or holds
    /// retained objects, or a heap site is suspected of leaking (its live
    /// bytes grew steadily for a minute; re-judged every 10 s).
    pub fn on_suspected_leak(mut self) -> Self {
        self.suspected = true;
        self
    }

    /// Fire on `SIGUSR2` (opt-in: the dumper installs a handler that only
    /// sets a flag; other handlers of the signal keep running).
    pub fn on_signal(mut self) -> Self {
        self.signal = true;
        self
    }

    /// At most `n` dumps per hour (default 4; 0: none).
    pub fn max_per_hour(mut self, n: u32) -> Self {
        self.max_per_hour = n;
        self
    }

    /// At least `gap` between two dumps (default 60 s).
    pub fn min_gap(mut self, gap: Duration) -> Self {
        self.min_gap = gap;
        self
    }

    /// Keep at most `n` dump files (default 64; a dump is 4 files).
    pub fn max_files(mut self, n: usize) -> Self {
        self.max_files = n;
        self
    }

    /// Keep at most `bytes` of dump files (default 256 MiB).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The age from which live memory is in the leak view (default 10 min).
    pub fn leak_min_age(mut self, age: Duration) -> Self {
        self.leak_min_age = age;
        self
    }

    /// How often the background thread checks the rules (default 1 s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// Start no thread: only [`Dumper::check_now`] checks the rules.
    pub fn manual(mut self) -> Self {
        self.manual = true;
        self
    }

    /// Starts the dumper (its thread, its signal handler). Errors: no rule
    /// is set, the signal handler could not be installed, the thread could
    /// not be spawned. The
    /// directory is created at the first dump (a failure then is counted).
    pub fn start(self) -> io::Result<Dumper> {
        let any_rule = self.heap_above.is_some()
            || self.rss_above.is_some()
            || self.growth.is_some()
            || self.suspected
            || self.signal;
        if !any_rule {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "leakscope dumper: no rule set (heap_above, rss_above, heap_growth, on_suspected_leak, on_signal)",
            ));
        }
        let signal_flag = Arc::new(AtomicBool::new(false));
        let sig_id = if self.signal {
            // The registry's memory is leakscope's (freed under the guard
            // at stop).
            let _g = Guard::enter();
            Some(signal_hook::flag::register(
                signal_hook::consts::SIGUSR2,
                Arc::clone(&signal_flag),
            )?)
        } else {
            None
        };
        let inner = Arc::new(Inner {
            cfg: self,
            state: Mutex::new(State::default()),
            signal_flag,
            stop: AtomicBool::new(false),
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            removed: AtomicU64::new(0),
            checks: AtomicU64::new(0),
            logged: AtomicBool::new(false),
            last_error: Mutex::new(None),
        });
        let thread = if inner.cfg.manual {
            None
        } else {
            let t = Arc::clone(&inner);
            let spawned = std::thread::Builder::new()
                .name("leakscope-dumps".into())
                .spawn(move || {
                    let _leakscope_thread = Guard::enter();
                    while !t.stop.load(Ordering::Acquire) {
                        t.check();
                        std::thread::park_timeout(t.cfg.poll);
                    }
                });
            match spawned {
                Ok(h) => Some(h),
                Err(e) => {
                    if let Some(id) = sig_id {
                        let _g = Guard::enter();
                        signal_hook::low_level::unregister(id);
                    }
                    return Err(e);
                }
            }
        };
        Ok(Dumper {
            inner,
            thread,
            sig_id,
        })
    }
}

/// A running dumper: checks rules and writes dumps until stopped or
/// dropped. See the [module docs](self).
#[derive(Debug)]
pub struct Dumper {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
    sig_id: Option<signal_hook::SigId>,
}

/// What a [`Dumper`] has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DumperStats {
    /// Rule checks run.
    pub checks: u64,
    /// Dumps written whole (all four files).
    pub written: u64,
    /// Dumps that failed (a file could not be written).
    pub failed: u64,
    /// Firings held back by the rate limit (once per condition).
    pub suppressed: u64,
    /// Dump files removed to stay under the caps.
    pub removed_files: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

impl Dumper {
    /// Options with the defaults, writing into `dir`. No rule is set: add
    /// at least one.
    pub fn builder(dir: impl Into<PathBuf>) -> DumperBuilder {
        DumperBuilder {
            dir: dir.into(),
            heap_above: None,
            rss_above: None,
            growth: None,
            suspected: false,
            signal: false,
            max_per_hour: 4,
            min_gap: Duration::from_secs(60),
            max_files: 64,
            max_bytes: 256 << 20,
            leak_min_age: Duration::from_secs(600),
            poll: Duration::from_secs(1),
            manual: false,
        }
    }

    /// Checks the rules now, on the calling thread (under leakscope's
    /// guard), and dumps if one fires and the rate limit allows. Returns
    /// the rules that fired (held back or not). Checks never overlap: this
    /// waits for a check the thread is running.
    pub fn check_now(&self) -> Vec<&'static str> {
        crate::alloc::as_metadata(|| self.inner.check())
    }

    /// Counts so far. Never waits for a check or dump in progress.
    pub fn stats(&self) -> DumperStats {
        let i = &self.inner;
        let last_error = crate::alloc::as_metadata(|| {
            i.last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        });
        DumperStats {
            checks: i.checks.load(Ordering::Relaxed),
            written: i.written.load(Ordering::Relaxed),
            failed: i.failed.load(Ordering::Relaxed),
            suppressed: i.suppressed.load(Ordering::Relaxed),
            removed_files: i.removed.load(Ordering::Relaxed),
            last_error,
        }
    }

    /// The directory dumps go to.
    pub fn dir(&self) -> &Path {
        &self.inner.cfg.dir
    }

    /// Stops the thread (waiting for a dump in progress) and removes the
    /// signal handler. Dropping the dumper does the same.
    pub fn stop(self) {}

    fn shutdown(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        let _g = Guard::enter();
        if let Some(id) = self.sig_id.take() {
            signal_hook::low_level::unregister(id);
        }
        // What the checks allocated (under the guard) is freed under it.
        drop(core::mem::take(&mut *self.inner.lock()));
        drop(
            self.inner
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

impl Drop for Dumper {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[derive(Debug)]
struct Inner {
    cfg: DumperBuilder,
    state: Mutex<State>,
    signal_flag: Arc<AtomicBool>,
    stop: AtomicBool,
    written: AtomicU64,
    failed: AtomicU64,
    suppressed: AtomicU64,
    removed: AtomicU64,
    checks: AtomicU64,
    logged: AtomicBool,
    /// Apart from `state`, so [`Dumper::stats`] never waits for a dump.
    last_error: Mutex<Option<String>>,
}

/// One rule's edge state.
#[derive(Clone, Copy, Debug)]
struct Edge {
    /// May fire: its condition was false since it last fired.
    armed: bool,
    /// Its current firing was counted as suppressed.
    counted: bool,
}

impl Default for Edge {
    fn default() -> Self {
        Edge {
            armed: true,
            counted: false,
        }
    }
}

/// Checks' memory: leakscope's (allocated and freed under the guard).
#[derive(Debug, Default)]
struct State {
    edges: [Edge; 5],
    /// A signal not yet dumped (held back by the rate limit).
    signal_pending: bool,
    /// (time, live bytes) seen by the checks within the growth window.
    growth: VecDeque<(u64, u64)>,
    /// Times of the dumps within the last hour.
    recent: VecDeque<u64>,
    seq: u64,
    /// The heap sites' last verdict: (time judged, any site suspected).
    heap_judged: Option<(u64, bool)>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check(&self) -> Vec<&'static str> {
        let mut st = self.lock();
        self.checks.fetch_add(1, Ordering::Relaxed);
        let now = crate::clock::now_ns();
        let cfg = &self.cfg;
        let live = crate::heap_stats().live_bytes;
        let mut conds: [Option<bool>; 5] = [None; 5];
        if let Some(b) = cfg.heap_above {
            conds[0] = Some(live > b);
        }
        if let Some(b) = cfg.rss_above {
            conds[1] = Some(crate::memory().rss_bytes > b);
        }
        if let Some((b, window)) = cfg.growth {
            conds[2] = Some(growth(&mut st.growth, now, live, window) > b);
        }
        if cfg.suspected {
            conds[3] = Some(object_sites_flagged(now) || heap_sites_flagged(&mut st, now));
        }
        if cfg.signal {
            let sig = self.signal_flag.swap(false, Ordering::AcqRel) || st.signal_pending;
            st.signal_pending = sig;
            conds[4] = Some(sig);
        }
        const NAMES: [&str; 5] = [
            rule::HEAP_ABOVE,
            rule::RSS_ABOVE,
            rule::HEAP_GROWTH,
            rule::SUSPECTED_LEAK,
            rule::SIGNAL,
        ];
        let mut fired = Vec::new();
        for (i, c) in conds.iter().enumerate() {
            match c {
                Some(true) if st.edges[i].armed => fired.push(i),
                Some(true) => {}
                _ => st.edges[i] = Edge::default(),
            }
        }
        if fired.is_empty() {
            return Vec::new();
        }
        let names: Vec<&'static str> = fired.iter().map(|&i| NAMES[i]).collect();
        if !self.allowed(&mut st, now) {
            for &i in &fired {
                if !st.edges[i].counted {
                    st.edges[i].counted = true;
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                }
            }
            return names;
        }
        for &i in &fired {
            st.edges[i] = Edge {
                armed: false,
                counted: false,
            };
        }
        // The signal's edge re-arms at once: each signal is one request.
        st.edges[4].armed = true;
        st.signal_pending = false;
        st.recent.push_back(now);
        st.seq += 1;
        let stem = format!(
            "{PREFIX}{}-{:06}-{}",
            utc_stamp(SystemTime::now()),
            st.seq,
            names.join("+")
        );
        match self.dump(&stem) {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let msg = format!("dump {stem} into {}: {e}", cfg.dir.display());
                if !self.logged.swap(true, Ordering::Relaxed) {
                    eprintln!("leakscope: {msg} (further failures are counted in DumperStats, not printed)");
                }
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(msg);
            }
        }
        names
    }

    /// The rate limit: fewer than `max_per_hour` dumps within the last hour
    /// and `min_gap` since the last one.
    fn allowed(&self, st: &mut State, now: u64) -> bool {
        while st
            .recent
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= HOUR_NS)
        {
            st.recent.pop_front();
        }
        if st.recent.len() >= self.cfg.max_per_hour as usize {
            return false;
        }
        match st.recent.back() {
            Some(&last) => now.saturating_sub(last) >= self.cfg.min_gap.as_nanos() as u64,
            None => true,
        }
    }

    fn dump(&self, stem: &str) -> io::Result<()> {
        let dir = &self.cfg.dir;
        fs::create_dir_all(dir)?;
        let snap = crate::snapshot();
        let heap = pprof::profile(&snap, &ProfileOptions::heap());
        write_atomic(dir, &format!("{stem}.heap.pb.gz"), &heap)?;
        drop(heap);
        let leaks = pprof::profile_now(&ProfileOptions::heap().min_age(self.cfg.leak_min_age));
        write_atomic(dir, &format!("{stem}.leaks.pb.gz"), &leaks)?;
        drop(leaks);
        write_atomic(dir, &format!("{stem}.txt"), snap.to_string().as_bytes())?;
        let json = serde_json::to_vec_pretty(&snap).map_err(io::Error::other)?;
        write_atomic(dir, &format!("{stem}.json"), &json)?;
        self.enforce_caps(stem);
        Ok(())
    }

    /// Removes whole dumps, oldest first, until the caps hold (never the
    /// dump `newest`). A file that cannot be removed is skipped.
    fn enforce_caps(&self, newest: &str) {
        let Ok(entries) = fs::read_dir(&self.cfg.dir) else {
            return;
        };
        // (stem, [(path, bytes)]), sorted oldest first by name.
        let mut dumps: Vec<(String, Vec<(PathBuf, u64)>)> = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(PREFIX) {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let stem = name.split('.').next().unwrap_or(name).to_string();
            match dumps.iter_mut().find(|(s, _)| *s == stem) {
                Some((_, files)) => files.push((e.path(), meta.len())),
                None => dumps.push((stem, vec![(e.path(), meta.len())])),
            }
        }
        dumps.sort_by(|a, b| a.0.cmp(&b.0));
        let mut files: usize = dumps.iter().map(|d| d.1.len()).sum();
        let mut bytes: u64 = dumps.iter().flat_map(|d| &d.1).map(|f| f.1).sum();
        for (stem, list) in &dumps {
            if files <= self.cfg.max_files && bytes <= self.cfg.max_bytes {
                break;
            }
            if stem == newest {
                continue;
            }
            for (path, len) in list {
                if fs::remove_file(path).is_ok() {
                    files -= 1;
                    bytes = bytes.saturating_sub(*len);
                    self.removed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Live bytes now minus the lowest seen within `window` (the checks'
/// samples, thinned to at most [`GROWTH_SAMPLES`]).
fn growth(samples: &mut VecDeque<(u64, u64)>, now: u64, live: u64, window: Duration) -> u64 {
    let w = window.as_nanos().min(u64::MAX as u128) as u64;
    while samples
        .front()
        .is_some_and(|&(t, _)| now.saturating_sub(t) > w)
    {
        samples.pop_front();
    }
    let step = w / GROWTH_SAMPLES as u64;
    let thin = samples
        .back()
        .is_some_and(|&(t, _)| now.saturating_sub(t) < step);
    if samples.len() < GROWTH_SAMPLES && !thin {
        samples.push_back((now, live));
    }
    let low = samples.iter().map(|s| s.1).min().unwrap_or(live).min(live);
    live - low
}

/// Whether a tracked-object site is suspected or holds retained objects.
fn object_sites_flagged(now: u64) -> bool {
    crate::objects::snapshot_sites(now)
        .iter()
        .any(|o| o.suspected.is_some() || o.retained > 0)
}

/// How often the suspected-leak rule re-judges the heap sites: a heap
/// site's growth history moves in 10 s slots (`alloc/growth.rs`), so a
/// judgement cannot change faster, and a full heap read (every live
/// sample walked; ~50 ms for 100k of them) every poll would cost a canary
/// a few percent of a core for nothing.
const HEAP_JUDGE_EVERY_NS: u64 = 10_000_000_000;

/// Whether a heap site is flagged as a suspected leak
/// ([`crate::HeapSite::suspected`]: steady growth over at least a minute).
/// Judging needs the sites' oldest live ages, which only a full heap read
/// has (the light `/metrics` view does not walk the live samples), so the
/// verdict is kept for [`HEAP_JUDGE_EVERY_NS`].
fn heap_sites_flagged(st: &mut State, now: u64) -> bool {
    if let Some((at, v)) = st.heap_judged {
        if now.saturating_sub(at) < HEAP_JUDGE_EVERY_NS {
            return v;
        }
    }
    let heap = crate::alloc::heap_snapshot(now, &crate::window::Window::default());
    let v = heap.sites.iter().any(|s| s.suspected.is_some());
    st.heap_judged = Some((now, v));
    v
}

/// Writes `bytes` to `dir/name` atomically: a hidden temporary in the same
/// directory, synced, then renamed over. The temporary is removed on
/// failure.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        fs::rename(&tmp, dir.join(name))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// `YYYYMMDDTHHMMSSZ` (UTC) of `t`.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dumper_without_rules_is_refused() {
        let e = Dumper::builder("unused").manual().start().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_094_902); // 2026-12-01
        assert_eq!(utc_stamp(t), "20261201T031502Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_stamp(leap), "20000229T000000Z");
    }

    #[test]
    fn growth_is_now_minus_the_window_low() {
        let mut s = VecDeque::new();
        let w = Duration::from_secs(10);
        let sec = 1_000_000_000;
        assert_eq!(growth(&mut s, 0, 100, w), 0);
        assert_eq!(growth(&mut s, 5 * sec, 150, w), 50);
        assert_eq!(growth(&mut s, 9 * sec, 120, w), 20);
        // The sample at 0 leaves the window: the low is 120 (at 9 s).
        assert_eq!(growth(&mut s, 12 * sec, 200, w), 80);
        assert!(s.len() <= GROWTH_SAMPLES);
    }
}
