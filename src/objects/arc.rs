//! `TrackedArc<T>`: a shared handle like `Arc<T>` whose handles remember
//! where they were created, cloned or upgraded (their *holder*).

use core::fmt;
use core::ops::Deref;
use core::panic::Location;
use core::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use super::holders::{HolderRec, MAX_HOLDERS};
use super::retire::Held;
use super::tracked::Header;

/// The allocation all handles of one object share: the object.
struct ArcInner<T> {
    value: T,
    // Dropped after `value` when the last strong handle goes: counts the
    // object's drop (and frees its retired slot, if any, before the
    // allocation, with `held`, is freed).
    header: Header,
    /// Live handles per holder record of the site (see `retire.rs`).
    held: Held,
}

/// A shared, tracked handle, like [`Arc`]. Made by
/// [`track_arc!`](crate::track_arc).
///
/// The object (the value) is counted at its `track_arc!` site like a
/// [`Tracked`](crate::Tracked) value: created when made, dropped when the
/// last handle goes. Each *handle* also counts at its holder location: the
/// `track_arc!` call for the first one, the caller of
/// [`clone`](Clone::clone) or [`TrackedWeak::upgrade`] for the others
/// (`#[track_caller]`). Snapshots list live handles per holder with the
/// oldest handle's age: "4920 live, held at src/timer.rs:31 for up to 16h".
///
/// # Size
///
/// A handle is 24 bytes (an `Arc` pointer, its holder record, its birth
/// time); the shared allocation holds `T` plus the 32-byte object header
/// and 68 bytes of per-holder handle counts (what lists the holders of a
/// retired object's remaining handles). A clone costs an `Arc` clone plus
/// one clock read, one holder-table probe, one CAS and one add on the
/// object; a handle drop one CAS and one add more than an `Arc` drop.
///
/// # Retiring
///
/// [`TrackedArc::retire`] gives up a handle and says the object should be
/// gone now: if any handle still holds it after the grace period
/// ([`objects::set_retire_grace`](crate::objects::set_retire_grace)),
/// snapshots report it as *retained*, with the holders of the remaining
/// handles.
///
/// # Examples
///
/// ```
/// let a = leakscope::track_arc!(String::from("ctx"), "request");
/// let b = a.clone(); // b's holder is this line
/// assert_eq!(*b, "ctx");
/// assert_eq!(leakscope::TrackedArc::strong_count(&a), 2);
/// ```
pub struct TrackedArc<T> {
    inner: Arc<ArcInner<T>>,
    holder: &'static HolderRec,
    since_ns: u64,
}

/// A weak handle to a [`TrackedArc`]'s object: does not keep it live and is
/// not a holder. Made by [`TrackedArc::downgrade`].
pub struct TrackedWeak<T> {
    inner: Weak<ArcInner<T>>,
}

#[inline]
fn hold(header: &Header, loc: &'static Location<'static>) -> (&'static HolderRec, u64) {
    let holder = match &header.ts.holders {
        Some(t) => t.get(loc),
        None => unreachable_holders(),
    };
    let now = crate::clock::objects::now_ns();
    holder.cohorts.inc(now, usize::MAX);
    (holder, now)
}

#[cold]
fn unreachable_holders() -> &'static HolderRec {
    // `track_arc!` sites always have a holder table; a record for the
    // impossible case keeps this path panic-free.
    static NONE: std::sync::OnceLock<&'static HolderRec> = std::sync::OnceLock::new();
    NONE.get_or_init(|| {
        Box::leak(Box::new(HolderRec {
            loc: None,
            ix: MAX_HOLDERS,
            cohorts: super::cohort::Cohorts::new(),
        }))
    })
}

impl<T> TrackedArc<T> {
    #[track_caller]
    pub(crate) fn from_parts(value: T, header: Header) -> Self {
        let (holder, since_ns) = hold(&header, Location::caller());
        let held: Held = [const { AtomicU32::new(0) }; MAX_HOLDERS + 1];
        held[holder.ix].store(1, Ordering::Relaxed);
        TrackedArc {
            inner: Arc::new(ArcInner {
                value,
                header,
                held,
            }),
            holder,
            since_ns,
        }
    }

    /// Gives up this handle and marks the object *retired* for `reason`:
    /// it should be dropped now (e.g. the request it served finished). If
    /// other handles still keep it after the grace period
    /// ([`objects::retire_grace`](crate::objects::retire_grace), 5 s by
    /// default), snapshots report it as *retained*, with the reason, how
    /// long ago it was retired, its label values and where the remaining
    /// handles were created or cloned. Dropped in time, it is never
    /// reported. Retiring an object again keeps the first reason and time.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = leakscope::track_arc!(String::from("ctx"), "request");
    /// let timer = ctx.clone();
    /// leakscope::TrackedArc::retire(ctx, "request finished");
    /// drop(timer); // in time: never reported
    /// ```
    pub fn retire(this: Self, reason: &'static str) {
        super::retire::retire(&this.inner.header, reason, Some(&this.inner.held));
        drop(this);
    }

    /// Live strong handles to this object.
    pub fn strong_count(this: &Self) -> usize {
        Arc::strong_count(&this.inner)
    }

    /// Whether two handles point to the same object.
    pub fn ptr_eq(this: &Self, other: &Self) -> bool {
        Arc::ptr_eq(&this.inner, &other.inner)
    }

    /// A weak handle to the object (not a holder).
    pub fn downgrade(this: &Self) -> TrackedWeak<T> {
        TrackedWeak {
            inner: Arc::downgrade(&this.inner),
        }
    }
}

impl<T> TrackedWeak<T> {
    /// A strong handle if the object is still live; its holder is the
    /// caller.
    #[track_caller]
    pub fn upgrade(&self) -> Option<TrackedArc<T>> {
        let inner = self.inner.upgrade()?;
        let (holder, since_ns) = hold(&inner.header, Location::caller());
        inner.held[holder.ix].fetch_add(1, Ordering::Relaxed);
        Some(TrackedArc {
            inner,
            holder,
            since_ns,
        })
    }
}

impl<T> Clone for TrackedWeak<T> {
    fn clone(&self) -> Self {
        TrackedWeak {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for TrackedWeak<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(TrackedWeak)")
    }
}

impl<T> Clone for TrackedArc<T> {
    /// A new handle to the same object, held at the caller.
    #[track_caller]
    fn clone(&self) -> Self {
        let (holder, since_ns) = hold(&self.inner.header, Location::caller());
        self.inner.held[holder.ix].fetch_add(1, Ordering::Relaxed);
        TrackedArc {
            inner: Arc::clone(&self.inner),
            holder,
            since_ns,
        }
    }
}

impl<T> Drop for TrackedArc<T> {
    #[inline]
    fn drop(&mut self) {
        self.holder.cohorts.dec(self.since_ns, usize::MAX, false);
        self.inner.held[self.holder.ix].fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T> Deref for TrackedArc<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.inner.value
    }
}

impl<T> AsRef<T> for TrackedArc<T> {
    fn as_ref(&self) -> &T {
        &self.inner.value
    }
}

impl<T: fmt::Debug> fmt::Debug for TrackedArc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.value.fmt(f)
    }
}

impl<T: fmt::Display> fmt::Display for TrackedArc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.value.fmt(f)
    }
}
