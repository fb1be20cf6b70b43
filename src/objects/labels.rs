//! Live objects per label value (`track!(v, caller = x)`), at most a
//! configured number of distinct values per site; the rest count as `other`.
//!
//! # Layout
//!
//! A fixed open-addressed table of `cap` entries, allocated when the site
//! registers. A value is formatted with `Display` into a 64-byte stack
//! buffer (longer values are cut at 64 bytes, on a char boundary), hashed
//! (FNV-1a), and looked up from `hash % cap` with linear probing.
//!
//! ```text
//!   entry state: EMPTY ──CAS──► WRITING ──(bytes, hash written)──► READY
//! ```
//!
//! A reader that meets a `WRITING` entry does not wait: it probes on. So
//! two threads inserting the same new value at once may claim two entries;
//! the snapshot merges entries with equal values, so counts stay exact.
//! When every entry is taken by other values the object counts as `other`
//! (still counted, never lost).

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};

/// The most bytes of a label value kept.
pub(crate) const MAX_VALUE_LEN: usize = 64;
/// Label index stored in objects without a label. Label indices use the
/// low 14 bits of the header's label word; the top two are flags (see
/// `tracked.rs`), so `NO_LABEL` is the only value without a flag or a
/// counted label, and the drop path tests it with one compare.
pub(crate) const NO_LABEL: u16 = 0x3FFF;
/// Label index of the `other` bucket.
pub(crate) const OTHER: u16 = 0x3FFE;
const _: () = assert!(super::MAX_LABEL_VALUES_LIMIT < OTHER as usize);

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

struct Entry {
    state: AtomicU8,
    hash: AtomicU64,
    len: AtomicU8,
    bytes: UnsafeCell<[u8; MAX_VALUE_LEN]>,
    live: AtomicI64,
}

// SAFETY: `bytes` is written only by the one thread that won the
// EMPTY -> WRITING CAS, before it stores READY with Release; it is read only
// after an Acquire load saw READY, and never written again.
unsafe impl Sync for Entry {}

// Unwind safety: `bytes` is the only state outside atomics. It is written
// once, by a write that cannot panic, before READY is published, and only
// read after READY: a caught panic can never expose a half-written value.
// Without this, `UnsafeCell` would make every `TypeState` and so every
// `Tracked<T>`/`TrackedArc<T>` `!UnwindSafe`, whatever `T` is.
impl core::panic::RefUnwindSafe for Entry {}

/// The per-site label table.
pub(crate) struct LabelTable {
    entries: Box<[Entry]>,
    other: AtomicI64,
}

struct Buf {
    bytes: [u8; MAX_VALUE_LEN],
    len: usize,
}

