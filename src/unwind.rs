//! A caching DWARF unwinder for the sampled path (Linux, x86_64).
//!
//! The system unwinder (`_Unwind_Backtrace`, what `backtrace` calls) finds
//! and interprets each frame's CFI afresh on every walk: about 2,400
//! instructions a frame, 2.8 µs for a typical sampled stack, which at the
//! default sampling rate alone cost 5% on allocation-heavy code. Here the
//! walk uses `framehop`, which reads the same `.eh_frame` CFI straight from
//! the loaded images and caches the rule found for each return address, so
//! a frame it has seen before costs a cache probe and one or two stack reads.
//!
//! Everything that can go wrong falls back to the system unwinder (the
//! caller sees `None`) rather than guessing:
//!
//! - The module list is built once, on the first sample, from
//!   `dl_iterate_phdr`, under the re-entrancy guard (its memory is
//!   metadata). Each walk first compares glibc's load/unload counters
//!   (`dlpi_adds`/`dlpi_subs`) with the build's: after a `dlopen` or
//!   `dlclose` the list is rebuilt (at most `MAX_BUILDS` times in all; the
//!   replaced lists are kept, not freed, because another thread may still be
//!   walking with one), and while it is being rebuilt, walks fall back.
//! - Stack reads are bounds-checked against the calling thread's stack, read
//!   once per thread with `pthread_getattr_np`: a walk never reads outside
//!   `[sp, stack top)`, so a wrong rule can truncate a stack, never crash.
//!   A thread on a stack that is not its own (a coroutine, a signal stack)
//!   falls back.
//! - The walk needs more stack than the system unwinder (CFI is evaluated
//!   in fixed-size arrays on the stack): with less than `MIN_FREE_STACK`
//!   left below the caller, it falls back.
//! - Unwind caches (rule cache plus gimli's evaluation context, fixed size,
//!   `MustNotAllocateDuringUnwind`) live in `SLOTS` slots taken with a
//!   try-lock; when all are taken, the walk falls back. Nothing here waits,
//!   so nothing here can deadlock, including in a child after `fork()`.
//!
//! Why not frame pointers: Rust code is built without them by default, and
//! a frame-pointer walk over code without them silently skips callers.

use crate::alloc::table::MAX_FRAMES;

/// Walks the calling thread's stack into `buf` (innermost first) with the
/// caching unwinder. `None` means "use the system unwinder instead". Never
/// allocates except, once per process and after each `dlopen`, to build the
/// module list (callers hold the re-entrancy guard).
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
pub(crate) fn capture(buf: &mut [usize; MAX_FRAMES]) -> Option<usize> {
    imp::capture(buf)
}

/// Other platforms always use the system unwinder.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu")))]
pub(crate) fn capture(_buf: &mut [usize; MAX_FRAMES]) -> Option<usize> {
    None
}

/// How many walks the caching unwinder did and how many fell back.
pub(crate) fn counts() -> (u64, u64) {
    use core::sync::atomic::Ordering::Relaxed;
    (FAST.load(Relaxed), FALLBACK.load(Relaxed))
}

static FAST: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static FALLBACK: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
mod imp {
    use core::cell::Cell;
    use core::ops::Range;
    use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

    use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
    use framehop::{ExplicitModuleSectionInfo, Module, MustNotAllocateDuringUnwind, Unwinder};

    use super::{FALLBACK, FAST, MAX_FRAMES};

    type Policy = MustNotAllocateDuringUnwind;
    type Unw = UnwinderX86_64<&'static [u8], Policy>;
    type Cache = CacheX86_64<Policy>;

    /// A module list and the loader counters it was built under.
    struct Built {
        unwinder: Unw,
        adds: u64,
        subs: u64,
    }

    /// The current module list (never freed once published).
    static BUILT: AtomicPtr<Built> = AtomicPtr::new(core::ptr::null_mut());
    /// Held (try-lock) by the thread building a module list.
    static BUILDING: AtomicBool = AtomicBool::new(false);
    /// Module lists built so far.
    static BUILDS: AtomicU32 = AtomicU32::new(0);
    /// After this many builds (a process that keeps loading libraries), walks
    /// fall back for good: each replaced list stays allocated.
    const MAX_BUILDS: u32 = 8;

