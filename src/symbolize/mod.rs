//! leakscope's own symbolizer: instruction addresses to function, file and
//! line, with state that belongs to leakscope alone and a memory bound.
//!
//! # Why not `backtrace::resolve`
//!
//! `backtrace::resolve` keeps its parsed debug info in a process-global
//! cache shared with every other user of the `backtrace` crate in the
//! program (error-reporting crates, `anyhow`/`eyre` backtraces…). Blocks
//! that the application's resolves allocated and leakscope's resolves
//! evicted were freed under leakscope's re-entrancy guard (so booked as
//! metadata, while the user's totals and live samples kept them for ever:
//! a false leak in `addr2line`/`gimli`), and the other way round; and that
//! cache has no memory bound. Here every allocation is made and freed by
//! leakscope, under its guard, and what is held is bounded.
//!
//! # What it does
//!
//! Per loaded object (the executable and each shared library, listed with
//! `dl_iterate_phdr` and re-listed when glibc's load/unload counters move),
//! on the first address inside it: map the file read-only, follow a
//! separate debug file if there is one (see `elf.rs`), and build an
//! `addr2line::Context`. That reads every compilation unit's header,
//! abbreviations and address ranges, but a unit's functions and line table
//! are parsed only when an address falls inside it: resolving N new
//! addresses costs the units they touch, not the whole binary. Frames come
//! out innermost inlined first, names demangled as `backtrace`'s `{:#}`
//! prints them (`rustc-demangle`, no hash): the same function, file and
//! line as `backtrace::resolve` for the same address (tested below on the
//! test binary's own code and on libc). An address in no object, or in an
//! object that cannot be read or parsed, gives one frame named by its hex
//! address (counted in [`SymbolizerStats::unknown`] and
//! [`SymbolizerStats::load_failures`]). Nothing here panics on bad input:
//! every parse error is a fallback.
//!
//! Results are cached per address, so a later snapshot of known addresses
//! parses nothing.
//!
//! # Memory
//!
//! [`SymbolizerStats::held_bytes`] is what the symbolizer holds on the heap,
//! kept under the budget ([`DEFAULT_BUDGET`], [`set_budget`]). It is the sum
//! of:
//!
//! - the address cache: exact up to the allocator's rounding (table
//!   capacity × slot size, plus each entry's `Vec` and `String`
//!   capacities);
//! - the module list, decompressed debug sections and symbol-table indexes:
//!   exact in the same sense;
//! - `addr2line`'s parsed state, which it does not report: **estimated**
//!   from the DWARF input it read (`elf::estimate`): for every unit when
//!   the context is built (abbreviations, address ranges, line program
//!   headers: from `.debug_abbrev` and `.debug_aranges` sizes and the unit
//!   count), and for each unit an address fell in (its functions and line
//!   table: from its `.debug_info` length and line program length). The
//!   constants come from measuring the heap (glibc `mallinfo2`) around each
//!   step on this crate's test binary; the `measure` test prints estimate
//!   and measurement side by side. Debug build: context 10.1 MiB measured
//!   vs 16.2 estimated, after 1000 addresses 27.7 vs 33.6 (+21%). Release
//!   build (`debug = 1`, line tables only): context 17.1 vs 12.8, after
//!   1000 addresses 29.7 vs 22.6 (-24%). So expect the estimate within about
//!   25% of the truth either way, and set the budget with that margin.
//!   Not counted at all: units parsed for an address that
//!   none of them turned out to cover, and inlined functions' details
//!   parsed from units other than the one holding the address (cross-unit
//!   inlining under LTO).
//!
//! The file mappings are not heap and are not counted in `held_bytes`:
//! they are clean, file-backed pages that the kernel can drop at any time,
//! resident only where read ([`SymbolizerStats::mapped_bytes`] reports
//! their size). They are unmapped with their object.
//!
//! Why an estimate and not a measurement at run time: the only heap counter
//! leakscope has (`metadata_bytes`) is process-wide, so a delta taken around
//! a parse also counts every other thread's metadata; a per-thread "bytes
//! allocated under the guard" counter would make this exact and belongs to
//! `alloc`.
//!
//! Over the budget, after each newly resolved address: first the address
//! cache is dropped if it alone holds more than half the budget, then whole
//! objects are dropped, least recently used first (the one just used
//! last), then the address cache. A later address in a dropped object maps
//! and parses it again. So the bound holds between addresses; while one
//! address is being resolved, the object it needs is held whole even if it
//! alone exceeds the budget (it is dropped right after, and an object that
//! big is then parsed again for every new address in it: correct, slow,
//! and visible in [`SymbolizerStats::evictions`]). The transient output of
//! a call is not counted.
//!
//! # Locking, the guard, `fork()`
//!
//! One mutex holds the whole state; it is taken on the snapshot path only,
//! never by the allocator. The fork protocol (`alloc/fork.rs`) takes it
//! before `fork()`, as "the symbol cache", and releases it in the parent
//! and the child, so a child never inherits it locked, and no thread is
//! inside `dl_iterate_phdr` for the symbolizer (it lists modules only under
//! the mutex) when the process forks. The child keeps the state (consistent: nobody was inside it) and
//! its mappings.
//!
//! Every public function enters leakscope's re-entrancy guard itself, so all
//! of the symbolizer's memory is allocated and freed as leakscope metadata.
//! What [`resolve`] and [`resolve_many`] return is allocated after that
//! guard is released, in the caller's own guard state: the caller frees it
//! in the same state it holds when calling.

