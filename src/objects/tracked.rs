//! `Tracked<T>`: a value with a drop hook into its callsite, and the
//! object header every tracked object (a `Tracked<T>` or the shared part of
//! a `TrackedArc<T>`) carries.
//!
//! # The header's label word
//!
//! ```text
//!   bit 15     bit 14    bits 13..0
//!   RETIRED    POLLED    label index (NO_LABEL = 0x3FFF: none, OTHER = 0x3FFE)
//!                        or, when RETIRED, the object's slot in the retired
//!                        table (which keeps the label index)
//! ```
//!
//! An unlabelled object that was never retired nor polled holds exactly
//! `NO_LABEL`, so the drop path tests labels, retirement and polling with
//! the one compare it always did; everything else is behind it, `#[cold]`.

use core::fmt;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU16, Ordering};

use super::cohort::BASE_SHIFT;
use super::labels::NO_LABEL;
use super::scope::{self, Mark};
use super::site::TypeState;
use super::stripe::{self, OVERFLOW};

/// The low bits of a birth stamp that hold the stripe id.
const STRIPE_MASK: u64 = 31;
const _: () = assert!(OVERFLOW as u64 <= STRIPE_MASK);

/// Label-word flag: the object was retired (see `retire.rs`).
pub(crate) const RETIRED: u16 = 0x8000;
/// Label-word flag: the object was polled (a future, stream or async I/O
/// object) and `last_poll` is counted in its site's idle cohorts.
pub(crate) const POLLED: u16 = 0x4000;
/// Label-word payload: a label index or a retired-table slot.
pub(crate) const PAYLOAD: u16 = 0x3FFF;

/// What every tracked object carries: its site, its birth time and stripe,
/// its label word, its leak-check mark and the time it was last polled.
/// 32 bytes on 64-bit targets. Dropping it counts the object as dropped.
pub(crate) struct Header {
    pub(crate) ts: &'static TypeState,
    /// Birth time in ns with the low 5 bits replaced by the stripe the
    /// object was counted in (32 ns of resolution traded for no extra field).
    stamp: u64,
    /// The label word (see the module doc). Atomic only so that `retire`
    /// can flag an object through a shared reference; create, poll and drop
    /// own the header and use plain accesses.
    label: AtomicU16,
    // `Mark`'s fields, flattened so the header packs tightly.
    mark_ix: u16,
    mark_gen: u32,
    /// Last poll time: written by the first poll, which sets `POLLED`;
    /// read only while `POLLED` is set. Left uninitialised at creation, so
    /// creating an object costs no store for it.
    last_poll: MaybeUninit<u64>,
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
            label: AtomicU16::new(label),
            mark_ix: mark.ix,
            mark_gen: mark.gen,
            last_poll: MaybeUninit::uninit(),
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

    /// A new object of the same site and label (clones): not retired, not
    /// polled.
    pub(crate) fn another(&self) -> Self {
        let label = self.label_index();
        if let Some(t) = &self.ts.labels {
            t.inc_index(label);
        }
        Self::with_label(self.ts, label)
    }

    /// The label word, for `retire.rs`.
    pub(crate) fn label_word(&self) -> &AtomicU16 {
        &self.label
    }

    /// The object's label index (`NO_LABEL` when none), looked up in the
    /// retired table if the object is retired.
    pub(crate) fn label_index(&self) -> u16 {
        let word = self.label.load(Ordering::Acquire);
        if word & RETIRED != 0 {
            super::retire::label_of(word & PAYLOAD)
        } else {
            word & PAYLOAD
        }
    }

    /// Birth time in ns (the stamp without its stripe bits).
    pub(crate) fn birth_ns(&self) -> u64 {
        self.stamp & !STRIPE_MASK
    }

    /// Records a poll (futures, streams, async I/O): one clock read, and
    /// the site's idle cohorts are updated only when the poll falls in
    /// another ~1 ms epoch than the last one.
    #[inline]
    pub(crate) fn polled(&mut self) {
        let now = crate::clock::objects::now_ns();
        let word = *self.label.get_mut();
        if let Some(last) = self.last_poll(word) {
            if (last ^ now) >> BASE_SHIFT == 0 {
                return;
            }
        }
        self.repoll(now, word);
    }

