//! A caching DWARF unwinder for the sampled path (Linux, x86_64, glibc).
//!
//! The system unwinder (`_Unwind_Backtrace`, what `backtrace` calls) finds
//! and interprets each frame's CFI afresh on every walk: about 2,400
//! instructions a frame, 2.8 µs for a typical sampled stack, which at the
//! default sampling rate alone cost 5% on allocation-heavy code. This one
//! reads the same `.eh_frame` CFI in place from the loaded images (parsed
//! with `gimli`), reduces each frame's CFI row to a small rule (CFA = SP or
//! BP + offset, return address and saved BP at fixed offsets from the CFA)
//! and caches the rule per return address, so a frame it has seen costs a
//! hash probe and one or two bounds-checked stack reads.
//!
//! The rule cache is hand-written because it is the hot path and the
//! obvious crate for this, `framehop`, caches rules in a fixed 509-slot
//! direct-mapped table: two return addresses of one stack that collide
//! there evict each other on every walk (about one stack in five), and each
//! miss re-parses the CFI. Measured with it: 2,800 ns per sample on the
//! churn benchmark; with this cache (4096 slots, 4-way): see ARCHITECTURE.md.
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
//!   A thread on a stack that is not its own (a coroutine, a signal stack),
//!   or with less than `MIN_FREE_STACK` left, falls back.
//! - A CFI row that does not reduce to such a rule (a DWARF expression, a
//!   register saved in another register) ends the walk there; a walk that
//!   stops after fewer than `MIN_FRAMES` frames falls back.
//! - Caches (rules plus gimli's fixed-size evaluation context: nothing is
//!   allocated while walking) live in `SLOTS` slots taken with a try-lock;
//!   when all are taken, the walk falls back. Nothing here waits, so nothing
//!   here can deadlock, including in a child after `fork()`.
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

/// Called by the `fork()` prepare handler (`alloc::table`): from now on no
/// thread enters `dl_iterate_phdr` for the unwinder, and this waits until
/// those inside have left. glibc does not reset that function's lock in the
/// child: a child forked while another thread held it would hang on its
/// first sample (seen in `tests/alloc_fork.rs` before this existed).
pub(crate) fn fork_prepare() {
    use core::sync::atomic::Ordering::SeqCst;
    FORKING.store(true, SeqCst);
    while LOADER_USERS.load(SeqCst) != 0 {
        std::thread::yield_now();
    }
}

/// Called after `fork()`, in the parent and in the child.
pub(crate) fn fork_release() {
    FORKING.store(false, core::sync::atomic::Ordering::SeqCst);
}

/// Set while a thread forks: walks fall back instead of asking the loader.
static FORKING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// Threads inside `dl_iterate_phdr` for the unwinder.
static LOADER_USERS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Runs `f` (which calls `dl_iterate_phdr`) unless a fork is under way.
/// SeqCst on both sides (here: announce, then check; the forker: flag, then
/// wait for zero) means that either the forker waits for this call or this
/// call sees the flag and does not happen.
#[cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu")),
    allow(dead_code)
)]
fn outside_fork<R>(f: impl FnOnce() -> R) -> Option<R> {
    use core::sync::atomic::Ordering::SeqCst;
    LOADER_USERS.fetch_add(1, SeqCst);
    let r = if FORKING.load(SeqCst) {
        None
    } else {
        Some(f())
    };
    LOADER_USERS.fetch_sub(1, SeqCst);
    r
}

/// Bytes the unwinder mapped for its caches and module lists (leakscope
/// metadata, outside the malloc heap).
pub(crate) fn mapped_bytes() -> u64 {
    MAPPED.load(core::sync::atomic::Ordering::Relaxed)
}