mod elf;
mod modules;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::alloc::guard::Guard;

use self::elf::Object;
use self::modules::Module;

/// One frame of a symbolized address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sym {
    /// Demangled function name (without the Rust hash), `??` when the debug
    /// info has a frame without a name, or the address in hex (`0x…`) when
    /// nothing is known about it.
    pub(crate) function: String,
    /// Source file, as the debug info gives it.
    pub(crate) file: Option<String>,
    /// Source line.
    pub(crate) line: Option<u32>,
}

impl Sym {
    fn unknown(pc: usize) -> Sym {
        Sym {
            function: format!("{pc:#x}"),
            file: None,
            line: None,
        }
    }

    fn heap_bytes(&self) -> usize {
        self.function.capacity() + self.file.as_ref().map_or(0, String::capacity)
    }
}

/// The default bound on [`SymbolizerStats::held_bytes`].
pub(crate) const DEFAULT_BUDGET: usize = 64 << 20;

/// What the symbolizer holds and has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SymbolizerStats {
    /// Heap bytes held (address cache, parsed objects): see the module docs
    /// for what is exact and what is estimated.
    pub(crate) held_bytes: u64,
    /// The bound `held_bytes` is kept under.
    pub(crate) budget_bytes: u64,
    /// Bytes of object and debug files mapped read-only (not heap).
    pub(crate) mapped_bytes: u64,
    /// Loaded objects known (executable and shared libraries).
    pub(crate) objects: u64,
    /// Objects parsed and held now.
    pub(crate) contexts: u64,
    /// Addresses in the cache.
    pub(crate) cached_addrs: u64,
    /// Addresses symbolized (cache misses).
    pub(crate) resolved: u64,
    /// Addresses answered from the cache.
    pub(crate) cache_hits: u64,
    /// Addresses that got the hex fallback (in no object, or nothing known).
    pub(crate) unknown: u64,
    /// Objects that could not be opened or parsed.
    pub(crate) load_failures: u64,
    /// Objects parsed (first time or again after an eviction).
    pub(crate) loads: u64,
    /// Parsed objects dropped to stay under the budget.
    pub(crate) evictions: u64,
    /// Times the address cache was dropped to stay under the budget.
    pub(crate) cache_clears: u64,
    /// Time spent symbolizing cache misses, nanoseconds.
    pub(crate) resolve_ns: u64,
    /// Calls that looked addresses up (batches, whatever their size).
    pub(crate) batches: u64,
}

/// A loaded object and, once an address in it was asked for, its parse.
struct Entry {
    module: Module,
    state: ObjState,
}

enum ObjState {
    Unloaded,
    Failed,
    Loaded { obj: Box<Object>, last_used: u64 },
}

