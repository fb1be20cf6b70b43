//! The text report: `Display for Snapshot` (what `println!("{snap}")`
//! prints), the one-line [`Snapshot::summary`] and
//! [`Snapshot::summary_since`], and the report lines of labels and holders.
//!
//! Plain formatting of the snapshot types; the human units come from
//! `format.rs`, like every other output's.

use core::fmt;

use crate::format::{allocating_origin, fmt_bytes, fmt_duration, origin, short_function, Origin};
use crate::snapshot::{
    Frame, HeapSite, HeapSnapshot, Holder, LabelCount, ObjectSite, RetainedReason, Snapshot,
};

impl fmt::Display for LabelCount {
    /// `caller=billing-batch: 401 live`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}: {} live", self.key, self.value, self.live)
    }
}

impl fmt::Display for Holder {
    /// `held at src/timer.rs:31: 4920 live handle(s) for up to 16h40m`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "held at {}:{}: {} live handle(s)",
            self.file, self.line, self.live
        )?;
        if let Some(a) = self.oldest_age {
            write!(f, " for up to {}", fmt_duration(a))?;
        }
        Ok(())
    }
}

impl fmt::Display for RetainedReason {
    /// `retired 'request finished': 400 retained, up to 3s ago`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retired '{}': {} retained", self.reason, self.retained)?;
        if let Some(a) = self.oldest {
            write!(f, ", up to {} ago", fmt_duration(a))?;
        }
        Ok(())
    }
}

impl Snapshot {
    /// One line, like Go's gctrace: live heap, allocation and free totals,
    /// samples and the oldest tracked object.
    ///
    /// `live 1.9 GiB in 20311 allocs (peak 2.0 GiB) | allocs 9120334 frees 9100023 | sampled 3812 (dropped 0) | objects 4920 live, oldest 16h40m`
    pub fn summary(&self) -> String {
        let h = &self.heap;
        let mut out = format!(
            "live {} in {} allocs (peak {}) | allocs {} frees {} | sampled {} (dropped {})",
            fmt_bytes(h.live_bytes),
            h.live_allocations,
            fmt_bytes(h.peak_live_bytes),
            h.allocations,
            h.frees,
            h.samples,
            h.dropped_samples
        );
        let live: u64 = self.objects.iter().map(|o| o.live).sum();
        let oldest = self.objects.iter().filter_map(|o| o.oldest_age).max();
        if !self.objects.is_empty() {
            out.push_str(&format!(" | objects {live} live"));
            if let Some(o) = oldest {
                out.push_str(&format!(", oldest {}", fmt_duration(o)));
            }
        }
        let suspects = self
            .objects
            .iter()
            .filter(|o| o.suspected.is_some())
            .count();
        if suspects > 0 {
            out.push_str(&format!(" | {suspects} suspected leak(s)"));
        }
        let retained: u64 = self.objects.iter().map(|o| o.retained).sum();
        if retained > 0 {
            out.push_str(&format!(" | {retained} retained"));
        }
        if let Some(filter) = &self.heap.filter {
            // The sites below are filtered: say so on the first line too.
            out.push_str(&format!(" | filtered: {}", filter.window_text()));
        }
        out
    }

    /// One line like [`Snapshot::summary`], plus the change in live bytes per
    /// second since `earlier`: `live 1.9 GiB (+30.0 MiB/s) ...`.
    pub fn summary_since(&self, earlier: &Snapshot) -> String {
        let dt = self.taken_at_ns.saturating_sub(earlier.taken_at_ns) as f64 / 1e9;
        let s = self.summary();
        if dt <= 0.0 {
            return s;
        }
        let d = self.heap.live_bytes as f64 - earlier.heap.live_bytes as f64;
        let rate = d / dt;
        let sign = if rate < 0.0 { "-" } else { "+" };
        let rate_s = fmt_bytes(rate.abs() as u64);
        let head = format!("live {}", fmt_bytes(self.heap.live_bytes));
        s.replacen(&head, &format!("{head} ({sign}{rate_s}/s)"), 1)
    }
}

/// How many heap sites and object sites the text report lists.
const REPORT_TOP: usize = 10;

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "leakscope report")?;
        write_memory(f, self.memory.as_ref())?;
        writeln!(f, "{}", self.summary())?;
        writeln!(f)?;
        write_objects(f, &self.objects)?;
        write_heap(f, &self.heap)
    }
}

