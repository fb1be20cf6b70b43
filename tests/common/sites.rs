//! Finding tracked-object sites in snapshots, shared by the `track_*` tests
//! (each of which includes this file with `#[path = "common/sites.rs"]`).
#![allow(dead_code)]

use leakscope::{ObjectSite, Snapshot};

/// The first site named `name` (`track!(v, "name")`) in a fresh snapshot.
pub fn site(name: &str) -> ObjectSite {
    sites(|o| o.name.as_deref() == Some(name))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no site named {name}"))
}

/// The sites for which `pred` holds, in a fresh snapshot.
pub fn sites(pred: impl Fn(&ObjectSite) -> bool) -> Vec<ObjectSite> {
    leakscope::snapshot()
        .objects
        .into_iter()
        .filter(|o| pred(o))
        .collect()
}

/// The first site named `name` in `snap`.
pub fn named<'a>(snap: &'a Snapshot, name: &str) -> &'a ObjectSite {
    snap.objects
        .iter()
        .find(|o| o.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no site named {name}"))
}
