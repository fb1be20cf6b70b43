//! CFI rows reduced to rules, and the caches that keep them.
//!
//! A frame's CFI row is reduced to a small [`Rule`] (CFA = SP or BP +
//! offset, return address and saved BP at fixed offsets from the CFA); a
//! row that does not reduce to one (a DWARF expression, a register saved
//! in another register) ends the walk there.
//!
//! Rules are cached per return address in `SLOTS` caches (`SETS` sets of
//! `WAYS` ways, round-robin eviction), each with gimli's fixed-size
//! evaluation context, so nothing is allocated while walking. A walk takes
//! a whole cache with a try-lock (`busy`); when all are taken it falls
//! back. Nothing here waits, so nothing here can deadlock, including in a
//! child after `fork()`. A cache is emptied when the module list it was
//! filled from is replaced.

use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use gimli::{
    CfaRule, EhFrame, Register, RegisterRule, UnwindContext, UnwindContextStorage, UnwindSection,
    UnwindTableRow, X86_64,
};

use super::mmap::map_uninit;
use super::modules::Built;

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

/// Number of caches: concurrent walks beyond it fall back.
const SLOTS: usize = 4;
/// Rules cached per slot (4-way set associative).
const WAYS: usize = 4;
const SETS: usize = 1024;

/// How to find the caller's frame from a frame, all offsets in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rule {
    /// CFA = (BP if `cfa_bp` else SP) + `cfa_off`.
    pub(super) cfa_bp: bool,
    pub(super) cfa_off: i32,
    /// The return address is at CFA + `ra_off`; `None`: no caller.
    pub(super) ra_off: Option<i32>,
    /// The caller's BP is at CFA + `bp_off`; `None`: unchanged.
    pub(super) bp_off: Option<i32>,
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

pub(super) struct Cache {
    /// The module build the rules came from.
    build: u32,
    /// Round-robin victim per set.
    next: [u8; SETS],
    entries: [[Entry; WAYS]; SETS],
    ctx: Context,
}

impl Cache {
    /// The rule for `addr` (a return address minus one, or the first
    /// frame's instruction pointer): cached, or found in the module list's
    /// CFI and cached. `None`: no rule (the walk ends).
    pub(super) fn rule_for(&mut self, built: &Built, addr: u64) -> Option<Rule> {
        if let Some(r) = self.lookup(addr) {
            return Some(r);
        }
        let r = find_rule(built, &mut self.ctx, addr)?;
        self.insert(addr, r);
        Some(r)
    }

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

pub(super) struct Slot {
    pub(super) busy: AtomicBool,
    cache: AtomicPtr<Cache>,
}

pub(super) static CACHES: [Slot; SLOTS] = [const {
    Slot {
        busy: AtomicBool::new(false),
        cache: AtomicPtr::new(core::ptr::null_mut()),
    }
}; SLOTS];

/// In a `fork()` child: the threads that had taken caches are gone. Their
/// caches are freed for use and marked stale (a build id no module list
/// has, so the next user empties them: an entry may be half-written).
pub(super) fn fork_child() {
    for slot in &CACHES {
        if slot.busy.load(Ordering::Relaxed) {
            let p = slot.cache.load(Ordering::Relaxed);
            if !p.is_null() {
                // SAFETY: the child has one thread, this one, which holds
                // no cache: nothing else borrows it. `p` came from
                // `new_cache`, never freed.
                unsafe { (*p).build = STALE_BUILD };
            }
            slot.busy.store(false, Ordering::Relaxed);
        }
    }
}

/// A build id no module list has (theirs start at 1).
const STALE_BUILD: u32 = 0;

/// Runs `f` with the slot's cache (created on first use, under the
/// caller's guard, so it is metadata; emptied when the module list
/// changed).
pub(super) fn with_cache<R>(
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
    // Every field is written before the pointer is returned (and used).
    // SAFETY: `p` is a fresh, writable, suitably aligned mapping of one
    // `Cache` (`map_uninit`); `build` lies inside it.
    unsafe { core::ptr::addr_of_mut!((*p).build).write(STALE_BUILD) };
    // SAFETY: as for `build`: `p` is a fresh mapping of one `Cache`, and
    // `next` lies inside it.
    unsafe { core::ptr::addr_of_mut!((*p).next).write([0; SETS]) };
    for set in 0..SETS {
        // SAFETY: `p` is a fresh mapping of one `Cache`; `set < SETS`, so
        // `entries[set]` lies inside it.
        unsafe { core::ptr::addr_of_mut!((*p).entries[set]).write([EMPTY; WAYS]) };
    }
    // SAFETY: `p` is a fresh mapping of one `Cache`, and `ctx` lies inside
    // it.
    unsafe { core::ptr::addr_of_mut!((*p).ctx).write(UnwindContext::new_in()) };
    Some(p)
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