/// The symbolizer's whole state (one per process, in [`STATE`]; tests make
/// their own).
pub(crate) struct Symbolizer {
    budget: usize,
    entries: Vec<Entry>,
    /// glibc's load/unload counters when `entries` was listed.
    listed: Option<(u64, u64)>,
    /// Symbols per address, shared (`Arc`) with the callers that keep
    /// them: `alloc/stack.rs` caches a stack's symbols per stack id.
    cache: HashMap<usize, Arc<[Sym]>>,
    /// Heap bytes of the cache entries' contents (not the table itself).
    cache_entry_bytes: usize,
    tick: u64,
    stats: SymbolizerStats,
}

impl Symbolizer {
    fn new(budget: usize) -> Symbolizer {
        Symbolizer {
            budget,
            entries: Vec::new(),
            listed: None,
            cache: HashMap::new(),
            cache_entry_bytes: 0,
            tick: 0,
            stats: SymbolizerStats::default(),
        }
    }

    fn cache_bytes(&self) -> usize {
        let slot = core::mem::size_of::<(usize, Arc<[Sym]>)>() + 1;
        self.cache.capacity() * slot + self.cache_entry_bytes
    }

    fn held_bytes(&self) -> usize {
        let entries: usize = self
            .entries
            .iter()
            .map(|e| {
                e.module.heap_bytes()
                    + match &e.state {
                        ObjState::Loaded { obj, .. } => obj.held_bytes(),
                        _ => 0,
                    }
            })
            .sum();
        core::mem::size_of::<Self>() + entries + self.cache_bytes()
    }

    fn stats(&self) -> SymbolizerStats {
        let loaded = || {
            self.entries.iter().filter_map(|e| match &e.state {
                ObjState::Loaded { obj, .. } => Some(obj),
                _ => None,
            })
        };
        SymbolizerStats {
            held_bytes: self.held_bytes() as u64,
            budget_bytes: self.budget as u64,
            mapped_bytes: loaded().map(|o| o.mapped_bytes() as u64).sum(),
            objects: self.entries.len() as u64,
            contexts: loaded().count() as u64,
            cached_addrs: self.cache.len() as u64,
            ..self.stats
        }
    }

    /// Lists the loaded objects again if the loader's counters moved (or on
    /// first use). Parsed objects still loaded at the same place are kept;
    /// if any object went away, the address cache is dropped (its addresses
    /// may now belong to something else).
    fn refresh_modules(&mut self) {
        let now = modules::loader_counters();
        if !self.entries.is_empty() && (now.is_none() || now == self.listed) {
            return;
        }
        let mut old = std::mem::take(&mut self.entries);
        let mut new: Vec<Entry> = modules::list()
            .into_iter()
            .map(|module| {
                let state = match old.iter().position(|e| e.module == module) {
                    Some(i) => old.swap_remove(i).state,
                    None => ObjState::Unloaded,
                };
                Entry { module, state }
            })
            .collect();
        new.shrink_to_fit();
        if !old.is_empty() {
            self.drop_cache();
        }
        self.entries = new;
        self.listed = now;
    }

    fn drop_cache(&mut self) {
        self.cache = HashMap::new();
        self.cache_entry_bytes = 0;
    }

