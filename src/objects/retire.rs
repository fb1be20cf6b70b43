//! Retired objects: "this should be gone now", checked exactly.
//!
//! [`Tracked::retire`](crate::Tracked::retire) and
//! [`TrackedArc::retire`](crate::TrackedArc::retire) mark an object
//! *retired*, with a `&'static str` reason and the time. A retired object
//! still live [`retire_grace`] later (5 s by default) is *retained*: the
//! snapshot counts it per site and reason, with how long ago it was
//! retired, its label values and, for shared handles, the holders of its
//! remaining handles. A retired object dropped in time leaves nothing
//! behind. No heuristic: the site's lifetime shape plays no part.
//!
//! # Where the mark lives
//!
//! In two places, so that objects never retired pay nothing:
//!
//! - the header's label word gets the `RETIRED` flag, and its 14 payload
//!   bits then hold the object's *slot* in the retired table instead of its
//!   label index (`tracked.rs` draws the word). An object that is neither
//!   labelled, retired nor polled keeps the one value the drop path always
//!   compared against (`NO_LABEL`), so create and drop run exactly the
//!   instructions they ran before;
//! - the slot, in one bounded process-wide table behind a mutex: site,
//!   reason, retire time, birth time, the label index it displaced, and for
//!   a `TrackedArc` a pointer to the object's per-holder handle counts.
//!
//! A slot index in the object (rather than a table keyed by address) keeps
//! `Tracked<T>` movable after it was retired. The lock is taken only to
//! retire, to drop a retired object, to clone a retired `Tracked` and by
//! snapshots (which build their per-site summary under it: one pass over at
//! most [`MAX_RETIRED`] slots). User code (drops of values) never runs
//! under it, and it is never taken on the allocator's path.
//!
//! Why not bits of the header alone: a retired object must also carry its
//! reason and retire time, and the header (24 bytes before this change, 32
//! with the last poll time of tasks) has no room for them; a side table
//! costs only the objects that are retired.
//!
//! # Bounds
//!
//! - [`MAX_RETIRED`] retired-and-live objects at once (8192, about 450 KiB
//!   when full); beyond, `retire` does not mark the object and counts the
//!   overflow ([`retire_overflows`]).
//! - Reasons per site in a snapshot: [`MAX_RETAINED_REASONS`]; the rest
//!   count under `other`.
//!
//! # Holders of retained handles
//!
//! Each `TrackedArc` object keeps one `u32` count of live handles per holder
//! record of its site (17 of them: 68 bytes in the shared allocation; a
//! handle's clone and drop add one `Relaxed` add on the object's own cache
//! lines). The slot points at these counts, so a snapshot lists where the
//! remaining handles of retained objects were created or cloned, exactly.
//! The pointer is valid while the slot is allocated: the object's header
//! frees the slot (under the lock) when it drops, before the allocation is
//! freed, and snapshots read the counts under the same lock.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::holders::MAX_HOLDERS;
use super::labels::NO_LABEL;
use super::site::TypeState;
use super::tracked::{Header, PAYLOAD, POLLED, RETIRED};
use crate::histogram::Histogram;

/// Retired objects that can be live at once (the table's bound).
pub const MAX_RETIRED: usize = 8192;
const _: () = assert!(MAX_RETIRED <= PAYLOAD as usize);

/// Distinct retained reasons reported per site; the rest count as `other`.
pub const MAX_RETAINED_REASONS: usize = 8;

/// Default grace period: 5 s.
pub const DEFAULT_RETIRE_GRACE: Duration = Duration::from_secs(5);

static GRACE_NS: AtomicU64 = AtomicU64::new(5_000_000_000);
static OVERFLOWS: AtomicU64 = AtomicU64::new(0);

/// Live handles of one `TrackedArc` object per holder record index of its
/// site (`HolderRec::ix`).
pub(crate) type Held = [AtomicU32; MAX_HOLDERS + 1];

/// How long a retired object may stay live before it is reported as
/// retained (default 5 s).
pub fn retire_grace() -> Duration {
    Duration::from_nanos(GRACE_NS.load(Ordering::Relaxed))
}

/// Sets the grace period after which a retired object still live is
/// reported as retained. Applies to every retired object from the next
/// snapshot on.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// leakscope::objects::set_retire_grace(Duration::from_secs(2));
/// assert_eq!(leakscope::objects::retire_grace(), Duration::from_secs(2));
/// ```
pub fn set_retire_grace(grace: Duration) {
    let ns = u64::try_from(grace.as_nanos()).unwrap_or(u64::MAX);
    GRACE_NS.store(ns, Ordering::Relaxed);
}

/// Objects that could not be marked retired because the retired table was
/// full ([`MAX_RETIRED`] retired objects live at once).
pub fn retire_overflows() -> u64 {
    OVERFLOWS.load(Ordering::Relaxed)
}

struct Slot {
    ts: &'static TypeState,
    reason: &'static str,
    retired_ns: u64,
    birth_ns: u64,
    /// The label index the slot index displaced in the header.
    label: u16,
    /// The object's per-holder handle counts (`TrackedArc`), or null.
    held: *const Held,
}

// SAFETY: `held` is the only non-`Send` field. It is dereferenced only
// while the table lock is held and the slot is allocated; the slot is freed
// under that lock by the object's header drop, which runs before the
// allocation holding the counts is freed. The counts are atomics, so
// reading them from any thread is sound.
unsafe impl Send for Slot {}

struct Table {
    slots: Vec<Option<Slot>>,
    free: Vec<u16>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    slots: Vec::new(),
    free: Vec::new(),
});

