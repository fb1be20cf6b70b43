//! Named points in time: [`mark`]`("deploy")` records *now* on leakscope's
//! clock (the time base of sampled allocations' births), so a heap view can
//! be cut at it: [`SnapshotOptions::since`](crate::SnapshotOptions::since)
//! keeps the live memory born at or after a mark,
//! [`SnapshotOptions::until`](crate::SnapshotOptions::until) the live memory
//! born before it, and the debug routes take `?since=deploy` /
//! `?until=deploy` (see [`crate::server`]).
//!
//! # Bounds
//!
//! - At most [`MAX_MARKS`] (64) marks are kept, in a fixed table (no
//!   allocation when marking). Marking a name again moves it to now (it keeps
//!   one time, the latest). Past the cap the oldest mark is dropped and
//!   counted ([`dropped`]).
//! - A name is 1 to [`MAX_NAME_LEN`] (64) bytes of printable ASCII without
//!   spaces (`deploy-42`, `phase:warmup`, `v1.2.3`); anything else is a
//!   [`MarkError`], never a panic.
//!
//! Marks are cheap and are not on the allocation path: [`mark`] allocates
//! nothing; the table's mutex is taken only by [`mark`] and by readers
//! (never by the allocator), and its holders only copy fixed-size slots
//! (no allocation, no other lock while holding it).
//!
//! # Examples
//!
//! ```
//! leakscope::mark("deploy").unwrap();
//! let m = leakscope::marks::get("deploy").unwrap();
//! assert_eq!(m.name, "deploy");
//! assert!(leakscope::mark("two words").is_err());
//! ```

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

/// How many marks are kept at most (the oldest is dropped past it).
pub const MAX_MARKS: usize = 64;

/// The longest mark name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A named point on leakscope's clock.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub struct Mark {
    /// The name given to [`mark`].
    pub name: String,
    /// When it was (last) marked, on leakscope's clock
    /// ([`crate::clock::now_ns`], the time base of allocation births).
    pub at_ns: u64,
}

impl Mark {
    /// How long ago the mark was set, as of `now_ns` (zero if later).
    pub fn age(&self, now_ns: u64) -> Duration {
        Duration::from_nanos(crate::clock::age_ns(now_ns, self.at_ns))
    }

    /// A mark that is not in the table, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(name: &str) -> Mark {
        Mark {
            name: name.to_string(),
            at_ns: 0,
        }
    }
}

/// Why a name cannot be a mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkError {
    msg: String,
}

impl fmt::Display for MarkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for MarkError {}

/// One slot of the fixed table.
#[derive(Clone, Copy)]
struct Slot {
    name: [u8; MAX_NAME_LEN],
    len: u8,
    at_ns: u64,
    /// Insertion order (higher: set later); orders the marks and picks the
    /// oldest to drop.
    seq: u64,
}

const EMPTY: Slot = Slot {
    name: [0; MAX_NAME_LEN],
    len: 0,
    at_ns: 0,
    seq: 0,
};

impl Slot {
    fn name(&self) -> &str {
        // Only validated ASCII is ever stored.
        std::str::from_utf8(&self.name[..usize::from(self.len)]).unwrap_or("")
    }
}

struct Table {
    slots: [Slot; MAX_MARKS],
    next_seq: u64,
    dropped: u64,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    slots: [EMPTY; MAX_MARKS],
    next_seq: 1,
    dropped: 0,
});

fn lock() -> MutexGuard<'static, Table> {
    // Nothing under this lock can panic half-way; a poisoned lock still
    // holds a consistent table.
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

static FORK: crate::alloc::ForkGuard<Table> = crate::alloc::ForkGuard::new();

/// Locks the marks table for a `fork()` (prepare handler; its place in the
/// lock order is in `alloc/fork.rs`).
pub(crate) fn fork_prepare() {
    FORK.hold(&TABLE);
}

/// Unlocks it after the `fork()` (parent and child).
pub(crate) fn fork_release() {
    FORK.release();
}

