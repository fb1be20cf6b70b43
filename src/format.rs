//! Formatting for humans, shared by every output (the text report, the
//! Prometheus labels, pprof labels, `/debug/leaks`), so that the same frame
//! or duration reads the same everywhere.
//!
//! The bottom layer: it depends on nothing else in the crate.

use core::time::Duration;

/// Formats a duration for humans: `850ns`, `12µs`, `3.4ms`, `2.5s`, `4m10s`,
/// `16h40m`, `3d4h`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let s = d.as_secs();
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        trim(format!("{:.1}", ns as f64 / 1e3)) + "µs"
    } else if ns < 1_000_000_000 {
        trim(format!("{:.1}", ns as f64 / 1e6)) + "ms"
    } else if s < 60 {
        trim(format!("{:.1}", d.as_secs_f64())) + "s"
    } else if s < 3600 {
        two_units(s / 60, "m", s % 60, "s")
    } else if s < 86_400 {
        two_units(s / 3600, "h", (s % 3600) / 60, "m")
    } else {
        two_units(s / 86_400, "d", (s % 86_400) / 3600, "h")
    }
}

/// `4m10s`, or `4m` when the smaller unit is zero.
fn two_units(big: u64, big_unit: &str, small: u64, small_unit: &str) -> String {
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit}{small}{small_unit}")
    }
}

fn trim(s: String) -> String {
    match s.strip_suffix(".0") {
        Some(t) => t.to_string(),
        None => s,
    }
}

/// Formats a byte count for humans with binary units: `512 B`, `1.5 KiB`, `1.9 GiB`.
pub(crate) fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Shortens a source path for people: `crate-1.2.3/src/...` for registry and
/// git-checkout crates, `library/...` for the toolchain's sources, relative
/// to the working directory when under it.
/// Anything else is returned whole. Snapshots keep full paths; every output
/// that shortens uses this one function, so `/metrics` and `/debug/leaks`
/// name a frame the same way.
pub(crate) fn short_path(path: &str) -> &str {
    const REGISTRY: &str = "/registry/src/";
    const GIT: &str = "/git/checkouts/";
    if let Some(i) = path.find(REGISTRY) {
        // Skip the index directory (`index.crates.io-<hash>/`).
        let rest = &path[i + REGISTRY.len()..];
        return rest.split_once('/').map(|(_, r)| r).unwrap_or(rest);
    }
    if let Some(i) = path.find(GIT) {
        // `<name>-<hash>/<rev>/...`: the first directory names the crate.
        return &path[i + GIT.len()..];
    }
    if let Some(rest) = path.strip_prefix("/rustc/") {
        // `/rustc/<commit>/library/...`
        return rest.split_once('/').map(|(_, r)| r).unwrap_or(rest);
    }
    // Read each time, not cached: a cache would be an allocation that lives
    // for ever in whatever context first formatted a path (the user's heap,
    // when the user prints a report).
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(rest) = cwd
            .to_str()
            .and_then(|c| path.strip_prefix(c.trim_end_matches('/')))
        {
            if rest.starts_with('/') {
                return rest.trim_start_matches('/');
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(Duration::from_nanos(850)), "850ns");
        assert_eq!(fmt_duration(Duration::from_micros(12)), "12µs");
        assert_eq!(fmt_duration(Duration::from_micros(3400)), "3.4ms");
        assert_eq!(fmt_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(fmt_duration(Duration::from_secs(250)), "4m10s");
        assert_eq!(fmt_duration(Duration::from_secs(240)), "4m");
        assert_eq!(fmt_duration(Duration::from_secs(60_000)), "16h40m");
        assert_eq!(fmt_duration(Duration::from_secs(3 * 86_400)), "3d");
        assert_eq!(fmt_duration(Duration::from_secs(3 * 86_400 + 7200)), "3d2h");
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(2 * 1024 * 1024 * 1024), "2.0 GiB");
    }

    #[test]
    fn paths_are_shortened_one_way() {
        assert_eq!(
            short_path("/rustc/59807616e1fa/library/alloc/src/vec/mod.rs"),
            "library/alloc/src/vec/mod.rs"
        );
        assert_eq!(
            short_path("/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/lib.rs"),
            "tokio-1.54.1/src/lib.rs"
        );
        assert_eq!(
            short_path("/home/u/.cargo/git/checkouts/h2-0123abcd/4f1e2d3/src/proto.rs"),
            "h2-0123abcd/4f1e2d3/src/proto.rs"
        );
        let here = std::env::current_dir().unwrap().join("src/x.rs");
        assert_eq!(short_path(&here.to_string_lossy()), "src/x.rs");
        assert_eq!(short_path("relative/y.rs"), "relative/y.rs");
        assert_eq!(short_path("src/x.rs"), "src/x.rs");
    }

    #[test]
    fn a_sibling_directory_is_not_under_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        let sibling = format!("{}-other/src/x.rs", cwd.to_string_lossy());
        assert_eq!(short_path(&sibling), sibling);
    }
}
