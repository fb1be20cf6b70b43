//! `Tracked<T>`: a value with a drop hook into its callsite.

use core::fmt;
use core::ops::{Deref, DerefMut};

use super::labels::NO_LABEL;
use super::scope::{self, Mark};
use super::site::TypeState;
use super::stripe::{self, OVERFLOW};

/// The low bits of a birth stamp that hold the stripe id.
const STRIPE_MASK: u64 = 31;
const _: () = assert!(OVERFLOW as u64 <= STRIPE_MASK);

/// What every tracked object carries: its site, its birth time and stripe,
/// its label and its leak-check mark. 24 bytes on 64-bit targets. Dropping
/// it counts the object as dropped.
pub(crate) struct Header {
    pub(crate) ts: &'static TypeState,
    /// Birth time in ns with the low 5 bits replaced by the stripe the
    /// object was counted in (32 ns of resolution traded for no extra field).
    stamp: u64,
    pub(crate) label: u16,
    // `Mark`'s fields, flattened so the header packs into 24 bytes.
    mark_ix: u16,
    mark_gen: u32,
}

impl Header {
    /// Counts a new object of `ts` (no label yet).
    #[inline]
    pub(crate) fn new(ts: &'static TypeState) -> Self {
        Self::with_label(ts, NO_LABEL)
    }

    /// Counts a new object whose label index was already counted.
    ///
    /// Always inlined, so the header is built in place in the caller's
    /// `Tracked<T>`: returned through a temporary, it was copied with a
    /// 16-byte store that the drop's 8-byte loads of the same fields could
    /// not forward from, and `track!(Box::new(..))` + drop measured 44–50
    /// ns instead of 30 in a standalone loop (25 in `benches/track.rs`,
    /// where the 2-thread case went from 46.6 to 29.1 ns per thread).
    #[inline(always)]
    pub(crate) fn with_label(ts: &'static TypeState, label: u16) -> Self {
        let stripe = stripe::current();
        let stamp = (crate::clock::objects::now_ns() & !STRIPE_MASK) | stripe as u64;
        ts.cohorts.inc(stamp, stripe);
        let mark = scope::enter_object(ts);
        Header {
            ts,
            stamp,
            label,
            mark_ix: mark.ix,
            mark_gen: mark.gen,
        }
    }

    /// Counts a new object with label `value`.
    pub(crate) fn labelled<V: fmt::Display + ?Sized>(ts: &'static TypeState, value: &V) -> Self {
        let label = match &ts.labels {
            Some(t) => t.inc(value),
            None => NO_LABEL,
        };
        Self::with_label(ts, label)
    }

    /// A new object of the same site and label (clones).
    pub(crate) fn another(&self) -> Self {
        if let Some(t) = &self.ts.labels {
            t.inc_index(self.label);
        }
        Self::with_label(self.ts, self.label)
    }
}

impl Drop for Header {
    #[inline]
    fn drop(&mut self) {
        let now = crate::clock::objects::now_ns();
        let ts = self.ts;
        let mine = stripe::current();
        let stripe = (self.stamp & STRIPE_MASK) as usize;
        let birth = self.stamp & !STRIPE_MASK;
        ts.record_lifetime(crate::clock::age_ns(now, birth), mine);
        ts.cohorts.dec(self.stamp, stripe, stripe == mine);
        if self.label != NO_LABEL {
            if let Some(t) = &ts.labels {
                t.dec_index(self.label);
            }
        }
        scope::leave_object(Mark {
            ix: self.mark_ix,
            gen: self.mark_gen,
        });
    }
}

/// A value whose creation and drop are counted at its `track!` callsite.
///
/// Made by [`track!`](crate::track). Derefs to the value; dropping it (or
/// [`Tracked::into_inner`]) counts the object as dropped and records its
/// lifetime. `Send`/`Sync` exactly when `T` is.
///
/// # Size
///
/// `size_of::<Tracked<T>>()` is `size_of::<T>()` plus a 24-byte header (site
/// pointer, birth time, label index and leak-check mark), rounded up to
/// `T`'s alignment.
///
/// # Examples
///
/// ```
/// let mut v = leakscope::track!(vec![1, 2, 3], "numbers");
/// v.push(4);
/// assert_eq!(v.len(), 4);
/// let plain: Vec<i32> = v.into_inner();
/// assert_eq!(plain, [1, 2, 3, 4]);
/// ```
pub struct Tracked<T> {
    value: T,
    header: Header,
}

impl<T> Tracked<T> {
    pub(crate) fn from_parts(value: T, header: Header) -> Self {
        Tracked { value, header }
    }

    /// Ends tracking and returns the value; counted as a drop (with its
    /// lifetime) at the site.
    pub fn into_inner(self) -> T {
        let Tracked { value, header } = self;
        drop(header);
        value
    }
}

impl<T> Deref for Tracked<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Tracked<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T> AsRef<T> for Tracked<T> {
    fn as_ref(&self) -> &T {
        &self.value
    }
}

impl<T> AsMut<T> for Tracked<T> {
    fn as_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Tracked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: fmt::Display> fmt::Display for Tracked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

/// A clone is a new object of the same site (and label), born now.
impl<T: Clone> Clone for Tracked<T> {
    fn clone(&self) -> Self {
        Tracked {
            value: self.value.clone(),
            header: self.header.another(),
        }
    }
}
