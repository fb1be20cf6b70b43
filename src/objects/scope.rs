//! Leak-check scopes: which objects were created under an active
//! [`LeakCheck`](crate::LeakCheck), counted per site.
//!
//! # Design
//!
//! A `LeakCheck` claims one of [`MAX_SCOPES`] static slots and a fresh
//! generation number, and puts `(slot, generation)` in a const-initialised
//! thread-local. An object created on that thread while the check is active
//! records `(slot, entry, generation)` in its header and adds one to the
//! slot's entry for its site; its drop (on any thread, at any later time)
//! subtracts one *only if the entry still carries its generation* (one CAS
//! on a packed `(generation, live)` word), so objects outliving their check
//! never disturb a later check that reuses the slot. Other threads and other
//! tests never touch the slot: parallel tests cannot fail each other.
//!
//! Handles count through their object: a `TrackedArc` created under the
//! check and cloned into a spawned thread that forgets the clone keeps the
//! object live, so the check still reports it.
//!
//! A slot has [`MAX_ENTRIES`] site entries; objects of further sites count
//! in the slot's overflow word (reported, never lost). Objects count toward
//! the innermost active check of their thread only.

use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use super::site::TypeState;

/// Concurrent leak checks supported.
pub(crate) const MAX_SCOPES: usize = 128;
/// Distinct (site, type) entries per check.
pub(crate) const MAX_ENTRIES: usize = 32;
/// Header value of objects created outside any check.
pub(crate) const NO_SCOPE: u16 = u16::MAX;
/// Entry index meaning "the overflow word".
const OVERFLOW: usize = MAX_ENTRIES;

pub(crate) struct Entry {
    pub(crate) site: AtomicPtr<TypeState>,
    /// `(generation: u32, live: i32)`.
    word: AtomicU64,
}

pub(crate) struct Slot {
    busy: AtomicBool,
    gen: AtomicU32,
    pub(crate) entries: [Entry; MAX_ENTRIES + 1],
}

#[allow(clippy::declare_interior_mutable_const)]
const ENTRY: Entry = Entry {
    site: AtomicPtr::new(ptr::null_mut()),
    word: AtomicU64::new(0),
};
#[allow(clippy::declare_interior_mutable_const)]
const SLOT: Slot = Slot {
    busy: AtomicBool::new(false),
    gen: AtomicU32::new(0),
    entries: [ENTRY; MAX_ENTRIES + 1],
};

pub(crate) static SLOTS: [Slot; MAX_SCOPES] = [SLOT; MAX_SCOPES];
static NEXT_GEN: AtomicU32 = AtomicU32::new(1);

thread_local! {
    /// `(slot + 1) << 32 | generation`, 0 when no check is active.
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

#[inline]
const fn pack(gen: u32, live: i32) -> u64 {
    ((gen as u64) << 32) | (live as u32 as u64)
}

/// Where an object is counted, as stored in its header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    /// `slot << 6 | entry`, or [`NO_SCOPE`].
    pub(crate) ix: u16,
    pub(crate) gen: u32,
}

impl Mark {
    pub(crate) const NONE: Mark = Mark {
        ix: NO_SCOPE,
        gen: 0,
    };
}

/// Counts a new object of `ts` in this thread's active check, if any.
#[inline]
pub(crate) fn enter_object(ts: &'static TypeState) -> Mark {
    let cur = CURRENT.try_with(Cell::get).unwrap_or(0);
    if cur == 0 {
        return Mark::NONE;
    }
    enter_slow(ts, (cur >> 32) as usize - 1, cur as u32)
}

#[cold]
fn enter_slow(ts: &'static TypeState, slot_ix: usize, gen: u32) -> Mark {
    let Some(slot) = SLOTS.get(slot_ix) else {
        return Mark::NONE;
    };
    if slot.gen.load(Ordering::Acquire) != gen {
        return Mark::NONE; // the check ended (a stale handle): count nowhere
    }
    let want = ts as *const TypeState as *mut TypeState;
    let mut entry_ix = OVERFLOW;
    for (i, e) in slot.entries[..MAX_ENTRIES].iter().enumerate() {
        let p = e.site.load(Ordering::Acquire);
        if p == want {
            entry_ix = i;
            break;
        }
        if p.is_null() {
            match e.site.compare_exchange(
                ptr::null_mut(),
                want,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    entry_ix = i;
                    break;
                }
                Err(other) if other == want => {
                    entry_ix = i;
                    break;
                }
                Err(_) => {}
            }
        }
    }
    if add(&slot.entries[entry_ix].word, gen, 1) {
        Mark {
            ix: ((slot_ix << 6) | entry_ix) as u16,
            gen,
        }
    } else {
        Mark::NONE
    }
}