/// Checks that `name` can be a mark (see the module docs).
///
/// # Errors
///
/// An empty name, one longer than [`MAX_NAME_LEN`] bytes, or one with a
/// character that is not printable ASCII or is a space.
pub fn validate(name: &str) -> Result<(), MarkError> {
    if name.is_empty() {
        return Err(MarkError {
            msg: "a mark name must not be empty".into(),
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(MarkError {
            msg: format!(
                "mark name too long ({} bytes, at most {MAX_NAME_LEN})",
                name.len()
            ),
        });
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(MarkError {
            msg: format!(
                "mark name {name:?} has {c:?}: use printable ASCII without spaces (e.g. deploy-42)"
            ),
        });
    }
    Ok(())
}

/// Records a named point in time, now, on leakscope's clock: a deploy, a
/// test phase, the start of a load test. Marking a name again moves it to
/// now. See the module docs for the bounds.
///
/// # Errors
///
/// A name that [`validate`] refuses; nothing is recorded then.
///
/// Allocates nothing: the name is copied into a fixed slot.
///
/// # Examples
///
/// ```
/// leakscope::mark("warmup-done").unwrap();
/// // later: what was allocated since and is still live
/// let snap = leakscope::snapshot_with(
///     &leakscope::SnapshotOptions::new().since_mark("warmup-done").unwrap(),
/// );
/// assert!(snap.heap.filter.is_some());
/// ```
pub fn mark(name: &str) -> Result<(), MarkError> {
    validate(name)?;
    let at_ns = crate::clock::now_ns();
    let mut t = lock();
    let seq = t.next_seq;
    t.next_seq += 1;
    let k = match t.slots.iter().position(|s| s.len > 0 && s.name() == name) {
        Some(k) => k,
        None => match t.slots.iter().position(|s| s.len == 0) {
            Some(k) => k,
            None => {
                t.dropped += 1;
                // The table is full: every slot is in use, drop the oldest.
                let mut oldest = 0;
                for (k, s) in t.slots.iter().enumerate() {
                    if s.seq < t.slots[oldest].seq {
                        oldest = k;
                    }
                }
                oldest
            }
        },
    };
    let slot = &mut t.slots[k];
    slot.name = [0; MAX_NAME_LEN];
    slot.name[..name.len()].copy_from_slice(name.as_bytes());
    slot.len = name.len() as u8;
    slot.at_ns = at_ns;
    slot.seq = seq;
    Ok(())
}

/// A copy of the slots, set ones first, oldest first, and the drop count:
/// the lock is held for the copy only (it allocates nothing).
fn read() -> ([Slot; MAX_MARKS], u64) {
    let (mut slots, dropped) = {
        let t = lock();
        (t.slots, t.dropped)
    };
    slots.sort_unstable_by_key(|s| (s.len == 0, s.seq));
    (slots, dropped)
}

impl Slot {
    fn to_mark(self) -> Mark {
        Mark {
            name: self.name().to_string(),
            at_ns: self.at_ns,
        }
    }
}

/// The mark called `name`, if it is set.
pub fn get(name: &str) -> Option<Mark> {
    let (slots, _) = read();
    slots
        .iter()
        .find(|s| s.len > 0 && s.name() == name)
        .map(|s| s.to_mark())
}

/// The mark called `name`, or an error naming the marks that are set.
///
/// # Errors
///
/// No mark of that name is set: `unknown mark "x" (marks set: deploy,
/// canary)`.
pub fn find(name: &str) -> Result<Mark, MarkError> {
    if let Some(m) = get(name) {
        return Ok(m);
    }
    let set = marks();
    let shown: String = name.chars().take(MAX_NAME_LEN).collect();
    let msg = if set.is_empty() {
        format!("unknown mark {shown:?} (no mark is set; leakscope::mark(name) sets one)")
    } else {
        let names: Vec<&str> = set.iter().map(|m| m.name.as_str()).collect();
        format!("unknown mark {shown:?} (marks set: {})", names.join(", "))
    };
    Err(MarkError { msg })
}

/// Every mark, oldest first (by when it was last set).
pub fn marks() -> Vec<Mark> {
    let (slots, _) = read();
    slots
        .iter()
        .take_while(|s| s.len > 0)
        .map(|s| s.to_mark())
        .collect()
}

/// Marks dropped because the table was full (the oldest goes first).
pub fn dropped() -> u64 {
    read().1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate("deploy-42").is_ok());
        assert!(validate("phase:warmup/v1.2").is_ok());
        assert!(validate("").is_err());
        assert!(validate("two words").is_err());
        assert!(validate("tab\t").is_err());
        assert!(validate("é").is_err());
        assert!(validate(&"a".repeat(MAX_NAME_LEN)).is_ok());
        let e = validate(&"a".repeat(MAX_NAME_LEN + 1)).unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
    }

    // The only test in this binary touching the table: it checks the whole
    // life of the table (re-marking, the cap, the drop count) at once.
    #[test]
    fn remark_moves_and_cap_drops_the_oldest() {
        mark("unit-a").unwrap();
        mark("unit-b").unwrap();
        let (a, b) = (get("unit-a").unwrap(), get("unit-b").unwrap());
        assert!(b.at_ns >= a.at_ns);
        mark("unit-a").unwrap();
        let a2 = get("unit-a").unwrap();
        assert!(a2.at_ns >= b.at_ns);
        let names: Vec<String> = marks().into_iter().map(|m| m.name).collect();
        let (ia, ib) = (
            names.iter().position(|n| n == "unit-a").unwrap(),
            names.iter().position(|n| n == "unit-b").unwrap(),
        );
        assert!(ib < ia, "re-marked unit-a moves after unit-b: {names:?}");
        assert_eq!(names.iter().filter(|n| *n == "unit-a").count(), 1);

        let before = dropped();
        let have = marks().len();
        for i in 0..MAX_MARKS {
            mark(&format!("unit-fill-{i}")).unwrap();
        }
        assert_eq!(marks().len(), MAX_MARKS);
        assert_eq!(
            dropped() - before,
            have as u64,
            "one dropped per mark that was set"
        );
        // unit-b was the oldest: gone first.
        assert!(get("unit-b").is_none());
        assert!(get(&format!("unit-fill-{}", MAX_MARKS - 1)).is_some());
    }
}