impl Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            let n = ch.len_utf8();
            if self.len + n > MAX_VALUE_LEN {
                return Err(fmt::Error); // full: stop formatting
            }
            ch.encode_utf8(&mut self.bytes[self.len..]);
            self.len += n;
        }
        Ok(())
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl LabelTable {
    pub(crate) fn new(cap: usize) -> Self {
        let entries = (0..cap)
            .map(|_| Entry {
                state: AtomicU8::new(EMPTY),
                hash: AtomicU64::new(0),
                len: AtomicU8::new(0),
                bytes: UnsafeCell::new([0; MAX_VALUE_LEN]),
                live: AtomicI64::new(0),
            })
            .collect();
        LabelTable {
            entries,
            other: AtomicI64::new(0),
        }
    }

    /// Counts one live object with label `value`; returns its index.
    pub(crate) fn inc<V: fmt::Display + ?Sized>(&self, value: &V) -> u16 {
        let mut buf = Buf {
            bytes: [0; MAX_VALUE_LEN],
            len: 0,
        };
        // A too-long value stops with fmt::Error: keep the prefix written.
        let _ = write!(buf, "{value}");
        let key = &buf.bytes[..buf.len];
        let idx = self.find_or_insert(key);
        self.inc_index(idx);
        idx
    }

    /// Counts one more live object on an existing index (clones).
    pub(crate) fn inc_index(&self, idx: u16) {
        if let Some(c) = self.counter(idx) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Uncounts one live object.
    pub(crate) fn dec_index(&self, idx: u16) {
        if let Some(c) = self.counter(idx) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn counter(&self, idx: u16) -> Option<&AtomicI64> {
        match idx {
            NO_LABEL => None,
            OTHER => Some(&self.other),
            i => self.entries.get(usize::from(i)).map(|e| &e.live),
        }
    }

    fn find_or_insert(&self, key: &[u8]) -> u16 {
        let n = self.entries.len();
        if n == 0 {
            return OTHER;
        }
        let hash = fnv1a(key);
        let start = (hash % n as u64) as usize;
        for k in 0..n {
            let i = (start + k) % n;
            let e = &self.entries[i];
            let state = e.state.load(Ordering::Acquire);
            let hit =
                state == READY && e.hash.load(Ordering::Relaxed) == hash && Self::bytes(e) == key;
            if hit {
                return i as u16;
            }
            // EMPTY: try to claim it. WRITING: never wait, probe on. A lost
            // claim race may hide our own value for now: probing on is fine
            // (duplicates are merged by `read`).
            let claimed = state == EMPTY
                && e.state
                    .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok();
            if claimed {
                // SAFETY: we won EMPTY -> WRITING, so we are the only
                // writer, and no reader looks before READY.
                let dst: &mut [u8; MAX_VALUE_LEN] = unsafe { &mut *e.bytes.get() };
                dst[..key.len()].copy_from_slice(key);
                e.len.store(key.len() as u8, Ordering::Relaxed);
                e.hash.store(hash, Ordering::Relaxed);
                e.state.store(READY, Ordering::Release);
                return i as u16;
            }
        }
        OTHER
    }

    fn bytes(e: &Entry) -> &[u8] {
        let len = usize::from(e.len.load(Ordering::Relaxed));
        // SAFETY: called only after an Acquire load saw READY; the bytes are
        // immutable from then on.
        let all = unsafe { &*e.bytes.get() };
        &all[..len.min(MAX_VALUE_LEN)]
    }

    /// The value of label index `idx` (`other` for the overflow bucket),
    /// `None` for `NO_LABEL` or an index not in use.
    pub(crate) fn value_of(&self, idx: u16) -> Option<String> {
        if idx == OTHER {
            return Some("other".to_string());
        }
        let e = self.entries.get(usize::from(idx))?;
        (e.state.load(Ordering::Acquire) == READY)
            .then(|| String::from_utf8_lossy(Self::bytes(e)).into_owned())
    }

    /// `(value, live)` for every value with a non-zero count, merged by
    /// value, then `other` last as `("other", live)` when non-zero.
    pub(crate) fn read(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for e in self.entries.iter() {
            if e.state.load(Ordering::Acquire) != READY {
                continue;
            }
            let live = e.live.load(Ordering::Relaxed).max(0) as u64;
            let v = String::from_utf8_lossy(Self::bytes(e)).into_owned();
            match out.iter_mut().find(|(k, _)| *k == v) {
                Some(slot) => slot.1 += live,
                None => out.push((v, live)),
            }
        }
        out.retain(|(_, n)| *n > 0);
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let other = self.other.load(Ordering::Relaxed).max(0) as u64;
        if other > 0 {
            out.push(("other".to_string(), other));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_the_cap_go_to_other() {
        let t = LabelTable::new(2);
        let a = t.inc("a");
        let b = t.inc(&7);
        let c = t.inc("c");
        assert_eq!(c, OTHER);
        assert_eq!(t.inc("a"), a);
        t.dec_index(b);
        let r = t.read();
        assert_eq!(r, vec![("a".into(), 2), ("other".into(), 1)]);
    }

    #[test]
    fn long_values_are_cut() {
        let t = LabelTable::new(4);
        let long = "é".repeat(100);
        t.inc(long.as_str());
        let r = t.read();
        assert_eq!(r[0].0, "é".repeat(32));
    }
}
