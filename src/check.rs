//! [`LeakCheck`]: fail a test when tracked objects it created are still
//! live.
//!
//! # How it tells its objects from everyone else's
//!
//! `LeakCheck::new()` claims a scope and makes it the current thread's
//! active check (a thread-local). Every `track!`/`track_arc!` object created
//! on that thread from then on is counted in the scope, per site, and
//! uncounted when dropped, on whatever thread. Objects of other threads,
//! and so of other tests running in parallel under cargo's test runner, are
//! never counted: they cannot fail this check, and this check cannot fail
//! theirs.
//!
//! A `TrackedArc` created under the check keeps counting while *any* handle
//! to it lives, so a clone forgotten in a thread the test spawned is
//! caught. Objects *created* on a spawned thread are counted only if that
//! thread enters the check: `let _in = handle.enter();` with a
//! [`LeakCheckHandle`] from [`LeakCheck::handle`].
//!
//! # Examples
//!
//! ```
//! let check = leakscope::LeakCheck::new();
//! let ctx = leakscope::track_arc!(vec![0u8; 16], "ctx");
//! let timer = ctx.clone();
//! drop(ctx);
//! drop(timer);
//! check.assert_no_leaks();
//! ```
//!
//! A leak panics with a report:
//!
//! ```should_panic
//! let check = leakscope::LeakCheck::new();
//! std::mem::forget(leakscope::track!(String::from("leaked")));
//! check.assert_no_leaks(); // panics: 1 live String at ...
//! ```

use core::any::TypeId;
use core::fmt::Write as _;
use core::marker::PhantomData;
use core::time::Duration;

use crate::format::fmt_duration;
use crate::objects::scope::{Entered, Scope};

/// A leak check for tests: tracked objects created on this thread after
/// [`LeakCheck::new`] that are still live make
/// [`assert_no_leaks`](LeakCheck::assert_no_leaks) panic with a report.
///
/// Checks nest (objects count toward the innermost one) and stay active
/// until dropped. A `LeakCheck` is bound to its thread (`!Send`).
#[derive(Debug)]
pub struct LeakCheck {
    scope: Scope,
    started_ns: u64,
    _not_send: PhantomData<*const ()>,
}

impl LeakCheck {
    /// Starts a check on this thread.
    ///
    /// # Panics
    ///
    /// If 128 checks are already active at once in the process.
    #[allow(clippy::new_without_default)]
    #[track_caller]
    pub fn new() -> Self {
        let started_ns = crate::clock::objects::read_now_ns();
        match Scope::begin() {
            Ok(scope) => LeakCheck {
                scope,
                started_ns,
                _not_send: PhantomData,
            },
            Err(_) => panic!("leakscope: more than 128 LeakChecks active at once"),
        }
    }

    /// A handle that lets other threads (ones the test spawns) count the
    /// objects they create in this check: call [`LeakCheckHandle::enter`]
    /// there.
    ///
    /// # Examples
    ///
    /// ```should_panic
    /// let check = leakscope::LeakCheck::new();
    /// let handle = check.handle();
    /// std::thread::spawn(move || {
    ///     let _in = handle.enter();
    ///     std::mem::forget(leakscope::track!(1u8, "worker"));
    /// })
    /// .join()
    /// .unwrap();
    /// check.assert_no_leaks(); // panics: the worker's object leaked
    /// ```
    pub fn handle(&self) -> LeakCheckHandle {
        let (slot_ix, gen) = self.scope.id();
        LeakCheckHandle { slot_ix, gen }
    }

    /// Number of tracked objects created under this check that are still
    /// live.
    pub fn live(&self) -> u64 {
        self.scope.live().iter().map(|e| e.1).sum()
    }

    /// Panics with a report if any tracked object created under this check
    /// is still live.
    ///
    /// # Panics
    ///
    /// When objects leaked: the message lists sites, counts, ages and
    /// holders.
    #[track_caller]
    pub fn assert_no_leaks(&self) {
        if let Some(report) = self.report(None) {
            panic!("{report}");
        }
    }