/// The memory breakdown (`Display for Memory`), the report's first lines.
fn write_memory(f: &mut fmt::Formatter<'_>, memory: Option<&crate::memory::Memory>) -> fmt::Result {
    match memory {
        Some(m) => write!(f, "{m}"),
        None => Ok(()),
    }
}

fn write_objects(f: &mut fmt::Formatter<'_>, objects: &[ObjectSite]) -> fmt::Result {
    if objects.is_empty() {
        return writeln!(
            f,
            "tracked objects: none (no track!/track_arc! site has run)\n"
        );
    }
    let mut sites: Vec<&ObjectSite> = objects.iter().collect();
    sites.sort_by(|a, b| {
        (b.retained > 0)
            .cmp(&(a.retained > 0))
            .then(b.suspected.is_some().cmp(&a.suspected.is_some()))
            .then(b.oldest_age.cmp(&a.oldest_age))
            .then(b.live.cmp(&a.live))
    });
    writeln!(f, "tracked objects, oldest live first:")?;
    for o in sites.iter().take(REPORT_TOP) {
        let name = o
            .name
            .as_deref()
            .map(|n| format!(" \"{n}\""))
            .unwrap_or_default();
        writeln!(
            f,
            "  {}{} at {}: {} live, {} created, {} dropped{}",
            o.type_name,
            name,
            o.site(),
            o.live,
            o.created,
            o.dropped,
            o.oldest_age
                .map(|a| format!(", oldest {}", fmt_duration(a)))
                .unwrap_or_default()
        )?;
        if let Some(p50) = o.lifetimes.quantile_upper_bound(0.5) {
            writeln!(
                f,
                "      dropped objects lived: p50 <= {}, p99 <= {}",
                fmt_duration(p50),
                o.lifetimes
                    .quantile_upper_bound(0.99)
                    .map(fmt_duration)
                    .unwrap_or_else(|| "+Inf".into())
            )?;
        }
        if let Some(why) = &o.suspected {
            writeln!(f, "      SUSPECTED LEAK: {why}")?;
        }
        write_retained(f, o)?;
        write_tasks(f, o)?;
        for l in o.labels.iter().filter(|l| l.live > 0).take(5) {
            writeln!(f, "      {l}")?;
        }
        for h in o.holders.iter().filter(|h| h.live > 0).take(5) {
            writeln!(f, "      {h}")?;
        }
    }
    if sites.len() > REPORT_TOP {
        writeln!(f, "  ... and {} more sites", sites.len() - REPORT_TOP)?;
    }
    writeln!(f)
}

/// The retained lines of one site: count, reasons, ages, labels, holders.
fn write_retained(f: &mut fmt::Formatter<'_>, o: &ObjectSite) -> fmt::Result {
    if o.retained == 0 {
        if o.retiring > 0 {
            writeln!(
                f,
                "      retired: {} live within the grace period",
                o.retiring
            )?;
        }
        return Ok(());
    }
    write!(
        f,
        "      RETAINED: {} retired object(s) still live",
        o.retained
    )?;
    if let Some(a) = o.retained_oldest {
        // Retained means retired at least the grace period ago.
        let grace = crate::objects::retire_grace();
        write!(
            f,
            ", retired {} to {} ago",
            fmt_duration(grace.min(a)),
            fmt_duration(a)
        )?;
    }
    if o.retiring > 0 {
        write!(f, " (and {} within the grace period)", o.retiring)?;
    }
    writeln!(f)?;
    for r in o.retained_reasons.iter().take(5) {
        writeln!(f, "        {r}")?;
    }
    for l in o.retained_labels.iter().take(5) {
        writeln!(f, "        {l}")?;
    }
    for h in o.retained_holders.iter().take(5) {
        writeln!(f, "        {h}")?;
    }
    Ok(())
}

/// The task line of a site whose objects are polled (futures, streams,
/// async I/O): live tasks and how long they have not been polled.
fn write_tasks(f: &mut fmt::Formatter<'_>, o: &ObjectSite) -> fmt::Result {
    if o.polled_live == 0 {
        return Ok(());
    }
    write!(f, "      tasks: {} polled live", o.polled_live)?;
    if let Some(a) = o.oldest_idle {
        write!(f, ", not polled for up to {}", fmt_duration(a))?;
    }
    if let Some(p50) = o.idle.quantile_upper_bound(0.5) {
        write!(f, " (idle p50 <= {})", fmt_duration(p50))?;
    }
    if o.live > o.polled_live {
        write!(f, "; {} never polled", o.live - o.polled_live)?;
    }
    writeln!(f)
}

