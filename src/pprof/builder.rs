//! Building the `profile.proto` message: interning tables (strings,
//! functions, locations by address, mappings) and the walk over a
//! snapshot's heap sites that emits one sample per part as it goes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::alloc::CachedStack;
use crate::snapshot::{Frame, HeapSite, Snapshot};
use crate::symbolize::Sym;

use super::mapping;
use super::proto;
use super::values::{bucket_age_ns, site_parts, to_i64, AGE_LABEL, AGE_UNIT, SAMPLE_TYPES};
use super::{Filter, ProfileOptions};

/// One line of a location: what the builder reads of a frame, whether a
/// snapshot's [`Frame`] or a cached stack's symbol ([`Sym`]).
trait LineInfo {
    fn function(&self) -> &str;
    /// The file, `""` when unknown.
    fn file(&self) -> &str;
    fn line(&self) -> i64;
}

impl LineInfo for Frame {
    fn function(&self) -> &str {
        &self.function
    }
    fn file(&self) -> &str {
        self.file.as_deref().unwrap_or("")
    }
    fn line(&self) -> i64 {
        i64::from(self.line.unwrap_or(0))
    }
}

impl LineInfo for Sym {
    fn function(&self) -> &str {
        &self.function
    }
    fn file(&self) -> &str {
        self.file.as_deref().unwrap_or("")
    }
    fn line(&self) -> i64 {
        i64::from(self.line.unwrap_or(0))
    }
}

/// A site's stack as the builder gets it: a snapshot's frames, or the
/// per-stack frame cache's entry (the same frames, not copied).
#[derive(Clone, Copy)]
pub(super) enum SiteStack<'a> {
    Frames(&'a [Frame]),
    Cached(&'a CachedStack),
}

/// Hashes the address keys of [`Builder::by_address`] with one folded
/// multiply: a profile looks up every address of every stack (about
/// 100 000 lookups on 3000 stacks), and SipHash's resistance to chosen
/// keys buys nothing for instruction addresses the process itself holds
/// (it cost about 100 instructions per lookup, 14% of a profile).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        let p = u128::from(self.0 ^ v) * 0x9e37_79b9_7f4a_7c15;
        self.0 = (p as u64) ^ ((p >> 64) as u64);
    }
}

/// Interning tables of one profile under construction.
pub(super) struct Builder {
    strings: Vec<String>,
    string_ix: HashMap<String, i64>,
    functions: Vec<proto::Function>,
    function_ix: HashMap<(i64, i64), u64>,
    locations: Vec<proto::Location>,
    /// Locations by address (several only if one address was symbolized
    /// differently, e.g. in a synthetic snapshot).
    by_address: HashMap<u64, Vec<u64>, BuildHasherDefault<AddrHasher>>,
    /// Locations without an address, by their lines.
    by_lines: HashMap<Vec<(u64, i64)>, u64>,
    mappings: Vec<mapping::MappingInfo>,
}

impl Builder {
    pub(super) fn new(mappings: &[mapping::MappingInfo]) -> Self {
        let mut b = Builder {
            strings: Vec::new(),
            string_ix: HashMap::new(),
            functions: Vec::new(),
            function_ix: HashMap::new(),
            locations: Vec::new(),
            by_address: HashMap::default(),
            by_lines: HashMap::new(),
            mappings: mappings.to_vec(),
        };
        b.string(""); // string_table[0] must be "".
        b
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.string_ix.get(s) {
            return i;
        }
        let i = to_i64(self.strings.len() as u64);
        self.strings.push(s.to_owned());
        self.string_ix.insert(s.to_owned(), i);
        i
    }

    fn function(&mut self, f: &impl LineInfo) -> u64 {
        let name = self.string(f.function());
        let file = self.string(f.file());
        if let Some(&id) = self.function_ix.get(&(name, file)) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        self.functions.push(proto::Function {
            id,
            name,
            system_name: name,
            filename: file,
            start_line: 0,
        });
        self.function_ix.insert((name, file), id);
        id
    }

    /// The mapping id (1-based) holding `addr`, or 0.
    fn mapping_of(&self, addr: u64) -> u64 {
        if addr == 0 {
            return 0;
        }
        self.mappings
            .iter()
            .position(|m| m.start <= addr && addr < m.limit)
            .map_or(0, |i| i as u64 + 1)
    }