/// The table's guard, held by the forking thread across `fork()`
/// (`alloc/fork.rs`): a child forked while another thread retires or drops
/// a retired object must find the table unlocked.
static FORK: crate::alloc::ForkGuard<Table> = crate::alloc::ForkGuard::new();

/// Takes the table for a `fork()` (prepare handler).
pub(crate) fn fork_prepare() {
    FORK.hold(&TABLE);
}

/// Releases it after the `fork()` (parent and child).
pub(crate) fn fork_release() {
    FORK.release();
}

fn lock() -> MutexGuard<'static, Table> {
    // A panic under the lock cannot leave a slot half written (slots are
    // written whole); keep going rather than propagate the poison.
    TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Table {
    fn alloc(&mut self, slot: Slot) -> Option<u16> {
        if let Some(ix) = self.free.pop() {
            self.slots[usize::from(ix)] = Some(slot);
            return Some(ix);
        }
        if self.slots.len() >= MAX_RETIRED {
            return None;
        }
        self.slots.push(Some(slot));
        Some((self.slots.len() - 1) as u16)
    }

    fn take(&mut self, ix: u16) -> Option<Slot> {
        let s = self.slots.get_mut(usize::from(ix))?.take()?;
        self.free.push(ix);
        Some(s)
    }
}

/// Marks the object of `header` retired (see the module doc).
pub(crate) fn retire(header: &Header, reason: &'static str, held: Option<&Held>) {
    let word = header.label_word();
    let cur = word.load(Ordering::Acquire);
    if cur & RETIRED != 0 {
        return;
    }
    let now = crate::clock::objects::now_ns();
    let mut t = lock();
    let slot = Slot {
        ts: header.ts,
        reason,
        retired_ns: now,
        birth_ns: header.birth_ns(),
        label: cur & PAYLOAD,
        held: held.map_or(core::ptr::null(), |h| h as *const Held),
    };
    let Some(ix) = t.alloc(slot) else {
        OVERFLOWS.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let flagged = (cur & POLLED) | RETIRED | ix;
    match word.compare_exchange(cur, flagged, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            header.ts.retired.fetch_add(1, Ordering::Relaxed);
        }
        // Another handle retired the object meanwhile: its mark stands.
        Err(_) => {
            t.take(ix);
        }
    }
}

/// Frees slot `ix` (the object is dropping); returns its label index.
pub(crate) fn release(ix: u16) -> u16 {
    lock().take(ix).map_or(NO_LABEL, |s| s.label)
}

/// The label index kept in slot `ix`.
pub(crate) fn label_of(ix: u16) -> u16 {
    lock()
        .slots
        .get(usize::from(ix))
        .and_then(Option::as_ref)
        .map_or(NO_LABEL, |s| s.label)
}

/// One site's retired objects, as a snapshot sees them.
#[derive(Debug, Default)]
pub(crate) struct SiteRetired {
    /// Retired, live, still within the grace period.
    pub(crate) retiring: u64,
    /// Retired, live, past the grace period.
    pub(crate) retained: u64,
    /// Time since retirement of the retained ones.
    pub(crate) since: Histogram,
    /// Ages (since birth) of the retained ones.
    pub(crate) ages: Histogram,
    /// `(reason, retained, longest time since retirement in ns)`.
    pub(crate) reasons: Vec<(&'static str, u64, u64)>,
    /// `(label index, retained)`.
    pub(crate) labels: Vec<(u16, u64)>,
    /// Live handles of retained objects per holder record index.
    pub(crate) held: [u64; MAX_HOLDERS + 1],
}

/// Reads the retired table as of `now_ns`, per site (keyed by the
/// `TypeState` address), for every site or only `only`.
pub(crate) fn read(now_ns: u64, only: Option<&TypeState>) -> HashMap<usize, SiteRetired> {
    let grace = GRACE_NS.load(Ordering::Relaxed);
    let mut out: HashMap<usize, SiteRetired> = HashMap::new();
    let t = lock();
    for s in t.slots.iter().flatten() {
        if only.is_some_and(|o| !core::ptr::eq(o, s.ts)) {
            continue;
        }
        let r = out.entry(s.ts as *const TypeState as usize).or_default();
        let since = crate::clock::age_ns(now_ns, s.retired_ns);
        if since < grace {
            r.retiring += 1;
            continue;
        }
        r.retained += 1;
        r.since.record(Duration::from_nanos(since));
        r.ages.record(Duration::from_nanos(crate::clock::age_ns(
            now_ns, s.birth_ns,
        )));
        match r.reasons.iter_mut().find(|x| x.0 == s.reason) {
            Some(x) => {
                x.1 += 1;
                x.2 = x.2.max(since);
            }
            None => r.reasons.push((s.reason, 1, since)),
        }
        if s.label != NO_LABEL {
            match r.labels.iter_mut().find(|x| x.0 == s.label) {
                Some(x) => x.1 += 1,
                None => r.labels.push((s.label, 1)),
            }
        }
        // SAFETY: a non-null `held` points into the object's live
        // allocation: its slot is allocated and we hold the table lock
        // (see `Slot`'s `Send` impl).
        if let Some(held) = unsafe { s.held.as_ref() } {
            for (acc, n) in r.held.iter_mut().zip(held.iter()) {
                *acc += u64::from(n.load(Ordering::Relaxed));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_round_trips_and_saturates() {
        let before = retire_grace();
        set_retire_grace(Duration::from_millis(1500));
        assert_eq!(retire_grace(), Duration::from_millis(1500));
        set_retire_grace(before);
    }
}