fn write_heap(f: &mut fmt::Formatter<'_>, h: &HeapSnapshot) -> fmt::Result {
    if !h.allocator_active {
        return writeln!(
            f,
            "heap: the tracking allocator is not installed (#[global_allocator] static A: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();)"
        );
    }
    writeln!(
        f,
        "heap: {} live in {} allocations (peak {}), {} allocated in total; sample rate {} bytes",
        fmt_bytes(h.live_bytes),
        h.live_allocations,
        fmt_bytes(h.peak_live_bytes),
        fmt_bytes(h.allocated_bytes),
        h.sample_rate
    )?;
    // A filtered view says it is filtered, and what it kept.
    if let Some(filter) = &h.filter {
        writeln!(f, "filter: {filter}")?;
    }
    let live: Vec<&HeapSite> = h.sites.iter().filter(|s| s.live_bytes > 0).collect();
    if live.is_empty() {
        return writeln!(f, "  no sampled allocation is live");
    }
    write_by_crate(f, &live)?;
    write_suspected_groups(f, &live)?;
    writeln!(
        f,
        "top sites, suspected leaks first, then growing sites, then by estimated live bytes:"
    )?;
    for s in live.iter().take(REPORT_TOP) {
        write_heap_site(f, s)?;
    }
    if live.len() > REPORT_TOP {
        writeln!(f, "  ... and {} more sites", live.len() - REPORT_TOP)?;
    }
    Ok(())
}

/// Suspected sites grouped by the application frame they are all called
/// from (the first frame of the application's own code on each stack,
/// function, file and line alike): one leak usually shows as several sites
/// (a map's nodes, its keys, its values), all allocated for the same line
/// of the application. Printed only when some group has two or more sites.
/// Sites are grouped by that shared caller, not by growing in proportion:
/// two leaks behind one line read as one group, and sites with no frame of
/// the application's are not grouped.
fn write_suspected_groups(f: &mut fmt::Formatter<'_>, live: &[&HeapSite]) -> fmt::Result {
    struct Group<'a> {
        at: &'a Frame,
        sites: usize,
        bytes: u64,
        rate: f64,
    }
    let mut groups: Vec<Group<'_>> = Vec::new();
    for s in live.iter().filter(|s| s.suspected.is_some()) {
        let Some(at) = s
            .frames
            .iter()
            .find(|fr| matches!(origin(&fr.function, fr.file.as_deref()), Origin::App(_)))
        else {
            continue;
        };
        let same = |g: &Group<'_>| {
            g.at.function == at.function && g.at.file == at.file && g.at.line == at.line
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(g) => {
                g.sites += 1;
                g.bytes += s.live_bytes;
                g.rate += s.growth_bytes_per_second;
            }
            None => groups.push(Group {
                at,
                sites: 1,
                bytes: s.live_bytes,
                rate: s.growth_bytes_per_second,
            }),
        }
    }
    if !groups.iter().any(|g| g.sites > 1) {
        return Ok(());
    }
    groups.sort_by(|a, b| b.rate.total_cmp(&a.rate));
    writeln!(f, "suspected leaks by the application's call site:")?;
    for g in &groups {
        writeln!(
            f,
            "  {:>10} (+{}/s) in {} suspected site{}, all called from {} ({})",
            fmt_bytes(g.bytes),
            fmt_bytes(g.rate.max(0.0) as u64),
            g.sites,
            if g.sites == 1 { "" } else { "s" },
            g.at.function,
            g.at.location()
        )?;
    }
    Ok(())
}

/// The crate of each frame of a stack, innermost first.
fn origins(frames: &[Frame]) -> Vec<Origin> {
    frames
        .iter()
        .map(|fr| origin(&fr.function, fr.file.as_deref()))
        .collect()
}