    /// Symbolizes `pcs`, in order, from the cache or afresh.
    fn resolve_batch(&mut self, pcs: &[usize]) -> Vec<Arc<[Sym]>> {
        self.refresh_modules();
        self.stats.batches += 1;
        let mut out: Vec<Option<Arc<[Sym]>>> = vec![None; pcs.len()];
        // In address order, so that each object is parsed at most once per
        // batch even when the budget only fits one.
        let mut order: Vec<usize> = (0..pcs.len()).collect();
        order.sort_unstable_by_key(|&i| pcs[i]);
        for i in order {
            let pc = pcs[i];
            if let Some(syms) = self.cache.get(&pc) {
                self.stats.cache_hits += 1;
                out[i] = Some(syms.clone());
                continue;
            }
            let t = Instant::now();
            let syms: Arc<[Sym]> = self.resolve_uncached(pc).into();
            self.stats.resolved += 1;
            self.cache_entry_bytes += 2 * core::mem::size_of::<usize>()
                + core::mem::size_of::<Sym>() * syms.len()
                + syms.iter().map(Sym::heap_bytes).sum::<usize>();
            self.cache.insert(pc, Arc::clone(&syms));
            out[i] = Some(syms);
            self.enforce_budget();
            self.stats.resolve_ns += t.elapsed().as_nanos() as u64;
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Arc::from(Vec::new())))
            .collect()
    }

    fn resolve_uncached(&mut self, pc: usize) -> Vec<Sym> {
        self.tick += 1;
        let tick = self.tick;
        let Some(e) = self.entries.iter_mut().find(|e| e.module.contains(pc)) else {
            self.stats.unknown += 1;
            return vec![Sym::unknown(pc)];
        };
        if matches!(e.state, ObjState::Unloaded) {
            e.state = match Object::load(&e.module.path) {
                Some(obj) => {
                    self.stats.loads += 1;
                    ObjState::Loaded {
                        obj: Box::new(obj),
                        last_used: tick,
                    }
                }
                None => {
                    self.stats.load_failures += 1;
                    ObjState::Failed
                }
            };
        }
        let ObjState::Loaded { obj, last_used } = &mut e.state else {
            self.stats.unknown += 1;
            return vec![Sym::unknown(pc)];
        };
        *last_used = tick;
        let svma = pc.wrapping_sub(e.module.bias) as u64;
        let mut syms: Vec<Sym> = obj
            .find(svma)
            .into_iter()
            .map(|f| Sym {
                function: f.name.as_deref().map_or_else(|| "??".to_owned(), demangle),
                file: f.file,
                line: f.line,
            })
            .collect();
        if syms.is_empty() {
            self.stats.unknown += 1;
            syms.push(Sym::unknown(pc));
        }
        syms.shrink_to_fit();
        syms
    }

    /// Drops cached state until [`Symbolizer::held_bytes`] is within the
    /// budget (see the module docs for the order).
    fn enforce_budget(&mut self) {
        if self.held_bytes() <= self.budget {
            return;
        }
        if self.cache_bytes() > self.budget / 2 {
            self.drop_cache();
            self.stats.cache_clears += 1;
        }
        while self.held_bytes() > self.budget {
            let lru = self
                .entries
                .iter_mut()
                .filter_map(|e| match e.state {
                    ObjState::Loaded { last_used, .. } => Some((last_used, e)),
                    _ => None,
                })
                .min_by_key(|(t, _)| *t);
            match lru {
                Some((_, e)) => {
                    e.state = ObjState::Unloaded;
                    self.stats.evictions += 1;
                }
                None => break,
            }
        }
        if self.held_bytes() > self.budget && !self.cache.is_empty() {
            self.drop_cache();
            self.stats.cache_clears += 1;
        }
    }

    fn set_budget(&mut self, bytes: usize) {
        self.budget = bytes;
        self.enforce_budget();
    }
}

/// A symbol name as `backtrace` prints it with `{:#}`: Rust names (legacy
/// and v0 mangling) demangled without the hash, others as they are (invalid
/// UTF-8 replaced).
fn demangle(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => match rustc_demangle::try_demangle(s) {
            Ok(d) => format!("{d:#}"),
            Err(_) => s.to_owned(),
        },
        Err(_) => String::from_utf8_lossy(raw).into_owned(),
    }
}

/// The process's symbolizer behind its mutex (`None` until first used).
pub(crate) type State = Option<Symbolizer>;

static STATE: Mutex<State> = Mutex::new(None);