    /// Stack a walk may need below the caller's frame: gimli evaluates CFI
    /// in fixed-size arrays on the stack (16.5 KiB measured in a release
    /// build, several times that unoptimised), against about 5 KiB for the
    /// system unwinder. With less free stack than this, fall back.
    const MIN_FREE_STACK: usize = 128 * 1024;

    /// Number of unwind caches: concurrent walks beyond it fall back.
    const SLOTS: usize = 4;

    struct Slot {
        busy: AtomicBool,
        cache: AtomicPtr<Cache>,
    }

    static CACHES: [Slot; SLOTS] = [const {
        Slot {
            busy: AtomicBool::new(false),
            cache: AtomicPtr::new(core::ptr::null_mut()),
        }
    }; SLOTS];

    thread_local! {
        /// This thread's stack as `[low, high)`; `(0, 0)` not read yet,
        /// `(1, 1)` unreadable.
        static STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }

    pub(super) fn capture(buf: &mut [usize; MAX_FRAMES]) -> Option<usize> {
        let r = walk(buf);
        match r {
            Some(_) => FAST.fetch_add(1, Ordering::Relaxed),
            None => FALLBACK.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    #[inline(never)]
    fn walk(buf: &mut [usize; MAX_FRAMES]) -> Option<usize> {
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
        let n = walk_with(built, slot, buf, ip, sp, bp, hi);
        slot.busy.store(false, Ordering::Release);
        n
    }

    fn walk_with(
        built: &Built,
        slot: &Slot,
        buf: &mut [usize; MAX_FRAMES],
        ip: u64,
        sp: u64,
        bp: u64,
        hi: usize,
    ) -> Option<usize> {
        let mut cache = slot.cache.load(Ordering::Relaxed);
        if cache.is_null() {
            // First use of this slot (under the caller's guard: metadata).
            cache = Box::into_raw(Box::new(Cache::new_in()));
            slot.cache.store(cache, Ordering::Relaxed);
        }
        // SAFETY: `busy` was swapped from false to true by this thread, so it
        // has the slot (and its cache, allocated above or earlier and never
        // freed) to itself until it stores false.
        let cache = unsafe { &mut *cache };
        let lo = sp;
        let hi = hi as u64;
        let mut read = |addr: u64| -> Result<u64, ()> {
            if addr < lo || addr > hi.saturating_sub(8) || !addr.is_multiple_of(8) {
                return Err(());
            }
            // SAFETY: `[lo, hi)` is this thread's stack from the current
            // stack pointer to its top: mapped and readable while this frame
            // runs; the address is aligned and the 8 bytes lie inside it.
            Ok(unsafe { core::ptr::read_volatile(addr as *const u64) })
        };
        let regs = UnwindRegsX86_64::new(ip, sp, bp);
        let mut it = built.unwinder.iter_frames(ip, regs, cache, &mut read);
        let mut n = 0;
        while n < MAX_FRAMES {
            match it.next() {
                Ok(Some(f)) => {
                    buf[n] = f.address() as usize;
                    n += 1;
                }
                // The root (CFI says: no caller) or a stack read out of
                // bounds (the walk left this thread's stack): done.
                Ok(None) | Err(_) => break,
            }
        }
        (n > 1).then_some(n)
    }

    /// This thread's stack bounds, read once per thread.
    fn stack_bounds() -> Option<(usize, usize)> {
        let b = STACK.try_with(|s| s.get()).ok()?;
        let b = if b == (0, 0) {
            let b = read_stack_bounds().unwrap_or((1, 1));
            let _ = STACK.try_with(|s| s.set(b));
            b
        } else {
            b
        };
        (b.0 < b.1 && b != (1, 1)).then_some(b)
    }

    fn read_stack_bounds() -> Option<(usize, usize)> {
        // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is
        // read and destroyed exactly once; the out-pointers are valid locals.
        // For the main thread glibc reads /proc/self/maps, which allocates:
        // the caller holds the re-entrancy guard, so that is metadata.
        unsafe {
            let mut attr: libc::pthread_attr_t = core::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                return None;
            }
            let mut addr: *mut libc::c_void = core::ptr::null_mut();
            let mut size: libc::size_t = 0;
            let r = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
            libc::pthread_attr_destroy(&mut attr);
            if r != 0 || addr.is_null() || size == 0 {
                return None;
            }
            let lo = addr as usize;
            Some((lo, lo.checked_add(size)?))
        }
    }

    /// The module list, built or rebuilt when the loader's counters moved.
    fn current_modules() -> Option<&'static Built> {
        let (adds, subs) = loader_counters()?;
        let p = BUILT.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: published lists are leaked boxes, never freed.
            let b = unsafe { &*p };
            if b.adds == adds && b.subs == subs {
                return Some(b);
            }
        }
        if BUILDS.load(Ordering::Relaxed) >= MAX_BUILDS || BUILDING.swap(true, Ordering::Acquire) {
            return None;
        }
        BUILDS.fetch_add(1, Ordering::Relaxed);
        let fresh = Box::into_raw(Box::new(build(adds, subs)));
        BUILT.store(fresh, Ordering::Release);
        BUILDING.store(false, Ordering::Release);
        // The list just built may already be stale (a dlopen meanwhile):
        // the next walk notices. This one uses it only if it is current.
        // SAFETY: just leaked above, never freed.
        let b = unsafe { &*fresh };
        (b.adds == adds && b.subs == subs && !b.unwinder_is_empty()).then_some(b)
    }

    impl Built {
        fn unwinder_is_empty(&self) -> bool {
            self.unwinder.max_known_code_address() == 0
        }
    }

    /// glibc's counts of objects loaded and unloaded so far.
    fn loader_counters() -> Option<(u64, u64)> {
        unsafe extern "C" fn first(
            info: *mut libc::dl_phdr_info,
            size: libc::size_t,
            data: *mut libc::c_void,
        ) -> libc::c_int {
            let need = core::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + 8;
            if size >= need {
                // SAFETY: glibc passes a valid `info` of `size` bytes, which
                // covers both counters; `data` is the caller's `Option`.
                unsafe {
                    let out = &mut *(data as *mut Option<(u64, u64)>);
                    *out = Some(((*info).dlpi_adds, (*info).dlpi_subs));
                }
            }
            1 // stop after the first object: the counters are global
        }
        let mut out: Option<(u64, u64)> = None;
        // SAFETY: the callback only writes `out`, which outlives the call.
        unsafe { libc::dl_iterate_phdr(Some(first), &mut out as *mut _ as *mut libc::c_void) };
        out
    }

    /// Builds the module list from every loaded object's `PT_GNU_EH_FRAME`.
    fn build(adds: u64, subs: u64) -> Built {
        unsafe extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: glibc passes a valid `info` whose program headers are
            // mapped while the callback runs (and while the object stays
            // loaded); `data` is the caller's unwinder.
            unsafe {
                let unw = &mut *(data as *mut Unw);
                if let Some(m) = module_of(&*info) {
                    unw.add_module(m);
                }
            }
            0
        }
        let mut unwinder = Unw::new();
        // SAFETY: the callback only touches `unwinder`, which outlives the call.
        unsafe {
            libc::dl_iterate_phdr(Some(each), &mut unwinder as *mut Unw as *mut libc::c_void)
        };
        Built {
            unwinder,
            adds,
            subs,
        }
    }

    /// One loaded object's unwind sections, read in place.
    ///
    /// # Safety
    /// `info` must come from `dl_iterate_phdr`: its program headers and the
    /// segments they describe are mapped.
    unsafe fn module_of(info: &libc::dl_phdr_info) -> Option<Module<&'static [u8]>> {
        if info.dlpi_phdr.is_null() {
            return None;
        }
        let bias = info.dlpi_addr;
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
        let phdrs =
            unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let mut text: Option<Range<u64>> = None;
        let mut hdr: Option<Range<u64>> = None;
        for p in phdrs {
            let r = p.p_vaddr..p.p_vaddr.checked_add(p.p_memsz)?;
            if p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0 {
                text = Some(match text {
                    None => r,
                    Some(t) => t.start.min(r.start)..t.end.max(r.end),
                });
            } else if p.p_type == libc::PT_GNU_EH_FRAME {
                hdr = Some(r);
            }
        }
        let (text, hdr) = (text?, hdr?);
        // SAFETY: PT_GNU_EH_FRAME is mapped (it lies in a loaded segment).
        let hdr_bytes: &'static [u8] = unsafe {
            core::slice::from_raw_parts(
                (bias + hdr.start) as *const u8,
                (hdr.end - hdr.start) as usize,
            )
        };
        let eh_start = eh_frame_svma(hdr_bytes, hdr.start)?;
        // `.eh_frame`'s length is not recorded in the header: it runs to the
        // end of the loaded segment that holds it, at most (it ends with a
        // zero terminator, and lookups go through the header's table).
        let seg = phdrs.iter().find(|p| {
            p.p_type == libc::PT_LOAD
                && p.p_vaddr <= eh_start
                && eh_start < p.p_vaddr.saturating_add(p.p_filesz)
        })?;
        let eh_end = seg.p_vaddr + seg.p_filesz;
        // SAFETY: `[eh_start, eh_end)` lies inside a loaded segment's file
        // contents, mapped while the object is loaded.
        let eh_bytes: &'static [u8] = unsafe {
            core::slice::from_raw_parts(
                (bias + eh_start) as *const u8,
                (eh_end - eh_start) as usize,
            )
        };
        let section_info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: Some(text.clone()),
            eh_frame_svma: Some(eh_start..eh_end),
            eh_frame: Some(eh_bytes),
            eh_frame_hdr_svma: Some(hdr.clone()),
            eh_frame_hdr: Some(hdr_bytes),
            ..Default::default()
        };
        let avma = bias + text.start..bias + text.end;
        Some(Module::new(String::new(), avma, bias, section_info))
    }

    /// Where `.eh_frame` starts, from `.eh_frame_hdr`'s `eh_frame_ptr`
    /// (the encodings linkers emit: pc-relative or absolute, 4 or 8 bytes).
    fn eh_frame_svma(hdr: &[u8], hdr_svma: u64) -> Option<u64> {
        if hdr.len() < 8 || hdr[0] != 1 {
            return None;
        }
        let enc = hdr[1];
        let field = hdr_svma + 4;
        let (value, _) = match enc & 0x0f {
            0x03 => (u32::from_le_bytes(hdr[4..8].try_into().ok()?) as i64, 4),
            0x0b => (i32::from_le_bytes(hdr[4..8].try_into().ok()?) as i64, 4),
            0x04 | 0x0c if hdr.len() >= 12 => (i64::from_le_bytes(hdr[4..12].try_into().ok()?), 8),
            _ => return None,
        };
        match enc & 0x70 {
            0x00 => Some(value as u64),
            0x10 => Some(field.wrapping_add(value as u64)),
            0x30 => Some(hdr_svma.wrapping_add(value as u64)),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn decodes_eh_frame_ptr() {
            // version 1, pcrel|sdata4, then -0x100 from the field at +4.
            let mut h = vec![1u8, 0x1b, 0x03, 0x3b];
            h.extend_from_slice(&(-0x100i32).to_le_bytes());
            assert_eq!(eh_frame_svma(&h, 0x2000), Some(0x2004 - 0x100));
            h[1] = 0x03; // absolute udata4
            h[4..8].copy_from_slice(&0x1234u32.to_le_bytes());
            assert_eq!(eh_frame_svma(&h, 0x2000), Some(0x1234));
            h[0] = 2; // unknown version
            assert_eq!(eh_frame_svma(&h, 0x2000), None);
            assert_eq!(eh_frame_svma(&h[..3], 0x2000), None);
        }

        /// The system unwinder's view of the same stack, from a frame below.
        #[inline(never)]
        fn both() -> (Vec<usize>, Vec<usize>) {
            let mut buf = [0usize; MAX_FRAMES];
            let n = super::super::capture(&mut buf).expect("caching unwinder walked");
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
            let (fast, _) = super::super::counts();
            assert!(fast >= 2);
        }
    }
}