/// `by crate: regex 92%, heap_growth (app) 5%, std 3%`: live bytes of the
/// listed sites by allocating crate (`format::allocating_origin`).
fn write_by_crate(f: &mut fmt::Formatter<'_>, live: &[&HeapSite]) -> fmt::Result {
    let total: u64 = live.iter().map(|s| s.live_bytes).sum();
    if total == 0 {
        return Ok(());
    }
    let mut by: Vec<(String, u64)> = Vec::new();
    for s in live {
        let o = allocating_origin(
            s.frames
                .iter()
                .map(|f| (f.function.as_str(), f.file.as_deref())),
        );
        let name = match &o {
            Origin::App(n) => format!("{n} (app)"),
            o => o.name().to_string(),
        };
        match by.iter_mut().find(|(n, _)| *n == name) {
            Some((_, b)) => *b += s.live_bytes,
            None => by.push((name, s.live_bytes)),
        }
    }
    by.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let pct = |b: u64| (b as f64 * 100.0 / total as f64).round();
    let mut parts: Vec<String> = by
        .iter()
        .take(6)
        .map(|(n, b)| format!("{n} {}%", pct(*b)))
        .collect();
    let rest: u64 = by.iter().skip(6).map(|(_, b)| b).sum();
    if rest > 0 {
        parts.push(format!("other {}%", pct(rest)));
    }
    writeln!(
        f,
        "live bytes by allocating crate (first frame outside std/core/alloc): {}",
        parts.join(", ")
    )
}

/// One site of the heap listing: its totals and innermost frame, why it is
/// suspected, its growth, its realloc growth, who allocates it for whom,
/// and its frames with runs inside one crate collapsed.
fn write_heap_site(f: &mut fmt::Formatter<'_>, s: &HeapSite) -> fmt::Result {
    let top = s
        .frames
        .first()
        .map(|fr| fr.function.as_str())
        .unwrap_or("??");
    // A frame without a file has no location to add to its function.
    let at = s
        .frames
        .first()
        .filter(|fr| fr.file.is_some())
        .map(|fr| format!("  ({})", fr.location()))
        .unwrap_or_default();
    writeln!(
        f,
        "  {:>10} in {:>6} allocs{}  {}{}",
        fmt_bytes(s.live_bytes),
        s.live_objects,
        s.oldest_age
            .map(|a| format!(", oldest {:>6}", fmt_duration(a)))
            .unwrap_or_default(),
        top,
        at
    )?;
    if let Some(why) = &s.suspected {
        writeln!(f, "      SUSPECTED LEAK: {why}")?;
    } else if let (true, Some(w)) = (s.growing, s.growth_window) {
        writeln!(
            f,
            "      GROWING: live bytes +{}/s, steadily, over the last {} (flagged as a leak once it lasts a minute)",
            fmt_bytes(s.growth_bytes_per_second.max(0.0) as u64),
            fmt_duration(w)
        )?;
    } else if let Some(w) = s.growth_window {
        let r = s.growth_bytes_per_second;
        if r.abs() >= 1.0 {
            let sign = if r < 0.0 { "-" } else { "+" };
            writeln!(
                f,
                "      live bytes {sign}{}/s over the last {}",
                fmt_bytes(r.abs() as u64),
                fmt_duration(w)
            )?;
        }
    }
    if s.max_grown > 0 {
        write!(f, "      grown by realloc up to {} times", s.max_grown)?;
        if let Some(l) = s.last_grown {
            write!(f, ", last {} ago", fmt_duration(l))?;
        }
        writeln!(f)?;
    }
    if s.stacks > 1 {
        writeln!(
            f,
            "      {} stacks with identical frames merged (unrolled or duplicated code)",
            s.stacks
        )?;
    }
    let o = origins(&s.frames);
    if let Some(line) = crate_sentence(&s.frames, &o) {
        writeln!(f, "      {line}")?;
    }
    write_collapsed_frames(f, &s.frames, &o)
}

/// Runs of consecutive frames in one crate: (start, length).
fn crate_runs(o: &[Origin]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, x) in o.iter().enumerate() {
        match runs.last_mut() {
            Some((start, len)) if o[*start] == *x => *len += 1,
            _ => runs.push((i, 1)),
        }
    }
    runs
}

