//! Time windows over the live heap: which live sampled allocations a
//! filtered view keeps, by age (`min_age`, `max_age`) and by birth relative
//! to [marks](crate::marks) (`since`, `until`), and the one sentence every
//! output prints to say it is filtered ([`HeapFilter`]'s `Display`).
//!
//! A live sample born at `birth` (its age `now - birth`) is kept when all of
//! the bounds given hold:
//!
//! | bound | keeps |
//! |-------|-------|
//! | `min_age` | age ≥ `min_age` (the leak view) |
//! | `max_age` | age ≤ `max_age` |
//! | `since` mark | born at or after the mark |
//! | `until` mark | born before the mark |
//!
//! Ages and marks can be mixed: the window is their intersection. The
//! window applies to the heap's live samples only; tracked objects
//! (`track!`) keep live-age histograms, not per-object births, and are
//! never filtered (the statement says so).

use std::fmt;
use std::time::Duration;

use crate::format::{fmt_bytes, fmt_duration};
use crate::marks::Mark;
use crate::snapshot::HeapFilter;

/// The bounds of a window (see the module docs); all `None`: no filter.
/// It borrows the options' marks: building one allocates nothing (a
/// snapshot's own work must not show in the heap it reads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Window<'a> {
    pub(crate) min_age: Option<Duration>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) since: Option<&'a Mark>,
    pub(crate) until: Option<&'a Mark>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Window<'_> {
    /// Whether any bound is set.
    pub(crate) fn is_some(&self) -> bool {
        self.min_age.is_some()
            || self.max_age.is_some()
            || self.since.is_some()
            || self.until.is_some()
    }

    /// Whether a live sample born at `birth` (age `age`) is in the window.
    #[inline]
    pub(crate) fn keeps(&self, birth: u64, age: u64) -> bool {
        self.min_age.is_none_or(|m| age >= ns(m))
            && self.max_age.is_none_or(|m| age <= ns(m))
            && self.since.is_none_or(|m| birth >= m.at_ns)
            && self.until.is_none_or(|m| birth < m.at_ns)
    }

    /// The window as bounds on age, as of `now`: (youngest, oldest) kept,
    /// each `None` when unbounded on that side. Marks count as ages (an
    /// `until` mark keeps ages above its own, a `since` mark ages up to its
    /// own).
    pub(crate) fn age_bounds(&self, now: u64) -> (Option<Duration>, Option<Duration>) {
        let mark_age = |m: &Mark| m.age(now);
        let youngest = match (self.min_age, self.until.map(mark_age)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let oldest = match (self.max_age, self.since.map(mark_age)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (youngest, oldest)
    }

    /// Refuses self-contradictory bounds: `min_age > max_age`, or a `since`
    /// mark later than the `until` mark.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let (Some(min), Some(max)) = (self.min_age, self.max_age) {
            if min > max {
                return Err(format!(
                    "min_age ({}) is more than max_age ({}): the window [now - max_age, now - min_age] is empty",
                    fmt_duration(min),
                    fmt_duration(max)
                ));
            }
        }
        if let (Some(s), Some(u)) = (self.since, self.until) {
            if s.at_ns > u.at_ns {
                return Err(format!(
                    "since={} was marked after until={}: the window is empty",
                    s.name, u.name
                ));
            }
        }
        Ok(())
    }

    /// A [`HeapFilter`] for this window as of `now`, its kept and total
    /// counts zero (the reader fills them).
    pub(crate) fn filter(&self, now: u64) -> HeapFilter {
        let (youngest, oldest) = self.age_bounds(now);
        HeapFilter {
            min_age: self.min_age,
            max_age: self.max_age,
            since: self.since.cloned(),
            until: self.until.cloned(),
            youngest,
            oldest,
            ..HeapFilter::default()
        }
    }
}

impl HeapFilter {
    /// The window alone, without what it kept: `heap born 10m–1h ago
    /// (min_age=10m max_age=1h)`.
    pub(crate) fn window_text(&self) -> String {
        let mut out = String::from("heap born ");
        match (self.youngest, self.oldest) {
            (Some(y), Some(o)) if y > o => {
                out += &format!(
                    "{}–{} ago (an empty window)",
                    fmt_duration(y),
                    fmt_duration(o)
                );
            }
            (Some(y), Some(o)) => out += &format!("{}–{} ago", fmt_duration(y), fmt_duration(o)),
            (Some(y), None) => out += &format!("at least {} ago", fmt_duration(y)),
            (None, Some(o)) => out += &format!("at most {} ago", fmt_duration(o)),
            (None, None) => out += "at any time",
        }
        let mut params = Vec::new();
        if let Some(a) = self.min_age {
            params.push(format!("min_age={}", fmt_duration(a)));
        }
        if let Some(a) = self.max_age {
            params.push(format!("max_age={}", fmt_duration(a)));
        }
        if let Some(m) = &self.since {
            params.push(format!("since={}", m.name));
        }
        if let Some(m) = &self.until {
            params.push(format!("until={}", m.name));
        }
        out += &format!(" ({})", params.join(" "));
        out
    }
}