#[cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu")),
    allow(dead_code)
)]
static MAPPED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

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
    use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

    use gimli::{
        BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, LittleEndian, ParsedEhFrameHdr,
        Register, RegisterRule, UnwindContext, UnwindContextStorage, UnwindSection, UnwindTableRow,
        X86_64,
    };

    use super::{outside_fork, FALLBACK, FAST, MAX_FRAMES};

    type Slice = EndianSlice<'static, LittleEndian>;

    /// gimli's row storage in fixed arrays, so evaluating CFI never
    /// allocates. x86_64 CFI rows name a handful of registers (the
    /// callee-saved ones and the return address); a row with more fails to
    /// evaluate and the walk stops there.
    struct FixedStore;

    impl<T: gimli::ReaderOffset> UnwindContextStorage<T> for FixedStore {
        type Rules = [(Register, RegisterRule<T>); 24];
        type Stack = [UnwindTableRow<T, Self>; 4];
    }

    type Context = UnwindContext<usize, FixedStore>;

    /// One loaded object's unwind data, read in place.
    struct Module {
        /// Executable range, actual addresses.
        start: u64,
        end: u64,
        /// Load bias: actual address = stated address + bias.
        bias: u64,
        hdr: ParsedEhFrameHdr<Slice>,
        eh_frame: EhFrame<Slice>,
        bases: BaseAddresses,
    }

    /// A module list and the loader counters it was built under.
    struct Built {
        /// Sorted by `start`.
        modules: &'static [Module],
        adds: u64,
        subs: u64,
        /// Which build this is (caches remember it).
        id: u32,
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

    /// Number of caches: concurrent walks beyond it fall back.
    const SLOTS: usize = 4;
    /// Rules cached per slot (4-way set associative).
    const WAYS: usize = 4;
    const SETS: usize = 1024;

    /// Free stack a walk insists on below the caller's frame. A walk uses
    /// about 4 KiB in a release build (gimli evaluates CFI into the
    /// heap-allocated context, rows are small), more unoptimised; the
    /// margin is for the rest of the sampled path. With less, fall back to
    /// the system unwinder (about 5 KiB).
    const MIN_FREE_STACK: usize = 128 * 1024;

    /// A walk shorter than this is suspect: fall back.
    const MIN_FRAMES: usize = 3;

    /// How to find the caller's frame from a frame, all offsets in bytes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Rule {
        /// CFA = (BP if `cfa_bp` else SP) + `cfa_off`.
        cfa_bp: bool,
        cfa_off: i32,
        /// The return address is at CFA + `ra_off`; `None`: no caller.
        ra_off: Option<i32>,
        /// The caller's BP is at CFA + `bp_off`; `None`: unchanged.
        bp_off: Option<i32>,
    }

    #[derive(Clone, Copy)]
    struct Entry {
        /// Lookup address; 0 = empty.
        addr: u64,
        rule: Rule,
    }

    const EMPTY: Entry = Entry {
        addr: 0,
        rule: Rule {
            cfa_bp: false,
            cfa_off: 0,
            ra_off: None,
            bp_off: None,
        },
    };

    struct Cache {
        /// The module build the rules came from.
        build: u32,
        /// Round-robin victim per set.
        next: [u8; SETS],
        entries: [[Entry; WAYS]; SETS],
        ctx: Context,
    }

    impl Cache {
        fn lookup(&self, addr: u64) -> Option<Rule> {
            let set = &self.entries[set_of(addr)];
            set.iter().find(|e| e.addr == addr).map(|e| e.rule)
        }

        fn insert(&mut self, addr: u64, rule: Rule) {
            let i = set_of(addr);
            let way = self.next[i] as usize % WAYS;
            self.next[i] = self.next[i].wrapping_add(1);
            self.entries[i][way] = Entry { addr, rule };
        }
    }

    fn set_of(addr: u64) -> usize {
        (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % SETS
    }

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
        let n = with_cache(slot, built.id, |cache| {
            walk_frames(built, cache, buf, (ip, sp, bp), hi as u64)
        });
        slot.busy.store(false, Ordering::Release);
        n.filter(|&n| n >= MIN_FRAMES)
    }

    /// Runs `f` with the slot's cache (created on first use, under the
    /// caller's guard, so it is metadata; emptied when the module list
    /// changed).
    fn with_cache<R>(
        slot: &Slot,
        build: u32,
        f: impl FnOnce(&mut Cache) -> Option<R>,
    ) -> Option<R> {
        let mut p = slot.cache.load(Ordering::Relaxed);
        if p.is_null() {
            p = new_cache()?;
            slot.cache.store(p, Ordering::Relaxed);
        }
        // SAFETY: the caller swapped `busy` from false to true, so it has the
        // slot, and its cache (initialised by `new_cache`, never freed), to
        // itself until it stores false.
        let cache = unsafe { &mut *p };
        if cache.build != build {
            for set in cache.entries.iter_mut() {
                *set = [EMPTY; WAYS];
            }
            cache.build = build;
        }
        f(cache)
    }

    /// A cache in fresh mapped memory, each field written in place (the
    /// cache is about 100 KiB: no temporary copy on the stack).
    fn new_cache() -> Option<*mut Cache> {
        let p = map_uninit::<Cache>(1)?;
        // SAFETY: `p` is a fresh, writable, suitably aligned mapping of one
        // `Cache`; every field is written before the pointer is used.
        unsafe {
            core::ptr::addr_of_mut!((*p).build).write(0);
            core::ptr::addr_of_mut!((*p).next).write([0; SETS]);
            for set in 0..SETS {
                core::ptr::addr_of_mut!((*p).entries[set]).write([EMPTY; WAYS]);
            }
            core::ptr::addr_of_mut!((*p).ctx).write(UnwindContext::new_in());
        }
        Some(p)
    }

    /// Memory straight from the kernel for the unwinder's long-lived state
    /// (caches, module lists, never freed). Kept out of the user's malloc
    /// heap on purpose: a 100 KiB block that the first sample leaves in the
    /// middle of the heap changes where glibc's later chunks go and how they
    /// coalesce, which showed up as extra work inside glibc's malloc and
    /// free on the request-mix benchmark.
    fn map_uninit<T>(count: usize) -> Option<*mut T> {
        const { assert!(core::mem::align_of::<T>() <= 4096) };
        let len = core::mem::size_of::<T>().checked_mul(count)?.max(1);
        // SAFETY: a new anonymous private mapping: no file, no fixed
        // address, so no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        super::MAPPED.fetch_add(len as u64, Ordering::Relaxed);
        Some(p.cast())
    }

    /// Moves `v` into mapped memory (see [`map_uninit`]).
    fn map_slice<T>(v: Vec<T>) -> Option<&'static [T]> {
        let p = map_uninit::<T>(v.len())?;
        let n = v.len();
        for (i, x) in v.into_iter().enumerate() {
            // SAFETY: `p` holds room for `n` values; each slot is written once.
            unsafe { p.add(i).write(x) };
        }
        // SAFETY: all `n` values were written above; the mapping is never
        // unmapped.
        Some(unsafe { core::slice::from_raw_parts(p, n) })
    }

    /// Walks from the registers `(ip, sp, bp)` of `walk`'s own frame.
    fn walk_frames(
        built: &Built,
        cache: &mut Cache,
        buf: &mut [usize; MAX_FRAMES],
        (mut ip, mut sp, mut bp): (u64, u64, u64),
        hi: u64,
    ) -> Option<usize> {
        // Readable: from the walk's own frame to the top of the stack.
        let floor = sp;
        let read = move |addr: u64| -> Option<u64> {
            if addr < floor || addr > hi.saturating_sub(8) || !addr.is_multiple_of(8) {
                return None;
            }
            // SAFETY: `[floor, hi)` is this thread's stack from the walk's
            // own frame to its top: mapped and readable while this frame
            // runs; the address is aligned and the 8 bytes lie inside it.
            Some(unsafe { core::ptr::read_volatile(addr as *const u64) })
        };
        let mut n = 0;
        // The first address is an instruction pointer (look it up as is);
        // the others are return addresses (look up the call, one before).
        let mut lookup = ip;
        loop {
            buf[n] = ip as usize;
            n += 1;
            if n == MAX_FRAMES {
                return Some(n);
            }
            let rule = match cache.lookup(lookup) {
                Some(r) => r,
                None => {
                    let r = find_rule(built, &mut cache.ctx, lookup)?;
                    cache.insert(lookup, r);
                    r
                }
            };
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

    /// Finds `addr`'s module and reduces its CFI row to a [`Rule`].
    fn find_rule(built: &Built, ctx: &mut Context, addr: u64) -> Option<Rule> {
        let i = built.modules.partition_point(|m| m.start <= addr);
        let m = built.modules.get(i.checked_sub(1)?)?;
        if addr >= m.end {
            return None;
        }
        let svma = addr - m.bias;
        let table = m.hdr.table()?;
        let row = table
            .unwind_info_for_address(&m.eh_frame, &m.bases, ctx, svma, EhFrame::cie_from_offset)
            .ok()?;
        to_rule(row)
    }

    fn to_rule<S: UnwindContextStorage<usize>>(row: &UnwindTableRow<usize, S>) -> Option<Rule> {
        let (cfa_bp, cfa_off) = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RSP => {
                (false, i32::try_from(*offset).ok()?)
            }
            CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RBP => {
                (true, i32::try_from(*offset).ok()?)
            }
            _ => return None,
        };
        // `None` from `register`: no rule in this row (the default).
        let ra_off = match row.register(X86_64::RA) {
            Some(RegisterRule::Undefined) => None, // the outermost frame
            Some(RegisterRule::Offset(o)) => Some(i32::try_from(o).ok()?),
            _ => return None,
        };
        let bp_off = match row.register(X86_64::RBP) {
            None | Some(RegisterRule::Undefined | RegisterRule::SameValue) => None,
            Some(RegisterRule::Offset(o)) => Some(i32::try_from(o).ok()?),
            _ => return None,
        };
        Some(Rule {
            cfa_bp,
            cfa_off,
            ra_off,
            bp_off,
        })
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

    /// For the main thread glibc reads /proc/self/maps, which allocates: the
    /// caller holds the re-entrancy guard, so that is metadata.
    fn read_stack_bounds() -> Option<(usize, usize)> {
        // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is
        // read and destroyed exactly once; the out-pointers are valid locals.
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
            // SAFETY: published lists live in mappings that are never unmapped.
            let b = unsafe { &*p };
            if b.adds == adds && b.subs == subs {
                return Some(b);
            }
        }
        if BUILDS.load(Ordering::Relaxed) >= MAX_BUILDS || BUILDING.swap(true, Ordering::Acquire) {
            return None;
        }
        let id = BUILDS.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(built) = outside_fork(|| build(adds, subs, id)).flatten() else {
            BUILDS.fetch_sub(1, Ordering::Relaxed);
            BUILDING.store(false, Ordering::Release);
            return None;
        };
        let Some(fresh) = map_uninit::<Built>(1) else {
            BUILDING.store(false, Ordering::Release);
            return None;
        };
        // SAFETY: a fresh mapping with room for one `Built`.
        unsafe { fresh.write(built) };
        BUILT.store(fresh, Ordering::Release);
        BUILDING.store(false, Ordering::Release);
        // SAFETY: written above, never unmapped.
        let b = unsafe { &*fresh };
        (!b.modules.is_empty()).then_some(b)
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
        outside_fork(|| {
            // SAFETY: the callback only writes `out`, which outlives the call.
            unsafe { libc::dl_iterate_phdr(Some(first), &mut out as *mut _ as *mut libc::c_void) }
        })?;
        out
    }

    /// Builds the module list from every loaded object's `PT_GNU_EH_FRAME`.
    fn build(adds: u64, subs: u64, id: u32) -> Option<Built> {
        unsafe extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: glibc passes a valid `info` whose program headers are
            // mapped while the callback runs (and while the object stays
            // loaded); `data` is the caller's module list.
            unsafe {
                let list = &mut *(data as *mut Vec<Module>);
                if let Some(m) = module_of(&*info) {
                    list.push(m);
                }
            }
            0
        }
        let mut modules: Vec<Module> = Vec::new();
        // SAFETY: the callback only touches `modules`, which outlives the call.
        unsafe {
            libc::dl_iterate_phdr(
                Some(each),
                &mut modules as *mut Vec<Module> as *mut libc::c_void,
            )
        };
        modules.sort_by_key(|m| m.start);
        Some(Built {
            modules: map_slice(modules)?,
            adds,
            subs,
            id,
        })
    }

    /// One loaded object's unwind sections, read in place.
    ///
    /// # Safety
    /// `info` must come from `dl_iterate_phdr`: its program headers and the
    /// segments they describe are mapped.
    unsafe fn module_of(info: &libc::dl_phdr_info) -> Option<Module> {
        if info.dlpi_phdr.is_null() {
            return None;
        }
        let bias = info.dlpi_addr;
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
        let phdrs =
            unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let mut text: Option<(u64, u64)> = None;
        let mut hdr: Option<(u64, u64)> = None;
        for p in phdrs {
            let r = (p.p_vaddr, p.p_vaddr.checked_add(p.p_memsz)?);
            if p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0 {
                text = Some(match text {
                    None => r,
                    Some(t) => (t.0.min(r.0), t.1.max(r.1)),
                });
            } else if p.p_type == libc::PT_GNU_EH_FRAME {
                hdr = Some(r);
            }
        }
        let (text, hdr) = (text?, hdr?);
        // SAFETY: PT_GNU_EH_FRAME is mapped (it lies in a loaded segment).
        let hdr_bytes: &'static [u8] = unsafe {
            core::slice::from_raw_parts(
                bias.checked_add(hdr.0)? as *const u8,
                (hdr.1 - hdr.0) as usize,
            )
        };
        let eh_start = eh_frame_svma(hdr_bytes, hdr.0)?;
        // `.eh_frame`'s length is not recorded in the header: it runs to the
        // end of the loaded segment that holds it, at most (lookups go
        // through the header's table, and each entry has its length).
        let seg = phdrs.iter().find(|p| {
            p.p_type == libc::PT_LOAD
                && p.p_vaddr <= eh_start
                && eh_start < p.p_vaddr.saturating_add(p.p_filesz)
        })?;
        let eh_end = seg.p_vaddr.saturating_add(seg.p_filesz);
        // SAFETY: `[eh_start, eh_end)` lies inside a loaded segment's file
        // contents, mapped while the object is loaded.
        let eh_bytes: &'static [u8] = unsafe {
            core::slice::from_raw_parts(
                bias.checked_add(eh_start)? as *const u8,
                (eh_end - eh_start) as usize,
            )
        };
        let bases = BaseAddresses::default()
            .set_eh_frame_hdr(hdr.0)
            .set_eh_frame(eh_start)
            .set_text(text.0);
        let parsed = EhFrameHdr::new(hdr_bytes, LittleEndian)
            .parse(&bases, 8)
            .ok()?;
        parsed.table()?; // no search table: not worth a linear scan
        let mut eh_frame = EhFrame::new(eh_bytes, LittleEndian);
        eh_frame.set_address_size(8);
        Some(Module {
            start: bias.checked_add(text.0)?,
            end: bias.checked_add(text.1)?,
            bias,
            hdr: parsed,
            eh_frame,
            bases,
        })
    }

    /// Where `.eh_frame` starts, from `.eh_frame_hdr`'s `eh_frame_ptr`
    /// (the encodings linkers emit: pc-relative or absolute, 4 or 8 bytes).
    fn eh_frame_svma(hdr: &[u8], hdr_svma: u64) -> Option<u64> {
        if hdr.len() < 8 || hdr[0] != 1 {
            return None;
        }
        let enc = hdr[1];
        let field = hdr_svma.wrapping_add(4);
        let value = match enc & 0x0f {
            0x03 => u32::from_le_bytes(hdr[4..8].try_into().ok()?) as i64,
            0x0b => i32::from_le_bytes(hdr[4..8].try_into().ok()?) as i64,
            0x04 | 0x0c if hdr.len() >= 12 => i64::from_le_bytes(hdr[4..12].try_into().ok()?),
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