/// "allocated in http, for h2's `Recv::recv_headers`, called from the
/// application's `serve`": the crate of the first run outside the
/// toolchain's libraries, then the first frame of each further crate's
/// run, up to the first of the application's. `None` for a stack without
/// frames.
fn crate_sentence(frames: &[Frame], o: &[Origin]) -> Option<String> {
    let runs: Vec<(usize, usize)> = crate_runs(o)
        .into_iter()
        .filter(|&(i, _)| !matches!(o[i], Origin::Toolchain(_) | Origin::Unknown))
        .collect();
    let runs = if runs.is_empty() { crate_runs(o) } else { runs };
    let mut seen: Vec<&Origin> = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    for (k, &(i, _)) in runs.iter().enumerate() {
        if seen.contains(&&o[i]) {
            continue;
        }
        seen.push(&o[i]);
        let func = short_function(&frames[i].function);
        let part = match (&o[i], k) {
            (Origin::App(_), 0) => format!("allocated in the application's `{func}`"),
            (Origin::App(_), _) => format!("called from the application's `{func}`"),
            (x, 0) => format!("allocated in {} (`{func}`)", x.name()),
            (x, _) => format!("for {} `{func}`", x.owner()),
        };
        parts.push(part);
        if matches!(o[i], Origin::App(_)) {
            break;
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The callers below a site's first line: for each run of frames in one
/// crate, its first frame and how many more it hides ("… 3 more frames in
/// http"), up to and including the first run of the application's; at most
/// [`MAX_FRAME_LINES`] lines.
fn write_collapsed_frames(
    f: &mut fmt::Formatter<'_>,
    frames: &[Frame],
    o: &[Origin],
) -> fmt::Result {
    if matches!(o.first(), Some(Origin::App(_))) {
        // Allocated by the application itself: its own callers say most.
        for fr in frames.iter().skip(1).take(3) {
            writeln!(f, "        <- {} ({})", fr.function, fr.location())?;
        }
        return Ok(());
    }
    let mut lines = 0;
    for (k, &(i, len)) in crate_runs(o).iter().enumerate() {
        if lines >= MAX_FRAME_LINES {
            break;
        }
        if k > 0 {
            let fr = &frames[i];
            writeln!(f, "        <- {} ({})", fr.function, fr.location())?;
            lines += 1;
        }
        if matches!(o[i], Origin::App(_)) {
            break;
        }
        if len > 1 {
            writeln!(
                f,
                "        … {} more frame{} in {}",
                len - 1,
                if len > 2 { "s" } else { "" },
                o[i].name()
            )?;
            lines += 1;
        }
    }
    Ok(())
}

/// Frame lines printed per site at most.
const MAX_FRAME_LINES: usize = 8;

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use super::*;

    /// A stack through two dependency crates (http, called by h2) into
    /// the application, with std below: one sentence naming each crate
    /// once, runs inside one crate collapsed.
    /// Suspected sites that share the application frame they are called
    /// from are summed under it; a lone suspected site and unsuspected ones
    /// are not grouped, and nothing is printed without a group of two.
    #[test]
    fn suspected_sites_group_by_application_caller() {
        let reg = "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        let site = |lib: &str, app_line: u32, bytes: u64, suspected: bool| HeapSite {
            frames: vec![
                Frame::new(
                    format!("serde_json::{lib}"),
                    Some(format!("{reg}/serde_json-1.0.0/src/de.rs")),
                    Some(1),
                ),
                Frame::new(
                    "myapp::Cache::remember",
                    Some("/home/u/myapp/src/main.rs".into()),
                    Some(app_line),
                ),
            ],
            live_bytes: bytes,
            suspected: suspected.then(|| "grew".to_string()),
            growth_bytes_per_second: if suspected { 1024.0 } else { 0.0 },
            ..Default::default()
        };
        let mut snap = Snapshot::default();
        snap.heap.allocator_active = true;
        snap.heap.sites = vec![
            site("a", 44, 3 << 20, true),
            site("b", 44, 1 << 20, true),
            site("c", 50, 1 << 20, true),
            site("d", 44, 8 << 20, false),
        ];
        let text = snap.to_string();
        assert!(
            text.contains("4.0 MiB (+2.0 KiB/s) in 2 suspected sites, all called from myapp::Cache::remember (/home/u/myapp/src/main.rs:44)"),
            "{text}"
        );
        assert!(
            text.contains("1.0 MiB (+1.0 KiB/s) in 1 suspected site, all called from myapp::Cache::remember (/home/u/myapp/src/main.rs:50)"),
            "{text}"
        );
        snap.heap.sites.remove(1);
        assert!(!snap.to_string().contains("suspected leaks by"));
    }

    #[test]
    fn crate_boundaries_collapse_runs() {
        let reg = "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        let fr = |func: &str, file: String, line: u32| Frame::new(func, Some(file), Some(line));
        let frames = vec![
            fr(
                "alloc::raw_vec::finish_grow",
                "/rustc/abc/library/alloc/src/raw_vec.rs".into(),
                1,
            ),
            fr(
                "http::header::map::HeaderMap<T>::try_reserve_one",
                format!("{reg}/http-1.1.0/src/header/map.rs"),
                10,
            ),
            fr(
                "http::header::map::HeaderMap<T>::try_append2",
                format!("{reg}/http-1.1.0/src/header/map.rs"),
                20,
            ),
            fr(
                "http::header::map::HeaderMap<T>::try_append",
                format!("{reg}/http-1.1.0/src/header/map.rs"),
                30,
            ),
            fr(
                "http::header::map::HeaderMap<T>::append",
                format!("{reg}/http-1.1.0/src/header/map.rs"),
                40,
            ),
            fr(
                "h2::proto::streams::recv::Recv::recv_headers",
                format!("{reg}/h2-0.4.5/src/proto/streams/recv.rs"),
                50,
            ),
            fr(
                "h2::proto::streams::streams::Inner::recv_headers",
                format!("{reg}/h2-0.4.5/src/proto/streams/streams.rs"),
                60,
            ),
            fr("myapp::serve", "/home/u/myapp/src/main.rs".into(), 70),
            fr("myapp::main", "/home/u/myapp/src/main.rs".into(), 80),
        ];
        let o = origins(&frames);
        assert_eq!(
            crate_sentence(&frames, &o).as_deref(),
            Some("allocated in http (`HeaderMap::try_reserve_one`), for h2's `Recv::recv_headers`, called from the application's `myapp::serve`")
        );
        assert_eq!(
            allocating_origin(
                frames
                    .iter()
                    .map(|f| (f.function.as_str(), f.file.as_deref()))
            ),
            Origin::Dependency("http".into())
        );
        let mut snap = Snapshot::default();
        snap.heap.allocator_active = true;
        snap.heap.sites.push(HeapSite {
            frames: frames.clone(),
            live_bytes: 900,
            live_objects: 9,
            ..Default::default()
        });
        snap.heap.sites.push(HeapSite {
            frames: frames[7..].to_vec(),
            live_bytes: 100,
            live_objects: 1,
            ..Default::default()
        });
        let r = snap.to_string();
        let want = "
        <- http::header::map::HeaderMap<T>::try_reserve_one (http-1.1.0/src/header/map.rs:10)
        … 3 more frames in http
        <- h2::proto::streams::recv::Recv::recv_headers (h2-0.4.5/src/proto/streams/recv.rs:50)
        … 1 more frame in h2
        <- myapp::serve (/home/u/myapp/src/main.rs:70)
";
        assert!(r.contains(want), "{r}");
        assert!(
            !r.contains("myapp::main (/home/u/myapp/src/main.rs:80)\n    "),
            "{r}"
        );
        assert!(
            r.contains("live bytes by allocating crate (first frame outside std/core/alloc): http 90%, myapp (app) 10%"),
            "{r}"
        );
    }

    /// The first line of a filtered report says it is filtered.
    #[test]
    fn summary_states_a_filter() {
        let mut s = Snapshot::default();
        assert!(!s.summary().contains("filtered"));
        s.heap.filter = Some(crate::snapshot::HeapFilter {
            max_age: Some(Duration::from_secs(3600)),
            oldest: Some(Duration::from_secs(3600)),
            ..Default::default()
        });
        let line = s.summary();
        assert!(
            line.ends_with("| filtered: heap born at most 1h ago (max_age=1h)"),
            "{line}"
        );
    }

    #[test]
    fn summary_names_rate_and_objects() {
        let mut a = Snapshot::default();
        a.heap.live_bytes = 1 << 20;
        let mut b = a.clone();
        b.taken_at_ns = 1_000_000_000;
        b.heap.live_bytes = 3 << 20;
        b.objects.push(ObjectSite {
            live: 7,
            oldest_age: Some(Duration::from_secs(3600)),
            ..Default::default()
        });
        let s = b.summary_since(&a);
        assert!(s.starts_with("live 3.0 MiB (+2.0 MiB/s)"), "{s}");
        assert!(s.contains("objects 7 live, oldest 1h"), "{s}");
    }
}
