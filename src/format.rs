//! Formatting for humans, shared by every output (the text report, the
//! Prometheus labels, pprof labels, `/debug/leaks`), so that the same frame
//! or duration reads the same everywhere.
//!
//! The bottom layer: it depends on nothing else in the crate. Also where
//! a frame's crate is told ([`origin`]), for the report's crate lines.

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

/// Where a frame's code comes from, by crate (see [`origin`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The toolchain's libraries: `std`, `core`, `alloc` (and the crates
    /// std is built from, such as its `hashbrown`).
    Toolchain(String),
    /// A dependency: a crate under the cargo registry or a git checkout.
    Dependency(String),
    /// The application: source outside the registry and the toolchain,
    /// named by its function's first path segment.
    App(String),
    /// Nothing to go by (no file, no function path).
    Unknown,
}

impl Origin {
    /// The crate's name (`??` when unknown).
    pub(crate) fn name(&self) -> &str {
        match self {
            Origin::Toolchain(n) | Origin::Dependency(n) | Origin::App(n) => n,
            Origin::Unknown => "??",
        }
    }

    /// `regex`, `the application's` style owner for sentences.
    pub(crate) fn owner(&self) -> String {
        match self {
            Origin::App(_) => "the application's".to_string(),
            o => format!("{}'s", o.name()),
        }
    }
}

/// The crate a frame belongs to. From its source file when the path says
/// (`…/registry/src/<index>/<crate>-<version>/`, `…/git/checkouts/<crate>-<hash>/`,
/// `/rustc/<commit>/library/<std|core|alloc|…>/`, `/rust/deps/<crate>-<version>/`
/// and `/cargo/registry/…` for the crates std itself is built from), else
/// from the function's path (its first segment; `<T as Trait>::f` and
/// `<Type>::f` are looked into). A frame with a source file outside those
/// trees is the application's (the main binary's or a path dependency's:
/// both are the user's code); with neither a file nor a function path the
/// origin is unknown. Without debug info (no files), frames are told by
/// their function path alone, so the application's crate reads as a
/// dependency.
pub(crate) fn origin(function: &str, file: Option<&str>) -> Origin {
    // leakscope's own allocator code inlined into the allocating function
    // can lend that function's frame its file (`src/alloc/path.rs`): such a
    // file says nothing about the function's crate, so go by its path.
    let file = file.filter(|f| !f.starts_with(OWN_SRC));
    if let Some(f) = file {
        if let Some(o) = origin_of_path(f) {
            return o;
        }
    }
    let krate = function_crate(function);
    match (krate, file) {
        (Some(k), _) if matches!(k, "std" | "core" | "alloc") => Origin::Toolchain(k.to_string()),
        (Some(k), Some(_)) => Origin::App(k.to_string()),
        (None, Some(_)) => Origin::App("app".to_string()),
        (Some(k), None) => Origin::Dependency(k.to_string()),
        (None, None) => Origin::Unknown,
    }
}

/// The crate a site's memory is attributed to, from its frames'
/// `(function, file)`, innermost first: its first frame outside the
/// toolchain's libraries (`std`, `core`, `alloc` and the crates std is
/// built from), that is the library (or the application) that asked for
/// the memory; the first frame's if every frame is the toolchain's.
pub(crate) fn allocating_origin<'a>(
    mut frames: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> Origin {
    // Lazily: usually the first frame (trimming leaves the user's code
    // first) is the answer.
    let first = frames.next().map(|(f, file)| origin(f, file));
    match first {
        Some(o) if !matches!(o, Origin::Toolchain(_) | Origin::Unknown) => o,
        first => frames
            .map(|(f, file)| origin(f, file))
            .find(|x| !matches!(x, Origin::Toolchain(_) | Origin::Unknown))
            .or(first)
            .unwrap_or(Origin::Unknown),
    }
}

/// leakscope's own source directory, as its debug info names it.
const OWN_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");

/// Whether `file` is one of leakscope's own sources (see [`origin`]).
pub(crate) fn is_own_source(file: &str) -> bool {
    file.starts_with(OWN_SRC)
}