/// Locks the symbolizer. Never panics: a poisoned lock is used as is. Also
/// taken by the forking thread across `fork()` (`alloc/fork.rs`, through
/// `alloc/stack.rs`), before the sample tables.
pub(crate) fn lock() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The last [`SymbolizerStats`] published (held bytes, budget,
/// evictions), readable without the mutex, which a first-time parse can
/// hold for a long time: see [`published`].
static PUBLISHED: [AtomicU64; 3] = [
    AtomicU64::new(0),
    AtomicU64::new(DEFAULT_BUDGET as u64),
    AtomicU64::new(0),
];

/// Runs `f` on the process's symbolizer, under the guard and the mutex.
/// The caller must hold a [`Guard`] (everything `f` allocates or frees is
/// leakscope metadata).
fn with_state<R>(f: impl FnOnce(&mut Symbolizer) -> R) -> R {
    let mut st = lock();
    run(&mut st, f)
}

fn run<R>(st: &mut State, f: impl FnOnce(&mut Symbolizer) -> R) -> R {
    let s = st.get_or_insert_with(|| Symbolizer::new(DEFAULT_BUDGET));
    let r = f(s);
    let now = s.stats();
    PUBLISHED[0].store(now.held_bytes, Ordering::Relaxed);
    PUBLISHED[1].store(now.budget_bytes, Ordering::Relaxed);
    PUBLISHED[2].store(now.evictions, Ordering::Relaxed);
    r
}

/// `(held_bytes, budget_bytes, evictions)` as of the end of the last call
/// into the symbolizer: three relaxed loads, never waits for the mutex.
pub(crate) fn published() -> (u64, u64, u64) {
    (
        PUBLISHED[0].load(Ordering::Relaxed),
        PUBLISHED[1].load(Ordering::Relaxed),
        PUBLISHED[2].load(Ordering::Relaxed),
    )
}

/// Symbolizes one instruction address (a return address minus one):
/// innermost inlined frame first; an unknown address gives one frame named
/// by the address in hex.
pub(crate) fn resolve(pc: usize) -> Vec<Sym> {
    resolve_many(&[pc]).pop().unwrap_or_default()
}

/// Symbolizes many addresses taking the lock once: one `Vec` per address,
/// in order, as [`resolve`] gives them.
pub(crate) fn resolve_many(pcs: &[usize]) -> Vec<Vec<Sym>> {
    let g = Guard::enter();
    let guarded = with_state(|s| s.resolve_batch(pcs));
    drop(g);
    // Copied out in the caller's guard state (see the module docs).
    let out = guarded.iter().map(|s| s.to_vec()).collect();
    let g = Guard::enter();
    drop(guarded);
    drop(g);
    out
}

/// Like [`resolve_many`], sharing the cached symbols (no copy): for a
/// caller that keeps them as leakscope metadata. Must be called under the
/// re-entrancy [`Guard`] (the `Arc`s are released under it too). With
/// `wait == false`, `None` without waiting if another thread holds the
/// symbolizer (a first-time parse can take tens of milliseconds; a caller
/// that must not stall answers without it).
pub(crate) fn resolve_shared(pcs: &[usize], wait: bool) -> Option<Vec<Arc<[Sym]>>> {
    debug_assert!(crate::alloc::guard::is_entered());
    let _g = Guard::enter();
    let mut st = if wait {
        lock()
    } else {
        match STATE.try_lock() {
            Ok(st) => st,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    };
    Some(run(&mut st, |s| s.resolve_batch(pcs)))
}

/// What the symbolizer holds and has done.
pub(crate) fn stats() -> SymbolizerStats {
    let _g = Guard::enter();
    let st = lock();
    st.as_ref().map_or(
        SymbolizerStats {
            budget_bytes: DEFAULT_BUDGET as u64,
            ..SymbolizerStats::default()
        },
        Symbolizer::stats,
    )
}

/// Sets the bound on held bytes, dropping what exceeds it at once.
pub(crate) fn set_budget(bytes: usize) {
    let _g = Guard::enter();
    with_state(|s| s.set_budget(bytes));
}

/// Drops everything the symbolizer holds (parsed objects, cached
/// addresses); its counters stay.
pub(crate) fn clear() {
    let _g = Guard::enter();
    let mut st = lock();
    if let Some(s) = st.as_mut() {
        for e in &mut s.entries {
            e.state = ObjState::Unloaded;
        }
        s.drop_cache();
    }
}

#[cfg(test)]
mod tests;
