//! The executable mappings of this process and their GNU build ids, for the
//! `Mapping` table of a profile.
//!
//! Read from `/proc/self/maps` (what is mapped where) and from the mapped ELF
//! files' `PT_NOTE` segments (`NT_GNU_BUILD_ID`). Everything here is
//! best-effort: an unreadable file or an unexpected layout yields a mapping
//! without a build id, or no mapping at all, never an error or a panic. The
//! profile stays correct without them because every location already
//! carries its function names and lines.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

/// One executable, file-backed address range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MappingInfo {
    /// First mapped address.
    pub(crate) start: u64,
    /// End of the range (exclusive).
    pub(crate) limit: u64,
    /// File offset mapped at `start`.
    pub(crate) offset: u64,
    /// Path of the mapped file.
    pub(crate) path: String,
    /// Hex GNU build id of the file, when it has one.
    pub(crate) build_id: Option<String>,
}

/// Most distinct files whose build id is cached (bounds this cache).
const BUILD_ID_CACHE_CAP: usize = 256;
/// Largest `PT_NOTE` segment read.
const MAX_NOTE_BYTES: u64 = 64 * 1024;
/// Most program headers read.
const MAX_PHDRS: u64 = 512;
/// `NT_GNU_BUILD_ID`.
const NT_GNU_BUILD_ID: u32 = 3;
/// `PT_NOTE`.
const PT_NOTE: u32 = 4;

/// The executable file-backed mappings of this process, the main binary's
/// first, sorted by address after it. Empty when `/proc/self/maps` cannot be
/// read (not Linux, or a sandbox without procfs).
pub(crate) fn current() -> Vec<MappingInfo> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let exe = std::fs::read_link("/proc/self/exe")
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned));
    let mut out = parse_maps(&maps);
    out.sort_by_key(|m| (Some(&m.path) != exe.as_ref(), m.start));
    for m in &mut out {
        m.build_id = cached_build_id(&m.path, exe.as_deref() == Some(m.path.as_str()));
    }
    out
}

/// Parses `/proc/<pid>/maps` text into its executable file-backed ranges
/// (build ids left empty). Malformed lines are skipped.
pub(crate) fn parse_maps(text: &str) -> Vec<MappingInfo> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms), Some(offset), Some(_dev), Some(_inode)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        // The path is the rest of the line (it may contain spaces).
        let path = fields.collect::<Vec<_>>().join(" ");
        let path = path.strip_suffix(" (deleted)").unwrap_or(&path);
        if !perms.contains('x') || !path.starts_with('/') {
            continue;
        }
        let Some((start, limit)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(limit), Ok(offset)) = (
            u64::from_str_radix(start, 16),
            u64::from_str_radix(limit, 16),
            u64::from_str_radix(offset, 16),
        ) else {
            continue;
        };
        if limit <= start {
            continue;
        }
        out.push(MappingInfo {
            start,
            limit,
            offset,
            path: path.to_owned(),
            build_id: None,
        });
    }
    out
}

/// Build ids read so far: the main binary's, and other files' by path.
/// One const-initialised mutex (no `OnceLock`: an initialisation under way
/// in another thread at a `fork()` would block the child's forever), held
/// by the forking thread across `fork()` (`alloc/fork.rs`).
struct BuildIds {
    /// The main binary's (`None`: not read yet).
    main: Option<Option<String>>,
    /// Other files', at most `BUILD_ID_CACHE_CAP`.
    others: Option<HashMap<String, Option<String>>>,
}

static BUILD_IDS: Mutex<BuildIds> = Mutex::new(BuildIds {
    main: None,
    others: None,
});

static FORK: crate::alloc::ForkGuard<BuildIds> = crate::alloc::ForkGuard::new();

/// Locks the build-id cache for a `fork()` (prepare handler).
pub(crate) fn fork_prepare() {
    FORK.hold(&BUILD_IDS);
}

/// Unlocks it after the `fork()` (parent and child).
pub(crate) fn fork_release() {
    FORK.release();
}

fn cached_build_id(path: &str, is_main: bool) -> Option<String> {
    // A poisoned cache only means another thread panicked while inserting a
    // plain value: the map is still valid, keep using it.
    let mut ids = BUILD_IDS.lock().unwrap_or_else(|e| e.into_inner());
    if is_main {
        // The main binary cannot change under a running process; read it
        // through /proc/self/exe so a replaced or deleted file still works.
        return ids
            .main
            .get_or_insert_with(|| build_id_of_file("/proc/self/exe"))
            .clone();
    }
    let map = ids.others.get_or_insert_with(HashMap::new);
    if let Some(id) = map.get(path) {
        return id.clone();
    }
    let id = build_id_of_file(path);
    if map.len() < BUILD_ID_CACHE_CAP {
        map.insert(path.to_owned(), id.clone());
    }
    id
}