    /// Whether location `id` has exactly the lines of `group`.
    fn same_lines(&self, id: u64, group: &[impl LineInfo]) -> bool {
        let loc = &self.locations[(id - 1) as usize];
        loc.line.len() == group.len()
            && loc.line.iter().zip(group).all(|(l, f)| {
                let func = &self.functions[(l.function_id - 1) as usize];
                l.line == f.line()
                    && self.strings[func.name as usize] == f.function()
                    && self.strings[func.filename as usize] == f.file()
            })
    }

    /// One location for a group of frames sharing an address: the inlined
    /// ones (innermost first) and the function they were inlined into last.
    ///
    /// Real stacks repeat addresses far more often than they bring new ones,
    /// so a known address is found by one integer lookup and a comparison
    /// of names, without interning anything.
    fn location(&mut self, address: u64, group: &[impl LineInfo]) -> u64 {
        if address != 0 {
            if let Some(ids) = self.by_address.get(&address) {
                if let Some(&id) = ids.iter().find(|&&id| self.same_lines(id, group)) {
                    return id;
                }
            }
        }
        let lines: Vec<(u64, i64)> = group.iter().map(|f| (self.function(f), f.line())).collect();
        if address == 0 {
            if let Some(&id) = self.by_lines.get(&lines) {
                return id;
            }
        }
        let id = self.locations.len() as u64 + 1;
        self.locations.push(proto::Location {
            id,
            mapping_id: self.mapping_of(address),
            address,
            line: lines
                .iter()
                .map(|&(function_id, line)| proto::Line { function_id, line })
                .collect(),
            is_folded: false,
        });
        if address == 0 {
            self.by_lines.insert(lines, id);
        } else {
            self.by_address.entry(address).or_default().push(id);
        }
        id
    }

    /// Location ids of a stack, leaf first.
    fn stack(&mut self, frames: &[Frame]) -> Vec<u64> {
        let mut ids = Vec::with_capacity(frames.len());
        let mut start = 0;
        for (i, f) in frames.iter().enumerate() {
            // A frame with `inlined` was inlined into the next one: keep
            // grouping. The group closes at the frame it was inlined into
            // (or at the end of a malformed list that ends inlined).
            if !f.inlined || i + 1 == frames.len() {
                ids.push(self.location(f.address, &frames[start..=i]));
                start = i + 1;
            }
        }
        self.unknown_if_empty(&mut ids);
        ids
    }

    /// Location ids of a cached stack, leaf first: one per address, as
    /// [`Builder::stack`] gives them for the same frames.
    fn cached_stack(&mut self, stack: &CachedStack) -> Vec<u64> {
        let mut ids = Vec::with_capacity(stack.len());
        for (address, syms) in stack.groups() {
            ids.push(self.location(address, syms));
        }
        self.unknown_if_empty(&mut ids);
        ids
    }

    fn unknown_if_empty(&mut self, ids: &mut Vec<u64>) {
        if ids.is_empty() {
            let unknown = Frame::new("[unknown stack]", None, None);
            ids.push(self.location(0, std::slice::from_ref(&unknown)));
        }
    }
}

/// Builds the profile, handing each sample to `emit` as it is made; the
/// returned message has everything but the samples.
pub(super) fn build(
    snapshot: &Snapshot,
    opts: &ProfileOptions,
    maps: &[mapping::MappingInfo],
    emit: impl FnMut(proto::Sample),
) -> proto::Profile {
    let heap = &snapshot.heap;
    let sites = heap.sites.iter().map(|s| (s, SiteStack::Frames(&s.frames)));
    let filter = Filter::new(heap, opts, snapshot.taken_at_ns);
    build_sites(heap.sample_rate, sites, opts, &filter, maps, emit)
}

