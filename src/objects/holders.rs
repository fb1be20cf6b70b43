//! Live `TrackedArc` handles per holder location (where each handle was
//! created, cloned or upgraded), with their ages.
//!
//! A fixed table of [`MAX_HOLDERS`] slots keyed by the address of the
//! `&'static Location` of the creating call (`#[track_caller]`): no string
//! compare, one load per probe. A location's record (its own [`Cohorts`]) is
//! allocated the first time it holds a handle and CAS-published; a loser
//! frees its unpublished record and uses the winner's. When the table is
//! full, handles count under one shared `other` record. Records are leaked
//! on purpose (bounded: at most `MAX_HOLDERS + 1` per `track_arc!` site).

use core::panic::Location;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use super::cohort::Cohorts;

/// Distinct holder locations kept per object site.
pub(crate) const MAX_HOLDERS: usize = 16;

/// One holder location and its live handles.
pub(crate) struct HolderRec {
    /// `None` for the `other` record.
    pub(crate) loc: Option<&'static Location<'static>>,
    /// Index of the record in its table (`MAX_HOLDERS` for `other`): the
    /// index of its count in each object's per-holder handle counts.
    pub(crate) ix: usize,
    pub(crate) cohorts: Cohorts<0>,
}

pub(crate) struct HolderTable {
    slots: [AtomicPtr<HolderRec>; MAX_HOLDERS],
    other: AtomicPtr<HolderRec>,
}

fn publish(
    slot: &AtomicPtr<HolderRec>,
    loc: Option<&'static Location<'static>>,
    ix: usize,
) -> Result<&'static HolderRec, *mut HolderRec> {
    let fresh = Box::into_raw(Box::new(HolderRec {
        loc,
        ix,
        cohorts: Cohorts::new(),
    }));
    match slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: `fresh` is a leaked box, now published and never freed.
        Ok(_) => Ok(unsafe { &*fresh }),
        Err(winner) => {
            // SAFETY: `fresh` came from `Box::into_raw` and was never
            // published: we own it alone.
            drop(unsafe { Box::from_raw(fresh) });
            Err(winner)
        }
    }
}

impl HolderTable {
    pub(crate) fn new() -> Self {
        HolderTable {
            slots: [const { AtomicPtr::new(ptr::null_mut()) }; MAX_HOLDERS],
            other: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The record of `loc`, created on first use.
    #[inline]
    pub(crate) fn get(&self, loc: &'static Location<'static>) -> &'static HolderRec {
        let addr = loc as *const Location<'static> as usize;
        let start = (((addr as u64) >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize;
        for k in 0..MAX_HOLDERS {
            let ix = (start + k) % MAX_HOLDERS;
            let slot = &self.slots[ix];
            let mut p = slot.load(Ordering::Acquire);
            if p.is_null() {
                match publish(slot, Some(loc), ix) {
                    Ok(rec) => return rec,
                    Err(winner) => p = winner,
                }
            }
            // SAFETY: non-null slot pointers are published leaked boxes.
            let rec: &'static HolderRec = unsafe { &*p };
            if rec.loc.is_some_and(|l| ptr::eq(l, loc) || *l == *loc) {
                return rec;
            }
        }
        self.other()
    }

    #[cold]
    fn other(&self) -> &'static HolderRec {
        let p = self.other.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: published leaked box.
            return unsafe { &*p };
        }
        match publish(&self.other, None, MAX_HOLDERS) {
            Ok(rec) => rec,
            // SAFETY: the winner's pointer is a published leaked box.
            Err(winner) => unsafe { &*winner },
        }
    }

    /// The record at index `ix` (`MAX_HOLDERS`: `other`), if in use.
    pub(crate) fn record_at(&self, ix: usize) -> Option<&'static HolderRec> {
        let s = self.slots.get(ix).unwrap_or(&self.other);
        // SAFETY: non-null slot pointers are published leaked boxes.
        unsafe { s.load(Ordering::Acquire).as_ref() }
    }

    /// Every holder record in use.
    pub(crate) fn records(&self) -> impl Iterator<Item = &'static HolderRec> + '_ {
        self.slots
            .iter()
            .chain(core::iter::once(&self.other))
            .filter_map(|s| {
                let p = s.load(Ordering::Acquire);
                // SAFETY: non-null pointers are published leaked boxes.
                unsafe { p.as_ref() }
            })
    }
}