    /// The last poll time, if the object was polled (`word` is its label
    /// word).
    #[inline]
    fn last_poll(&self, word: u16) -> Option<u64> {
        if word & POLLED == 0 {
            return None;
        }
        // SAFETY: `POLLED` is set only by `repoll`, right after it wrote
        // `last_poll`, and never cleared while the header lives, so the
        // value is initialised.
        Some(unsafe { self.last_poll.assume_init() })
    }

    #[cold]
    #[inline(never)]
    fn repoll(&mut self, now: u64, word: u16) {
        let idle = self.ts.idle();
        if let Some(last) = self.last_poll(word) {
            idle.dec(last, usize::MAX, false);
        }
        idle.inc(now, usize::MAX);
        self.last_poll = MaybeUninit::new(now);
        *self.label.get_mut() = word | POLLED;
    }

    /// The drop path of objects that are labelled, retired or polled.
    #[cold]
    #[inline(never)]
    fn drop_flagged(&mut self, word: u16) {
        let ts = self.ts;
        if let (Some(last), Some(idle)) = (self.last_poll(word), ts.idle_if_any()) {
            idle.dec(last, usize::MAX, false);
        }
        let label = if word & RETIRED != 0 {
            super::retire::release(word & PAYLOAD)
        } else {
            word & PAYLOAD
        };
        if label != NO_LABEL {
            if let Some(t) = &ts.labels {
                t.dec_index(label);
            }
        }
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
        let word = *self.label.get_mut();
        if word != NO_LABEL {
            self.drop_flagged(word);
        }
        scope::leave_object(Mark {
            ix: self.mark_ix,
            gen: self.mark_gen,
        });
    }
}