/// Adds `n` to a word if it carries `gen`; false when the scope is gone.
fn add(word: &AtomicU64, gen: u32, n: i32) -> bool {
    let mut cur = word.load(Ordering::Relaxed);
    loop {
        if (cur >> 32) as u32 != gen {
            return false;
        }
        let live = (cur as u32 as i32).wrapping_add(n);
        match word.compare_exchange_weak(cur, pack(gen, live), Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

/// Uncounts a dropped object.
#[inline]
pub(crate) fn leave_object(m: Mark) {
    if m.ix != NO_SCOPE {
        leave_slow(m);
    }
}

#[cold]
fn leave_slow(m: Mark) {
    let (slot_ix, entry_ix) = (usize::from(m.ix >> 6), usize::from(m.ix & 63));
    if let Some(e) = SLOTS.get(slot_ix).and_then(|s| s.entries.get(entry_ix)) {
        add(&e.word, m.gen, -1);
    }
}

/// An active scope (owned by a `LeakCheck`).
#[derive(Debug)]
pub(crate) struct Scope {
    slot_ix: usize,
    gen: u32,
    prev: u64,
}

/// Makes an existing scope the current thread's active one (for threads a
/// test spawns); restores the previous one when dropped. If the scope has
/// ended, objects created meanwhile are simply not counted (the generation
/// no longer matches).
#[derive(Debug)]
pub(crate) struct Entered {
    prev: u64,
}

impl Entered {
    pub(crate) fn enter(slot_ix: usize, gen: u32) -> Entered {
        let prev = CURRENT
            .try_with(|c| c.replace(((slot_ix as u64 + 1) << 32) | u64::from(gen)))
            .unwrap_or(0);
        Entered { prev }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let prev = self.prev;
        let _ = CURRENT.try_with(|c| c.set(prev));
    }
}

/// Why a scope could not start.
#[derive(Debug)]
pub(crate) struct Full;

impl Scope {
    /// Claims a slot and makes it this thread's active scope.
    pub(crate) fn begin() -> Result<Scope, Full> {
        let gen = loop {
            let g = NEXT_GEN.fetch_add(1, Ordering::Relaxed);
            if g != 0 {
                break g;
            }
        };
        for (i, s) in SLOTS.iter().enumerate() {
            if s.busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                for e in &s.entries {
                    e.site.store(ptr::null_mut(), Ordering::Relaxed);
                    e.word.store(pack(gen, 0), Ordering::Relaxed);
                }
                s.gen.store(gen, Ordering::Release);
                let prev = CURRENT
                    .try_with(|c| c.replace(((i as u64 + 1) << 32) | u64::from(gen)))
                    .unwrap_or(0);
                return Ok(Scope {
                    slot_ix: i,
                    gen,
                    prev,
                });
            }
        }
        Err(Full)
    }

    /// `(slot, generation)`: what another thread needs to enter this scope.
    pub(crate) fn id(&self) -> (usize, u32) {
        (self.slot_ix, self.gen)
    }

    /// `(site, live)` for every entry with live objects; the overflow entry
    /// has no site.
    pub(crate) fn live(&self) -> Vec<(Option<&'static TypeState>, u64)> {
        let slot = &SLOTS[self.slot_ix];
        let mut out = Vec::new();
        for e in &slot.entries {
            let w = e.word.load(Ordering::Relaxed);
            if (w >> 32) as u32 != self.gen {
                continue;
            }
            let live = w as u32 as i32;
            if live > 0 {
                // SAFETY: entry site pointers are null or published,
                // never-freed `TypeState`s.
                let ts = unsafe { e.site.load(Ordering::Acquire).as_ref() };
                out.push((ts, live as u64));
            }
        }
        out
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let prev = self.prev;
        let _ = CURRENT.try_with(|c| c.set(prev));
        let slot = &SLOTS[self.slot_ix];
        // Invalidate the generation so late drops of leaked objects no-op.
        for e in &slot.entries {
            e.word.store(0, Ordering::Relaxed);
        }
        slot.gen.store(0, Ordering::Relaxed);
        slot.busy.store(false, Ordering::Release);
    }
}
