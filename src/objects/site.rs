//! Callsites: one `static Site` per `track!`/`track_arc!` call, and one
//! [`TypeState`] per (site, tracked type), registered on first use.
//!
//! # Registration
//!
//! ```text
//!   Site.head ──► TypeState(T2) ──next_in_site──► TypeState(T1) ──► null
//!   REGISTRY  ──► TypeState(..) ──next_global──► ... (every site, every type)
//! ```
//!
//! The hot path ([`Site::state`]) is one `Acquire` load of `head` (a plain
//! load on x86-64) and a `TypeId` compare; a generic function's callsite
//! walks its short chain. A miss goes to the `#[cold]` [`Site::register`]:
//! it builds a `TypeState`, pushes it on the site's chain with a CAS (a
//! losing thread re-scans the chain, and uses and frees nothing but its own
//! unpublished box if the winner registered the same type), then pushes it
//! on the global list with a CAS loop. Nobody ever waits for another thread.
//! `TypeState`s are leaked on purpose: they live as long as the program,
//! one per (callsite, type) that ran, about 26 KiB each (plus the label and
//! holder tables of sites that use them).

use core::any::TypeId;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use super::cohort::Cohorts;
use super::history::History;
use super::holders::HolderTable;
use super::labels::LabelTable;
use super::stripe::OWNED;
use crate::histogram::{AtomicHistogram, Histogram};

/// What a callsite knows at compile time.
#[derive(Debug)]
pub struct SiteMeta {
    pub(crate) file: &'static str,
    pub(crate) line: u32,
    pub(crate) column: u32,
    pub(crate) module_path: &'static str,
    pub(crate) name: Option<&'static str>,
    pub(crate) label_key: Option<&'static str>,
    /// A `track_arc!` site: its handles have holders.
    pub(crate) arc: bool,
}

impl SiteMeta {
    /// Builds the metadata of one callsite.
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        file: &'static str,
        line: u32,
        column: u32,
        module_path: &'static str,
        name: Option<&'static str>,
        label_key: Option<&'static str>,
        arc: bool,
    ) -> Self {
        SiteMeta {
            file,
            line,
            column,
            module_path,
            name,
            label_key,
            arc,
        }
    }
}

/// One `track!`/`track_arc!` callsite; lives in a `static` the macro
/// expands to.
#[derive(Debug)]
pub struct Site {
    pub(crate) meta: SiteMeta,
    head: AtomicPtr<TypeState>,
}

impl Site {
    /// A site not yet registered.
    pub const fn new(meta: SiteMeta) -> Self {
        Site {
            meta,
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The state of this site for `T`, registering it on first use.
    #[inline]
    pub(crate) fn state<T: 'static>(&'static self) -> &'static TypeState {
        let id = TypeId::of::<T>();
        let mut p = self.head.load(Ordering::Acquire);
        // SAFETY: every non-null pointer in a site chain comes from
        // `Box::into_raw` in `register` and is never freed once published
        // (the Acquire load pairs with the publishing Release CAS).
        while let Some(ts) = unsafe { p.as_ref() } {
            if ts.type_id == id {
                return ts;
            }
            p = ts.next_in_site.load(Ordering::Acquire);
        }
        self.register::<T>()
    }

    #[cold]
    #[inline(never)]
    fn register<T: 'static>(&'static self) -> &'static TypeState {
        let id = TypeId::of::<T>();
        let fresh = Box::into_raw(Box::new(TypeState::new(
            self,
            id,
            core::any::type_name::<T>(),
        )));
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let mut p = head;
            // SAFETY: as in `state`: published chain pointers are leaked boxes.
            while let Some(ts) = unsafe { p.as_ref() } {
                if ts.type_id == id {
                    // SAFETY: `fresh` came from `Box::into_raw` above and was
                    // never published, so we own it alone.
                    drop(unsafe { Box::from_raw(fresh) });
                    return ts;
                }
                p = ts.next_in_site.load(Ordering::Acquire);
            }
            // SAFETY: `fresh` is ours until the CAS below publishes it.
            unsafe { &*fresh }
                .next_in_site
                .store(head, Ordering::Relaxed);
            match self
                .head
                .compare_exchange(head, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        // SAFETY: `fresh` is now published and never freed.
        let ts: &'static TypeState = unsafe { &*fresh };
        let mut g = REGISTRY.load(Ordering::Acquire);
        loop {
            ts.next_global.store(g, Ordering::Relaxed);
            match REGISTRY.compare_exchange_weak(g, fresh, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => g = now,
            }
        }
        ts
    }
}