/// Reads the GNU build id of an ELF file from its `PT_NOTE` segments, as
/// lowercase hex. Reads only the ELF header, the program headers and the note
/// segments (bounded sizes), never the whole file.
pub(crate) fn build_id_of_file(path: &str) -> Option<String> {
    let file = File::open(path).ok()?;
    let mut ident = [0u8; 64];
    file.read_exact_at(&mut ident[..16], 0).ok()?;
    if ident[..4] != *b"\x7fELF" {
        return None;
    }
    let is64 = match ident[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match ident[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let rd = Reader { le };
    let ehdr_len = if is64 { 64 } else { 52 };
    file.read_exact_at(&mut ident[..ehdr_len], 0).ok()?;
    let (phoff, phentsize, phnum) = if is64 {
        (
            rd.u64(&ident[32..40]),
            u64::from(rd.u16(&ident[54..56])),
            u64::from(rd.u16(&ident[56..58])),
        )
    } else {
        (
            u64::from(rd.u32(&ident[28..32])),
            u64::from(rd.u16(&ident[42..44])),
            u64::from(rd.u16(&ident[44..46])),
        )
    };
    let min_phent = if is64 { 56 } else { 32 };
    if phentsize < min_phent || phnum == 0 || phnum > MAX_PHDRS {
        return None;
    }
    let mut phdrs = vec![0u8; usize::try_from(phentsize * phnum).ok()?];
    file.read_exact_at(&mut phdrs, phoff).ok()?;
    for ph in phdrs.chunks_exact(usize::try_from(phentsize).ok()?) {
        if rd.u32(&ph[0..4]) != PT_NOTE {
            continue;
        }
        let (offset, size, align) = if is64 {
            (rd.u64(&ph[8..16]), rd.u64(&ph[32..40]), rd.u64(&ph[48..56]))
        } else {
            (
                u64::from(rd.u32(&ph[4..8])),
                u64::from(rd.u32(&ph[16..20])),
                u64::from(rd.u32(&ph[28..32])),
            )
        };
        if size == 0 || size > MAX_NOTE_BYTES {
            continue;
        }
        let mut notes = vec![0u8; usize::try_from(size).ok()?];
        if file.read_exact_at(&mut notes, offset).is_err() {
            continue;
        }
        let align = if align == 8 { 8 } else { 4 };
        if let Some(id) = find_gnu_build_id(&notes, rd, align) {
            return Some(id);
        }
    }
    None
}

/// Scans an ELF note segment for `NT_GNU_BUILD_ID` owned by `"GNU"`.
fn find_gnu_build_id(mut notes: &[u8], rd: Reader, align: usize) -> Option<String> {
    let pad = |n: usize| n.checked_add(align - 1).map(|v| v & !(align - 1));
    while notes.len() >= 12 {
        let namesz = usize::try_from(rd.u32(&notes[0..4])).ok()?;
        let descsz = usize::try_from(rd.u32(&notes[4..8])).ok()?;
        let ntype = rd.u32(&notes[8..12]);
        let name_start = 12usize;
        let desc_start = name_start.checked_add(pad(namesz)?)?;
        let next = desc_start.checked_add(pad(descsz)?)?;
        let desc = notes.get(desc_start..desc_start.checked_add(descsz)?)?;
        let name = notes.get(name_start..name_start + namesz)?;
        if ntype == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            let mut hex = String::with_capacity(desc.len() * 2);
            for b in desc {
                hex.push_str(&format!("{b:02x}"));
            }
            return Some(hex);
        }
        notes = notes.get(next..)?;
    }
    None
}

#[derive(Clone, Copy)]
struct Reader {
    le: bool,
}

impl Reader {
    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    }
    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }
    fn u64(self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        if self.le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let text = "\
55d0c0a00000-55d0c0a10000 r--p 00000000 08:01 1234 /usr/bin/app
55d0c0a10000-55d0c0b20000 r-xp 00010000 08:01 1234 /usr/bin/app
7f0000000000-7f0000001000 r-xp 00000000 00:00 0 [vdso]
7f0000002000-7f0000003000 rw-p 00000000 00:00 0
7f0000004000-7f0000005000 r-xp 00002000 08:01 99 /opt/my lib/libx.so (deleted)
garbage line
";
        let m = parse_maps(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].start, 0x55d0c0a10000);
        assert_eq!(m[0].limit, 0x55d0c0b20000);
        assert_eq!(m[0].offset, 0x10000);
        assert_eq!(m[0].path, "/usr/bin/app");
        assert_eq!(m[1].path, "/opt/my lib/libx.so");
        assert_eq!(m[1].offset, 0x2000);
    }

    #[test]
    fn finds_build_id_note() {
        // namesz=4 descsz=4 type=3 "GNU\0" desc=de ad be ef, preceded by an
        // unrelated note (type 5, name "GNU\0", 8-byte desc).
        let mut n = Vec::new();
        for (ty, desc) in [
            (5u32, &[1u8, 2, 3, 4, 5, 6, 7, 8][..]),
            (3, &[0xde, 0xad, 0xbe, 0xef]),
        ] {
            n.extend_from_slice(&4u32.to_le_bytes());
            n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            n.extend_from_slice(&ty.to_le_bytes());
            n.extend_from_slice(b"GNU\0");
            n.extend_from_slice(desc);
        }
        let rd = Reader { le: true };
        assert_eq!(find_gnu_build_id(&n, rd, 4).as_deref(), Some("deadbeef"));
        // Truncated input: no panic, no id.
        assert_eq!(find_gnu_build_id(&n[..n.len() - 2], rd, 4), None);
    }

    #[test]
    fn non_elf_has_no_build_id() {
        assert_eq!(build_id_of_file("/proc/self/maps"), None);
        assert_eq!(build_id_of_file("/nonexistent/file"), None);
    }

    #[test]
    fn own_mappings_put_main_binary_first() {
        let m = current();
        if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
            let exe = exe.to_string_lossy().into_owned();
            assert!(!m.is_empty(), "no executable mapping found");
            assert_eq!(m[0].path, exe);
            let here = own_mappings_put_main_binary_first as *const () as usize as u64;
            assert!(
                m.iter()
                    .any(|r| r.path == exe && r.start <= here && here < r.limit),
                "this function's address {here:#x} is in no mapping of {exe}"
            );
        }
    }
}