impl fmt::Display for HeapFilter {
    /// `heap born 10m–1h ago (min_age=10m max_age=1h): 48.0 MiB of 80.0 MiB
    /// sampled live kept (60%), 1200 of 3000 live samples; tracked objects
    /// are not filtered`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.window_text())?;
        write!(
            f,
            "{} of {} sampled live kept",
            fmt_bytes(self.kept_bytes),
            fmt_bytes(self.total_bytes)
        )?;
        if self.total_bytes > 0 {
            let pct = self.kept_bytes as f64 * 100.0 / self.total_bytes as f64;
            write!(f, " ({pct:.0}%)")?;
        }
        write!(
            f,
            ", {} of {} live samples; tracked objects are not filtered",
            self.kept_samples, self.total_samples
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000_000_000;

    fn m(name: &str, at_ns: u64) -> Mark {
        let mut mk = crate::marks::Mark::for_tests(name);
        mk.at_ns = at_ns;
        mk
    }

    #[test]
    fn keeps_the_intersection() {
        let now = 100 * MIN;
        let w = Window {
            min_age: Some(Duration::from_secs(600)),
            max_age: Some(Duration::from_secs(3600)),
            ..Window::default()
        };
        let at = |age_min: u64| (now - age_min * MIN, age_min * MIN);
        for (age, want) in [(5, false), (10, true), (30, true), (60, true), (61, false)] {
            let (b, a) = at(age);
            assert_eq!(w.keeps(b, a), want, "age {age}m");
        }
        let (deploy, canary) = (m("deploy", now - 20 * MIN), m("canary", now - 10 * MIN));
        let w = Window {
            since: Some(&deploy),
            until: Some(&canary),
            ..Window::default()
        };
        for (age, want) in [(25, false), (20, true), (15, true), (10, false), (5, false)] {
            let (b, a) = at(age);
            assert_eq!(w.keeps(b, a), want, "age {age}m");
        }
        assert_eq!(
            w.age_bounds(now),
            (
                Some(Duration::from_secs(600)),
                Some(Duration::from_secs(1200))
            )
        );
        assert!(Window::default().keeps(0, u64::MAX));
    }

    #[test]
    fn contradictions_are_refused() {
        let w = Window {
            min_age: Some(Duration::from_secs(3600)),
            max_age: Some(Duration::from_secs(600)),
            ..Window::default()
        };
        let e = w.check().unwrap_err();
        assert!(
            e.starts_with("min_age (1h) is more than max_age (10m)"),
            "{e}"
        );
        let (late, early) = (m("late", 2), m("early", 1));
        let w = Window {
            since: Some(&late),
            until: Some(&early),
            ..Window::default()
        };
        let e = w.check().unwrap_err();
        assert!(e.contains("since=late was marked after until=early"), "{e}");
    }

    #[test]
    fn statement_names_the_filter_and_what_it_kept() {
        let now = 100 * MIN;
        let mut f = Window {
            min_age: Some(Duration::from_secs(600)),
            max_age: Some(Duration::from_secs(3600)),
            ..Window::default()
        }
        .filter(now);
        f.kept_bytes = 48 << 20;
        f.total_bytes = 80 << 20;
        f.kept_samples = 1200;
        f.total_samples = 3000;
        assert_eq!(
            f.to_string(),
            "heap born 10m–1h ago (min_age=10m max_age=1h): 48.0 MiB of 80.0 MiB sampled live kept (60%), 1200 of 3000 live samples; tracked objects are not filtered"
        );
        let deploy = m("deploy", now - 20 * MIN);
        let f = Window {
            since: Some(&deploy),
            ..Window::default()
        }
        .filter(now);
        assert!(
            f.to_string()
                .starts_with("heap born at most 20m ago (since=deploy): 0 B of 0 B"),
            "{f}"
        );
    }
}
