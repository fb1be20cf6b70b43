//! `Tracked<T>`: a value with a drop hook into its callsite.

use core::fmt;
use core::ops::{Deref, DerefMut};

use super::labels::NO_LABEL;
use super::scope::{self, Mark};
use super::site::TypeState;

/// What every tracked object carries: its site, its birth time, its label
/// and its leak-check mark. 24 bytes on 64-bit targets. Dropping it counts
/// the object as dropped.
pub(crate) struct Header {
    pub(crate) ts: &'static TypeState,
    pub(crate) birth_ns: u64,
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
    #[inline]
    pub(crate) fn with_label(ts: &'static TypeState, label: u16) -> Self {
        let birth_ns = super::now_ns();
        ts.cohorts.inc(birth_ns);
        let mark = scope::enter_object(ts);
        Header {
            ts,
            birth_ns,
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
        let now = super::now_ns();
        let ts = self.ts;
        ts.lifetimes
            .record_ns(crate::clock::age_ns(now, self.birth_ns));
        ts.cohorts.dec(self.birth_ns);
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