/// The crate of a source path, when the path says (see [`origin`]).
fn origin_of_path(path: &str) -> Option<Origin> {
    let name_version = |dir: &str| -> String {
        // `regex-automata-0.4.3` -> `regex_automata`: the name ends at the
        // first `-` followed by a digit.
        let b = dir.as_bytes();
        let end = (0..b.len())
            .find(|&i| b[i] == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
            .unwrap_or(b.len());
        dir[..end].replace('-', "_")
    };
    let first_dir = |rest: &str| rest.split('/').next().unwrap_or(rest).to_string();
    if let Some(rest) = path.strip_prefix("/rustc/") {
        // `/rustc/<commit>/library/<crate>/...`
        let rest = rest.split_once('/').map_or("", |(_, r)| r);
        let rest = rest.strip_prefix("library/").unwrap_or(rest);
        return Some(Origin::Toolchain(first_dir(rest)));
    }
    for prefix in ["/rust/deps/", "/cargo/registry/src/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            // The crates std is built from, as rust-lang's builders name them.
            let rest = if prefix == "/cargo/registry/src/" {
                rest.split_once('/').map_or(rest, |(_, r)| r)
            } else {
                rest
            };
            return Some(Origin::Toolchain(name_version(&first_dir(rest))));
        }
    }
    const REGISTRY: &str = "/registry/src/";
    const GIT: &str = "/git/checkouts/";
    if let Some(i) = path.find(REGISTRY) {
        let rest = &path[i + REGISTRY.len()..];
        let rest = rest.split_once('/').map_or(rest, |(_, r)| r);
        return Some(Origin::Dependency(name_version(&first_dir(rest))));
    }
    if let Some(i) = path.find(GIT) {
        // `<name>-<hash>/<rev>/...`
        let dir = first_dir(&path[i + GIT.len()..]);
        let name = dir.rsplit_once('-').map_or(dir.as_str(), |(n, _)| n);
        return Some(Origin::Dependency(name.replace('-', "_")));
    }
    None
}

/// The first path segment of a demangled function name: its crate, for
/// `regex::Regex::new`, `<regex::Regex>::new`, `<regex::Regex as
/// core::clone::Clone>::clone` and `hashbrown::map::{impl#5}::insert`;
/// for `<u8 as core::fmt::Debug>::fmt` (a type without a path) the
/// trait's crate. `None` when there is no path.
pub(crate) fn function_crate(function: &str) -> Option<&str> {
    let mut s = function.trim_start();
    loop {
        let before = s.len();
        s = s.trim_start_matches(['<', '&', '(', '[']);
        for p in ["mut ", "dyn ", "impl ", "*const ", "*mut ", "const "] {
            s = s.strip_prefix(p).unwrap_or(s);
        }
        if s.len() == before {
            break;
        }
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    if end > 0 && s[end..].starts_with("::") {
        return Some(&s[..end]);
    }
    let (_, tr) = function.split_once(" as ")?;
    let end = tr
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(tr.len());
    (end > 0 && tr[end..].starts_with("::")).then(|| &tr[..end])
}

/// The `Type` of `Type as Trait` (the inside of a qualified path), where
/// `Type` may hold brackets and ` as ` of its own.
fn type_of_qualified(inner: &str) -> &str {
    let mut depth = 0i32;
    for (i, c) in inner.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ' ' if depth == 0 && inner[i..].starts_with(" as ") => return &inner[..i],
            _ => {}
        }
    }
    inner
}