pin_project_lite::pin_project! {
    /// A value whose creation and drop are counted at its `track!` callsite.
    ///
    /// Made by [`track!`](crate::track). Derefs to the value; dropping it (or
    /// [`Tracked::into_inner`]) counts the object as dropped and records its
    /// lifetime. `Send`/`Sync` exactly when `T` is, `Unpin` exactly when `T`
    /// is.
    ///
    /// # Size
    ///
    /// `size_of::<Tracked<T>>()` is `size_of::<T>()` plus a 32-byte header
    /// (site pointer, birth time, label word, leak-check mark, last poll),
    /// rounded up to `T`'s alignment.
    ///
    /// # Retiring
    ///
    /// [`Tracked::retire`] says "this object should be gone now": if it is
    /// still live after the grace period
    /// ([`objects::set_retire_grace`](crate::objects::set_retire_grace)), it
    /// is reported as *retained* (see `objects/retire.rs`).
    ///
    /// # Tasks
    ///
    /// A tracked future is a future (`tokio::spawn(track!(fut))`), a tracked
    /// stream a `futures_core::Stream` (feature `futures`), tracked tokio I/O
    /// `AsyncRead`/`AsyncWrite`/`AsyncBufRead` (feature `tokio`). Each poll
    /// records the time, so snapshots show per site how long live tasks have
    /// not been polled ([`ObjectSite::idle`](crate::ObjectSite::idle)).
    ///
    /// # What a wrapper forwards
    ///
    /// So that wrapping an existing value needs no code changes, `Tracked<T>`
    /// implements what `T` implements, where that is sound:
    ///
    /// - `Deref`/`DerefMut`/`AsRef<T>`/`AsMut<T>`, `Debug`, `Display`;
    /// - `PartialEq`, `Eq`, `PartialOrd`, `Ord`, `Hash`: on the value alone
    ///   (two tracked values are equal when their values are, whatever
    ///   their sites or ages);
    /// - `Borrow<T>`/`BorrowMut<T>`: sound because the comparisons and the
    ///   hash above are exactly `T`'s (the contract `Borrow` requires), so
    ///   a `HashSet<Tracked<K>>` can be queried with a `&K` (clippy's
    ///   `mutable_key_type` lint fires on such a set because the header
    ///   holds atomics; they take no part in the comparisons or the hash,
    ///   so the lint can be allowed);
    /// - `Iterator`, `DoubleEndedIterator`, `ExactSizeIterator`,
    ///   `FusedIterator`; `io::Read`, `io::Write`, `io::BufRead`,
    ///   `io::Seek`; `fmt::Write`; `Error` (with `source`);
    /// - `Future`, `Stream`, `AsyncRead`, `AsyncWrite`, `AsyncBufRead`
    ///   (polls are counted, see above); `Clone` (the clone is a new object
    ///   of the same site and label, born now).
    ///
    /// Not forwarded, and why:
    ///
    /// - `Copy`: the header has a drop hook;
    /// - `Default`, `From<T>`: a tracked value needs its callsite, which
    ///   only [`track!`](crate::track) knows;
    /// - `Borrow<U>` for `T: Borrow<U>` (e.g. `Borrow<str>` for a tracked
    ///   `String`): it would overlap with `Borrow<T>`; use `&*tracked`;
    /// - `IntoIterator` by value: consuming the wrapper ends the tracking;
    ///   call [`Tracked::into_inner`] first (`&Tracked<Vec<_>>` iterates
    ///   through `Deref`: `tracked.iter()`);
    /// - `serde::Serialize` and other crates' traits besides those above:
    ///   use `&*tracked`.
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
        #[pin]
        value: T,
        header: Header,
    }
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

    /// Marks this object *retired*: it should be dropped now, for `reason`
    /// (e.g. the code that removed it from its map). If it is still live
    /// after the grace period
    /// ([`objects::retire_grace`](crate::objects::retire_grace), 5 s by
    /// default), snapshots report it as *retained*, with the reason and how
    /// long ago it was retired; a retired object dropped in time is never
    /// reported. Retiring an object twice keeps the first reason and time.
    ///
    /// Costs a lock of the bounded retired table, never the create or drop
    /// of objects that are not retired. When the table is full the object
    /// is not marked and the overflow is counted
    /// ([`objects::retire_overflows`](crate::objects::retire_overflows)).
    ///
    /// # Examples
    ///
    /// ```
    /// let conn = leakscope::track!(String::from("conn 7"));
    /// conn.retire("connection closed");
    /// drop(conn); // in time: never reported
    /// ```
    pub fn retire(&self, reason: &'static str) {
        super::retire::retire(&self.header, reason, None);
    }

    /// The header, for the task impls.
    pub(crate) fn project_header(
        self: core::pin::Pin<&mut Self>,
    ) -> (core::pin::Pin<&mut T>, &mut Header) {
        let this = self.project();
        (this.value, this.header)
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

impl<T> core::borrow::Borrow<T> for Tracked<T> {
    fn borrow(&self) -> &T {
        &self.value
    }
}

impl<T> core::borrow::BorrowMut<T> for Tracked<T> {
    fn borrow_mut(&mut self) -> &mut T {
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

/// Equal when the values are (the header is not compared).
impl<T: PartialEq> PartialEq for Tracked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Tracked<T> {}

impl<T: PartialOrd> PartialOrd for Tracked<T> {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        self.value.partial_cmp(&other.value)
    }
}

impl<T: Ord> Ord for Tracked<T> {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}

/// The value's hash, exactly (so `Borrow<T>` is consistent).
impl<T: core::hash::Hash> core::hash::Hash for Tracked<T> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl<T: Iterator> Iterator for Tracked<T> {
    type Item = T::Item;

    #[inline]
    fn next(&mut self) -> Option<T::Item> {
        self.value.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.value.size_hint()
    }
}

impl<T: DoubleEndedIterator> DoubleEndedIterator for Tracked<T> {
    #[inline]
    fn next_back(&mut self) -> Option<T::Item> {
        self.value.next_back()
    }
}

impl<T: ExactSizeIterator> ExactSizeIterator for Tracked<T> {
    fn len(&self) -> usize {
        self.value.len()
    }
}

impl<T: core::iter::FusedIterator> core::iter::FusedIterator for Tracked<T> {}

impl<T: std::io::Read> std::io::Read for Tracked<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.value.read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<usize> {
        self.value.read_vectored(bufs)
    }

    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        self.value.read_to_end(buf)
    }

    fn read_to_string(&mut self, buf: &mut String) -> std::io::Result<usize> {
        self.value.read_to_string(buf)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.value.read_exact(buf)
    }
}

impl<T: std::io::Write> std::io::Write for Tracked<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.value.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.value.write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.value.flush()
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.value.write_all(buf)
    }
}

impl<T: std::io::BufRead> std::io::BufRead for Tracked<T> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.value.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.value.consume(amt)
    }
}

impl<T: std::io::Seek> std::io::Seek for Tracked<T> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.value.seek(pos)
    }
}

impl<T: fmt::Write> fmt::Write for Tracked<T> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.value.write_str(s)
    }

    fn write_char(&mut self, c: char) -> fmt::Result {
        self.value.write_char(c)
    }
}

impl<T: std::error::Error> std::error::Error for Tracked<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.value.source()
    }
}
