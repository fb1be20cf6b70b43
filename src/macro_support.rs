//! Items the `track!` and `track_arc!` macros expand to.
//!
//! **Not a stable API**: anything here may change in any release. Use the
//! macros.

pub use crate::objects::site::{Site, SiteMeta};
pub use crate::objects::{Tracked, TrackedArc};

use crate::objects::Header;
use core::fmt::Display;

/// `track!(value)` and `track!(value, "name")`.
#[inline]
pub fn track<T: 'static>(site: &'static Site, value: T) -> Tracked<T> {
    let ts = site.state::<T>();
    Tracked::from_parts(value, Header::new(ts))
}

/// `track!(value, key = label)`.
#[inline]
pub fn track_labelled<T: 'static, V: Display + ?Sized>(
    site: &'static Site,
    value: T,
    label: &V,
) -> Tracked<T> {
    let ts = site.state::<T>();
    Tracked::from_parts(value, Header::labelled(ts, label))
}

/// `track_arc!(value)` and `track_arc!(value, "name")`.
#[inline]
#[track_caller]
pub fn track_arc<T: 'static>(site: &'static Site, value: T) -> TrackedArc<T> {
    let ts = site.state::<T>();
    TrackedArc::from_parts(value, Header::new(ts))
}

/// `track_arc!(value, key = label)`.
#[inline]
#[track_caller]
pub fn track_arc_labelled<T: 'static, V: Display + ?Sized>(
    site: &'static Site,
    value: T,
    label: &V,
) -> TrackedArc<T> {
    let ts = site.state::<T>();
    TrackedArc::from_parts(value, Header::labelled(ts, label))
}