    /// Like [`assert_no_leaks`](LeakCheck::assert_no_leaks), for objects of
    /// type `T` only.
    ///
    /// # Panics
    ///
    /// When objects of type `T` leaked.
    #[track_caller]
    pub fn assert_no_leaks_of<T: 'static>(&self) {
        if let Some(report) = self.report(Some(TypeId::of::<T>())) {
            panic!("{report}");
        }
    }

    /// The leak report, or `None` when nothing (of type `only`) leaked.
    fn report(&self, only: Option<TypeId>) -> Option<String> {
        let now = crate::clock::objects::read_now_ns();
        let leaks: Vec<_> = self
            .scope
            .live()
            .into_iter()
            .filter(|(ts, _)| match (only, ts) {
                (None, _) => true,
                (Some(id), Some(ts)) => ts.type_id == id,
                // Overflow entries have no type: report them only when all
                // types are asked for.
                (Some(_), None) => false,
            })
            .collect();
        if leaks.is_empty() {
            return None;
        }
        let total: u64 = leaks.iter().map(|l| l.1).sum();
        let within = fmt_duration(Duration::from_nanos(now.saturating_sub(self.started_ns)));
        let mut out = format!(
            "leakscope: {total} tracked object(s) created under this LeakCheck are still live (check started {within} ago)\n"
        );
        // Sites with retained objects (retired, still live after the grace
        // period: certainly a leak) first.
        let mut leaks: Vec<_> = leaks
            .into_iter()
            .map(|(ts, n)| {
                let site = ts.map(|ts| crate::objects::read_site(ts, now).0);
                (ts, n, site)
            })
            .collect();
        leaks.sort_by_key(|l| core::cmp::Reverse(l.2.as_ref().map_or(0, |s| s.retained)));
        for (ts, n, site) in leaks {
            let (Some(_), Some(site)) = (ts, site) else {
                let _ = writeln!(
                    out,
                    "  {n} live object(s) at sites beyond the check's 32-site table"
                );
                continue;
            };
            let name = site
                .name
                .as_deref()
                .map(|n| format!(" \"{n}\""))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {n} live {}{} created at {}:{}:{} (site total: {} live, {} created, {} dropped{})",
                site.type_name,
                name,
                site.file,
                site.line,
                site.column,
                site.live,
                site.created,
                site.dropped,
                site.oldest_age
                    .map(|a| format!(", oldest {}", fmt_duration(a)))
                    .unwrap_or_default(),
            );
            if site.retained > 0 {
                let _ = writeln!(
                    out,
                    "      RETAINED: {} object(s) of this site were retired more than {} ago and are still live",
                    site.retained,
                    fmt_duration(crate::objects::retire_grace()),
                );
                for r in site.retained_reasons.iter().take(5) {
                    let _ = writeln!(out, "        {r}");
                }
                for h in site.retained_holders.iter().take(5) {
                    let _ = writeln!(out, "        {h}");
                }
            }
            for l in site.labels.iter().take(5) {
                let _ = writeln!(out, "      {l}");
            }
            for h in site.holders.iter().take(8) {
                let _ = writeln!(out, "      {h}");
            }
        }
        Some(out)
    }
}

/// Lets another thread count its new objects in a [`LeakCheck`]; made by
/// [`LeakCheck::handle`]. `Send`, `Sync` and `Copy`.
///
/// A handle that outlives its check is harmless: objects created under it
/// are then not counted anywhere.
#[derive(Clone, Copy, Debug)]
pub struct LeakCheckHandle {
    slot_ix: usize,
    gen: u32,
}

impl LeakCheckHandle {
    /// Makes the check active on the current thread until the guard drops
    /// (then the thread's previous check, if any, is active again).
    pub fn enter(&self) -> LeakCheckGuard {
        LeakCheckGuard {
            _entered: Entered::enter(self.slot_ix, self.gen),
            _not_send: PhantomData,
        }
    }
}

/// Keeps a [`LeakCheck`] active on this thread; see
/// [`LeakCheckHandle::enter`].
#[derive(Debug)]
#[must_use = "the check is active on this thread only while the guard lives"]
pub struct LeakCheckGuard {
    _entered: Entered,
    _not_send: PhantomData<*const ()>,
}