/// A function's name without its crate and module path and without
/// generic arguments: the last two path segments
/// (`h2::proto::streams::recv::Recv::recv_headers` → `Recv::recv_headers`;
/// `<alloc::vec::Vec<T> as core::clone::Clone>::clone` → `Vec::clone`).
pub(crate) fn short_function(function: &str) -> String {
    // Split on `::` outside angle brackets.
    let mut segs: Vec<String> = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    let mut chars = function.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ':' if depth == 0 && chars.peek() == Some(&':') => {
                chars.next();
                segs.push(core::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    segs.push(cur);
    let tidy = |seg: &str| -> String {
        if let Some(inner) = seg.strip_prefix('<').and_then(|x| x.strip_suffix('>')) {
            // `<Type as Trait>` or `<Type>`: the type's last segment (the
            // ` as ` outside nested brackets: the type may be qualified
            // itself, `<<T as Tr>::Assoc as Tr2>`).
            let ty = short_function(type_of_qualified(inner));
            return ty.rsplit("::").next().unwrap_or(&ty).to_string();
        }
        // Drop generic arguments: `Vec<T>` -> `Vec`.
        seg.split('<').next().unwrap_or(seg).to_string()
    };
    // A `<...>` segment after the first is a function's generic arguments
    // (`visit_str::<serde_json::Error>`, as the v0 mangling scheme spells
    // them), not a path: dropped. Only the first can be a qualified path
    // (`<T as Trait>`, `<Type>`).
    let segs: Vec<String> = segs
        .iter()
        .enumerate()
        .filter(|(i, s)| *i == 0 || !s.starts_with('<'))
        .map(|(_, s)| tidy(s))
        .filter(|s| !s.is_empty())
        .collect();
    let n = segs.len();
    segs[n.saturating_sub(2)..].join("::")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_from_paths_and_functions() {
        let reg = "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        assert_eq!(
            origin(
                "http::header::map::HeaderMap<T>::try_reserve_one",
                Some(&format!("{reg}/http-1.1.0/src/header/map.rs"))
            ),
            Origin::Dependency("http".into())
        );
        assert_eq!(
            origin(
                "x",
                Some(&format!("{reg}/regex-automata-0.4.3/src/meta.rs"))
            ),
            Origin::Dependency("regex_automata".into())
        );
        assert_eq!(
            origin(
                "alloc::raw_vec::finish_grow",
                Some("/rustc/59807616e1fa/library/alloc/src/raw_vec.rs")
            ),
            Origin::Toolchain("alloc".into())
        );
        assert_eq!(
            origin(
                "hashbrown::raw::RawTable<T,A>::reserve_rehash",
                Some("/rust/deps/hashbrown-0.15.2/src/raw/mod.rs")
            ),
            Origin::Toolchain("hashbrown".into())
        );
        assert_eq!(
            origin(
                "h2::x",
                Some("/home/u/.cargo/git/checkouts/h2-0123abcd/4f1e2d3/src/proto.rs")
            ),
            Origin::Dependency("h2".into())
        );
        assert_eq!(
            origin("myapp::serve", Some("/home/u/src/myapp/src/main.rs")),
            Origin::App("myapp".into())
        );
        assert_eq!(
            origin("tokio::spawn", None),
            Origin::Dependency("tokio".into())
        );
        assert_eq!(
            origin("std::thread::spawn", None),
            Origin::Toolchain("std".into())
        );
        assert_eq!(origin("??", None), Origin::Unknown);
        let own = concat!(env!("CARGO_MANIFEST_DIR"), "/src/alloc/path.rs");
        assert_eq!(
            origin("<&mut serde_json::de::Deserializer<R> as serde_core::de::Deserializer>::deserialize_any", Some(own)),
            Origin::Dependency("serde_json".into())
        );
    }

    #[test]
    fn crates_of_function_paths() {
        assert_eq!(function_crate("regex::Regex::new"), Some("regex"));
        assert_eq!(function_crate("<regex::Regex>::new"), Some("regex"));
        assert_eq!(
            function_crate("<regex::Regex as core::clone::Clone>::clone"),
            Some("regex")
        );
        assert_eq!(
            function_crate("<&mut serde_json::Ser as x::Y>::f"),
            Some("serde_json")
        );
        assert_eq!(
            function_crate("<u8 as core::fmt::Debug>::fmt"),
            Some("core")
        );
        assert_eq!(
            function_crate("hashbrown::map::{impl#5}::insert"),
            Some("hashbrown")
        );
        assert_eq!(function_crate("main"), None);
        assert_eq!(function_crate("??"), None);
    }

    #[test]
    fn short_function_names() {
        assert_eq!(
            short_function("h2::proto::streams::recv::Recv::recv_headers"),
            "Recv::recv_headers"
        );
        assert_eq!(
            short_function("<alloc::vec::Vec<T> as core::clone::Clone>::clone"),
            "Vec::clone"
        );
        assert_eq!(
            short_function("http::header::map::HeaderMap<T>::try_append"),
            "HeaderMap::try_append"
        );
        assert_eq!(short_function("main"), "main");
        assert_eq!(
            short_function("app::serve::{{closure}}"),
            "serve::{{closure}}"
        );
        // As the v0 mangling scheme demangles them (nightly, and builds
        // with `-C symbol-mangling-version=v0`): inherent impls in angle
        // brackets, generic arguments spelled out.
        assert_eq!(
            short_function("<heap_growth::example::ResponseCache>::remember"),
            "ResponseCache::remember"
        );
        assert_eq!(
            short_function("<<serde_json::value::Value as serde_core::de::Deserialize>::deserialize::ValueVisitor as serde_core::de::Visitor>::visit_str::<serde_json::error::Error>"),
            "ValueVisitor::visit_str"
        );
    }

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
