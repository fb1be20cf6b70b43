//! A signal storm: an interval timer (`setitimer(ITIMER_REAL)`, every
//! 50 µs) whose handler allocates and frees, as some crash reporters and
//! CPU profilers do, against threads that allocate, reallocate and free at
//! sampling rate 1 and a thread that snapshots and reads totals.
//!
//! What it checks: no hang (a watchdog fails the test after 60 s), and, in
//! optimised builds, the totals reconcile (once everything is freed, live bytes and live
//! allocations are back at the baseline: a handler's allocation and its
//! free are counted the same way, whatever instruction of leakscope's own
//! paths it interrupted). With `test-hooks`, every re-entrancy guard's release pauses
//! 5 µs, so handlers often run just after a thread left leakscope: where a
//! tables' lock guard outlived the re-entrancy guard (tail-expression
//! temporaries), the handler's sampled allocation waited for that lock on
//! its own thread.
//!
//! The inner allocator is a bump allocator (lock-free, never reuses
//! memory), because glibc's malloc is not async-signal-safe: a handler
//! that allocates while its thread is inside malloc is outside what any
//! wrapper can make safe (see `alloc/mod.rs`).
//!
//! `harness = false`: the signal setup is process-wide.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bump allocation over one large lazily committed mapping.
struct Bump;

const ARENA: usize = 64 << 30;
static BASE: AtomicUsize = AtomicUsize::new(0);
static NEXT: AtomicUsize = AtomicUsize::new(0);

fn base() -> usize {
    let b = BASE.load(Ordering::Acquire);
    if b != 0 {
        return b;
    }
    // SAFETY: a fresh anonymous private mapping, reserved without swap.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            ARENA,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED);
    match BASE.compare_exchange(0, p as usize, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => p as usize,
        Err(other) => {
            // SAFETY: our own mapping, never handed out.
            unsafe { libc::munmap(p, ARENA) };
            other
        }
    }
}

// SAFETY: every block is a fresh, suitably aligned range of the mapping,
// never handed out twice (frees are no-ops); realloc copies.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let b = base();
        let size = l.size().next_multiple_of(16);
        let align = l.align().max(16);
        let mut off = NEXT.load(Ordering::Relaxed);
        loop {
            let start = off.next_multiple_of(align);
            let end = start + size;
            if end > ARENA {
                return core::ptr::null_mut();
            }
            match NEXT.compare_exchange_weak(off, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return (b + start) as *mut u8,
                Err(o) => off = o,
            }
        }
    }
    unsafe fn dealloc(&self, _p: *mut u8, _l: Layout) {}
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: a valid layout (the caller's align, a non-zero size).
        let q = unsafe { self.alloc(Layout::from_size_align_unchecked(new, l.align())) };
        if !q.is_null() {
            // SAFETY: both blocks are valid for the smaller size and
            // distinct (the new one is fresh).
            unsafe { core::ptr::copy_nonoverlapping(p, q, l.size().min(new)) };
        }
        q
    }
}

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator<Bump> = leakscope::TrackingAllocator::new(Bump);

static HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    let errno = std::io::Error::last_os_error().raw_os_error();
    let v = black_box(vec![7u8; 48]);
    let b = black_box(Box::new([1u64; 20]));
    drop(v);
    drop(b);
    HANDLED.fetch_add(1, Ordering::Relaxed);
    if let Some(e) = errno {
        // SAFETY: restores the interrupted code's errno.
        unsafe { *libc::__errno_location() = e };
    }
}

fn set_timer(us: i64) {
    let it = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: us,
        },
        it_value: libc::timeval {
            tv_sec: 0,
            tv_usec: us,
        },
    };
    // SAFETY: a valid itimerval; the old value is not wanted.
    let r = unsafe { libc::setitimer(libc::ITIMER_REAL, &it, core::ptr::null_mut()) };
    assert_eq!(r, 0);
}

fn block_alarm_here(block: bool) {
    // SAFETY: a local signal set, changed only through libc's functions.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGALRM);
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, core::ptr::null_mut());
    }
}

fn main() {
    leakscope::__hooks::arm(leakscope::__hooks::Point::GuardLeft, 5);
    leakscope::set_sample_rate(1);
    // SAFETY: installs a handler for SIGALRM (allocation-safe here: the
    // inner allocator is lock-free), restarting interrupted calls.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_alarm as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGALRM, &sa, core::ptr::null_mut()),
            0
        );
    }
    // The main thread only watches: the kernel delivers the timer's
    // signals to the working threads.
    block_alarm_here(true);
    // Warm up (the module list, the symbol cache) before the baseline.
    black_box(leakscope::snapshot());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let spawn = |f: Box<dyn FnOnce() + Send>| {
        let done = done.clone();
        std::thread::spawn(move || {
            block_alarm_here(false); // the mask is inherited from main
            f();
            done.fetch_add(1, Ordering::Relaxed);
        })
    };
    let base = leakscope::heap_stats();
    let baseline = base.live_bytes;
    let mut threads = Vec::new();
    for w in 0..3u64 {
        let stop = stop.clone();
        threads.push(spawn(Box::new(move || {
            let mut kept: Vec<Vec<u8>> = Vec::new();
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let mut v = vec![0u8; 16 + (i >> 56) as usize];
                if i & 4 == 0 {
                    v.reserve(64 + (i >> 58) as usize); // a realloc of a sampled block
                }
                if kept.len() < 64 {
                    kept.push(v);
                } else {
                    kept[(i >> 40) as usize % 64] = v;
                }
            }
        })));
    }
    {
        let stop = stop.clone();
        threads.push(spawn(Box::new(move || {
            while !stop.load(Ordering::Relaxed) {
                black_box(leakscope::heap_stats());
                black_box(leakscope::snapshot().heap.sites.len());
            }
        })));
    }
    if std::env::var_os("NO_STORM").is_none() {
        // Unoptimised, a handler's sampled allocations take longer than
        // 50 µs: the thread would do nothing but handle signals.
        set_timer(if cfg!(debug_assertions) { 2000 } else { 50 });
    }
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    while done.load(Ordering::Relaxed) < threads.len() {
        if start.elapsed() > Duration::from_secs(60) {
            eprintln!(
                "hung: {} of {} threads finished",
                done.load(Ordering::Relaxed),
                threads.len()
            );
            // SAFETY: ends the hung test at once.
            unsafe { libc::_exit(1) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    set_timer(0);
    for t in threads {
        t.join().unwrap();
    }
    leakscope::__hooks::arm(leakscope::__hooks::Point::GuardLeft, 0);
    let handled = HANDLED.load(Ordering::Relaxed);
    let end = leakscope::heap_stats();
    println!(
        "{handled} signals handled, {} samples, live bytes {} (baseline {baseline}), live allocations {} (baseline {})",
        end.samples, end.live_bytes, end.live_allocations, base.live_allocations
    );
    assert!(handled > 500, "only {handled} signals handled");
    // Exact in optimised builds only: there the countdowns and counts are
    // updated by one instruction each (see `alloc/mod.rs`); unoptimised,
    // a load and a store can be split by a handler.
    if !cfg!(debug_assertions) {
        assert_eq!(
            end.live_bytes, baseline,
            "live bytes after everything was freed"
        );
        assert_eq!(
            end.live_allocations, base.live_allocations,
            "live allocations"
        );
    }
    println!("test signal_storm_against_sampling_threads ... ok");
    println!("test result: ok. 1 passed; 0 failed");
}