/// Every registered `TypeState`, newest first.
static REGISTRY: AtomicPtr<TypeState> = AtomicPtr::new(ptr::null_mut());

/// Iterates every registered (site, type) state.
pub(crate) fn registered() -> impl Iterator<Item = &'static TypeState> {
    let mut p = REGISTRY.load(Ordering::Acquire);
    core::iter::from_fn(move || {
        // SAFETY: registry pointers are leaked boxes, published with Release.
        let ts: &'static TypeState = unsafe { p.as_ref() }?;
        p = ts.next_global.load(Ordering::Acquire);
        Some(ts)
    })
}

/// The per-(callsite, type) record: counters, histograms, tables.
pub(crate) struct TypeState {
    pub(crate) site: &'static Site,
    pub(crate) type_id: TypeId,
    pub(crate) type_name: &'static str,
    next_in_site: AtomicPtr<TypeState>,
    next_global: AtomicPtr<TypeState>,
    /// Live objects by birth time (level 0 striped per thread).
    pub(crate) cohorts: Cohorts<OWNED>,
    /// Lifetimes of dropped objects, one histogram per owned stripe plus
    /// the overflow stripe's (last); their total count is the exact `dropped`.
    lifetimes: [StripeHistogram; OWNED + 1],
    /// Per-label-value live counts (sites with a label key only).
    pub(crate) labels: Option<LabelTable>,
    /// Live handles by holder location (`track_arc!` sites only).
    pub(crate) holders: Option<HolderTable>,
    /// Observations for growth detection, updated by snapshots only.
    pub(crate) history: Mutex<History>,
    /// Polled live objects (tasks) by last poll time; allocated at the
    /// site's first poll (see `tasks.rs`).
    idle: OnceLock<Box<Cohorts<0>>>,
    /// Objects of this site ever retired (see `retire.rs`).
    pub(crate) retired: AtomicU64,
}

impl TypeState {
    fn new(site: &'static Site, type_id: TypeId, type_name: &'static str) -> Self {
        TypeState {
            site,
            type_id,
            type_name,
            next_in_site: AtomicPtr::new(ptr::null_mut()),
            next_global: AtomicPtr::new(ptr::null_mut()),
            cohorts: Cohorts::new(),
            lifetimes: [const { StripeHistogram(AtomicHistogram::new()) }; OWNED + 1],
            labels: site
                .meta
                .label_key
                .map(|_| LabelTable::new(super::max_label_values())),
            holders: site.meta.arc.then(HolderTable::new),
            history: Mutex::new(History::new()),
            idle: OnceLock::new(),
            retired: AtomicU64::new(0),
        }
    }
}

impl TypeState {
    /// Records a dropped object's lifetime in the histogram of `mine`, the
    /// calling thread's stripe ([`stripe::current`](super::stripe::current)):
    /// plain stores in an owned stripe, atomic adds in the overflow stripe's.
    #[inline]
    pub(crate) fn record_lifetime(&self, ns: u64, mine: usize) {
        match self.lifetimes.get(mine) {
            Some(h) if mine < OWNED => h.0.record_ns_exclusive(ns),
            _ => self.record_overflow(ns),
        }
    }

    #[inline(never)]
    fn record_overflow(&self, ns: u64) {
        self.lifetimes[OWNED].0.record_ns(ns);
    }

    /// The idle cohorts of polled live objects, allocated on first use.
    pub(crate) fn idle(&self) -> &Cohorts<0> {
        self.idle.get_or_init(|| Box::new(Cohorts::new()))
    }

    /// The idle cohorts, if any object of this site was ever polled.
    pub(crate) fn idle_if_any(&self) -> Option<&Cohorts<0>> {
        self.idle.get().map(|b| &**b)
    }

    /// All stripes' lifetimes, merged.
    pub(crate) fn lifetimes(&self) -> Histogram {
        let mut h = Histogram::empty();
        for s in &self.lifetimes {
            h.merge(&s.0.load());
        }
        h
    }
}

/// A lifetime histogram on its own cache lines.
#[repr(align(64))]
struct StripeHistogram(AtomicHistogram);

impl core::fmt::Debug for TypeState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TypeState")
            .field("type_name", &self.type_name)
            .field("file", &self.site.meta.file)
            .field("line", &self.site.meta.line)
            .finish_non_exhaustive()
    }
}
