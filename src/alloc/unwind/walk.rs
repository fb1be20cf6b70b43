//! The walk: from the walker's own registers up the stack, one cached rule
//! per frame.
//!
//! Stack reads are bounds-checked against the calling thread's stack
//! (`bounds.rs`): a walk never reads outside `[sp, stack top)`, so a wrong
//! rule can truncate a stack, never crash. A thread on a stack that is not
//! its own (a coroutine, a signal stack), or with less than
//! `MIN_FREE_STACK` left, falls back; so does a walk that stops after fewer
//! than `MIN_FRAMES` frames.

use core::sync::atomic::Ordering;

use super::bounds::stack_bounds;
use super::modules::current_modules;
use super::modules::Built;
use super::rules::{with_cache, Cache, CACHES};

/// Free stack a walk insists on below the caller's frame. A walk uses
/// about 4 KiB in a release build (gimli evaluates CFI into the
/// heap-allocated context, rows are small), more unoptimised; the
/// margin is for the rest of the sampled path. With less, fall back to
/// the system unwinder (about 5 KiB).
const MIN_FREE_STACK: usize = 128 * 1024;

/// A walk shorter than this is suspect: fall back.
const MIN_FRAMES: usize = 3;

/// Walks the calling thread's stack into `buf` from this function's own
/// frame; `None`: fall back to the system unwinder.
#[inline(never)]
pub(super) fn walk(buf: &mut [usize]) -> Option<usize> {
    let (ip, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers into outputs; touches no memory and
    // no stack, and leaves the flags alone.
    unsafe {
        core::arch::asm!(
            "lea {ip}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            ip = out(reg) ip,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        );
    }
    let (lo, hi) = stack_bounds()?;
    if (sp as usize) < lo.saturating_add(MIN_FREE_STACK) || (sp as usize) >= hi {
        // Not on this thread's own stack, or too close to its end.
        return None;
    }
    let built = current_modules()?;
    let slot = CACHES
        .iter()
        .find(|s| !s.busy.swap(true, Ordering::Acquire))?;
    let n = with_cache(slot, built.id, |cache| {
        walk_frames(built, cache, buf, (ip, sp, bp), hi as u64)
    });
    slot.busy.store(false, Ordering::Release);
    n.filter(|&n| n >= MIN_FRAMES)
}

/// Walks from the registers `(ip, sp, bp)` of `walk`'s own frame.
///
/// AddressSanitizer (`scripts/asan.sh`, `--cfg leakscope_asan`) is off
/// here, and only here: this reads other frames' stack slots (return
/// addresses, saved BPs) where their CFI says they are. Those reads are
/// bounded to `[walk's own frame, stack top)` and aligned, so they cannot
/// fault; but ASan poisons redzones around instrumented frames' locals, and
/// a frame whose rule does not match its ASan-instrumented layout exactly
/// (a prologue, a rule from the cache for a neighbouring address) would
/// read into one and be reported, though the walk only truncates there.
#[cfg_attr(leakscope_asan, sanitize(address = "off"))]
fn walk_frames(
    built: &Built,
    cache: &mut Cache,
    buf: &mut [usize],
    (mut ip, mut sp, mut bp): (u64, u64, u64),
    hi: u64,
) -> Option<usize> {
    // Readable: from the walk's own frame to the top of the stack.
    let floor = sp;
    let read = move |addr: u64| -> Option<u64> {
        if addr < floor || addr > hi.saturating_sub(8) || !addr.is_multiple_of(8) {
            return None;
        }
        #[cfg(not(leakscope_asan))]
        // SAFETY: `[floor, hi)` is this thread's stack from the walk's own
        // frame to its top, readable while this frame runs; the address is
        // aligned and the 8 bytes lie inside it.
        let v = unsafe { core::ptr::read_volatile(addr as *const u64) };
        // ASan build: the same read as the intrinsic, so the load is
        // emitted here, where instrumentation is off (see above):
        // `read_volatile` is a generic std function, instrumented wherever
        // it is instantiated, whatever its caller's attribute says.
        // SAFETY: as above.
        #[cfg(leakscope_asan)]
        let v = unsafe { core::intrinsics::volatile_load(addr as *const u64) };
        Some(v)
    };
    let mut n = 0;
    // The first address is an instruction pointer (look it up as is);
    // the others are return addresses (look up the call, one before).
    let mut lookup = ip;
    loop {
        let Some(slot) = buf.get_mut(n) else {
            return Some(n); // an empty buffer
        };
        *slot = ip as usize;
        n += 1;
        if n == buf.len() {
            return Some(n);
        }
        let rule = cache.rule_for(built, lookup)?;
        let base = if rule.cfa_bp { bp } else { sp };
        let cfa = base.checked_add_signed(rule.cfa_off as i64)?;
        let Some(ra_off) = rule.ra_off else {
            return Some(n); // the root: CFI says there is no caller
        };
        let ra = read(cfa.checked_add_signed(ra_off as i64)?)?;
        if let Some(off) = rule.bp_off {
            bp = read(cfa.checked_add_signed(off as i64)?)?;
        }
        // Callers' frames lie strictly above: no loops.
        if cfa <= sp || ra == 0 {
            return Some(n);
        }
        sp = cfa;
        ip = ra;
        lookup = ra - 1;
    }
}

#[cfg(test)]
mod tests {
    use crate::alloc::stack::MAX_FRAMES;

    /// The system unwinder's view of the same stack, from a frame below.
    #[inline(never)]
    fn both() -> (Vec<usize>, Vec<usize>) {
        let mut buf = [0usize; MAX_FRAMES];
        let n = crate::alloc::unwind::capture(&mut buf).expect("caching unwinder walked");
        let fast = buf[..n].to_vec();
        let mut slow = Vec::new();
        // SAFETY: the system unwinder is thread-safe on this target.
        unsafe {
            backtrace::trace_unsynchronized(|f| {
                slow.push(f.ip() as usize);
                slow.len() < MAX_FRAMES
            })
        };
        (fast, slow)
    }

    /// Every return address the caching unwinder finds above its own
    /// frames is the system unwinder's, in the same order.
    fn agrees_with_system_unwinder() {
        let (fast, slow) = both();
        assert!(fast.len() >= 6, "{fast:x?}");
        // The first frames differ (each walker's own, and the two call
        // sites in `both`); from `both`'s caller up they must agree.
        let i = fast
            .iter()
            .position(|a| slow.contains(a))
            .unwrap_or_else(|| panic!("no common frame: {fast:x?} {slow:x?}"));
        assert!(i <= 5, "{fast:x?} {slow:x?}");
        let start = slow.iter().position(|&a| a == fast[i]).unwrap();
        // The system unwinder may end with a null return address.
        let slow_rest: Vec<usize> = slow[start..].iter().copied().filter(|&a| a != 0).collect();
        assert!(fast.len() - i >= 4, "{fast:x?}");
        assert_eq!(&fast[i..], &slow_rest[..], "fast {fast:x?} slow {slow:x?}");
    }

    #[test]
    fn agrees_on_this_thread_and_a_spawned_one() {
        agrees_with_system_unwinder();
        std::thread::spawn(agrees_with_system_unwinder)
            .join()
            .unwrap();
        let (fast, _) = crate::alloc::unwind::counts();
        assert!(fast >= 2);
    }
}