/// [`build`] over sites given with their stacks (see [`SiteStack`]): the
/// same profile for the same sites and frames.
pub(super) fn build_sites<'a>(
    sample_rate: u64,
    sites: impl Iterator<Item = (&'a HeapSite, SiteStack<'a>)>,
    opts: &ProfileOptions,
    filter: &Filter<'_>,
    maps: &[mapping::MappingInfo],
    mut emit: impl FnMut(proto::Sample),
) -> proto::Profile {
    let mut b = Builder::new(maps);
    let sample_type = SAMPLE_TYPES
        .iter()
        .map(|(t, u)| proto::ValueType {
            r#type: b.string(t),
            unit: b.string(u),
        })
        .collect();
    let period_type = Some(proto::ValueType {
        r#type: b.string("space"),
        unit: b.string("bytes"),
    });
    let age_key = b.string(AGE_LABEL);
    let age_unit = b.string(AGE_UNIT);

    let mut parts = Vec::new();
    // In-use (objects, bytes) kept, and live in the sites, for the filter
    // statement.
    let (mut kept, mut live) = ((0u64, 0u64), (0u64, 0u64));
    for (site, frames) in sites {
        site_parts(site, filter.bounds, &mut parts);
        live = (
            live.0.saturating_add(site.live_objects),
            live.1.saturating_add(site.live_bytes),
        );
        for p in &parts {
            kept = (
                kept.0.saturating_add(p.values.inuse_objects),
                kept.1.saturating_add(p.values.inuse_bytes),
            );
        }
        if parts.is_empty() {
            continue;
        }
        let stack = match frames {
            SiteStack::Frames(f) => b.stack(f),
            SiteStack::Cached(c) => b.cached_stack(c),
        };
        for p in &parts {
            let label = p
                .bucket
                .map(|i| proto::Label {
                    key: age_key,
                    str: 0,
                    num: bucket_age_ns(i, site.oldest_age),
                    num_unit: age_unit,
                })
                .into_iter()
                .collect();
            emit(proto::Sample {
                location_id: stack.clone(),
                value: p.values.to_sample(),
                label,
            });
        }
    }

    let mut comment = vec![
        b.string(&format!(
            "leakscope heap profile: unbiased estimates from allocations sampled every ~{} bytes",
            sample_rate
        )),
        b.string("label age = upper bound of the live allocations' age bucket (unlabelled samples: freed allocations)"),
    ];
    // A filtered profile says so (`go tool pprof -comments`).
    if let Some(statement) = filter.statement(kept, live) {
        comment.push(b.string(&statement));
    }
    let default_sample_type = b.string(opts.kind.default_sample_type());

    let mut mapping = Vec::with_capacity(b.mappings.len());
    for (i, m) in maps.iter().enumerate() {
        let filename = b.string(&m.path);
        let build_id = m.build_id.as_deref().map_or(0, |id| b.string(id));
        mapping.push(proto::Mapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.limit,
            file_offset: m.offset,
            filename,
            build_id,
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        });
    }

    let time_nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    proto::Profile {
        sample_type,
        sample: Vec::new(),
        mapping,
        location: std::mem::take(&mut b.locations),
        function: std::mem::take(&mut b.functions),
        string_table: std::mem::take(&mut b.strings),
        drop_frames: 0,
        keep_frames: 0,
        time_nanos,
        duration_nanos: 0,
        period_type,
        period: to_i64(sample_rate),
        comment,
        default_sample_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlined_frames_share_one_location() {
        let frames = vec![
            Frame::new("inner", Some("a.rs".into()), Some(1)).with_address(0x10, true),
            Frame::new("middle", Some("a.rs".into()), Some(2)).with_address(0x10, true),
            Frame::new("outer", Some("a.rs".into()), Some(3)).with_address(0x10, false),
            Frame::new("main", Some("m.rs".into()), Some(9)).with_address(0x20, false),
        ];
        let mut b = Builder::new(&[]);
        let ids = b.stack(&frames);
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(b.locations[0].address, 0x10);
        assert_eq!(b.locations[0].line.len(), 3);
        let f0 = b.locations[0].line[0].function_id as usize - 1;
        let f2 = b.locations[0].line[2].function_id as usize - 1;
        assert_eq!(b.strings[b.functions[f0].name as usize], "inner");
        assert_eq!(b.strings[b.functions[f2].name as usize], "outer");
        // Same stack again: same ids, no new entries.
        assert_eq!(b.stack(&frames), vec![1, 2]);
        assert_eq!(b.locations.len(), 2);
        assert_eq!(b.functions.len(), 4);
        // An empty stack still gets a location.
        assert_eq!(b.stack(&[]).len(), 1);
    }

    #[test]
    fn locations_point_into_their_mapping() {
        let maps = [
            mapping::MappingInfo {
                start: 0x1000,
                limit: 0x2000,
                offset: 0,
                path: "/bin/app".into(),
                build_id: Some("abcd".into()),
            },
            mapping::MappingInfo {
                start: 0x8000,
                limit: 0x9000,
                offset: 0x1000,
                path: "/lib/libc.so".into(),
                build_id: None,
            },
        ];
        let b = Builder::new(&maps);
        assert_eq!(b.mapping_of(0x1000), 1);
        assert_eq!(b.mapping_of(0x8fff), 2);
        assert_eq!(b.mapping_of(0x9000), 0);
        assert_eq!(b.mapping_of(0), 0);
    }
}
