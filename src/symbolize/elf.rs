//! One object file, mapped and parsed: its DWARF (through `addr2line`) and
//! its symbol table. Mirrors what `backtrace` 0.3.77 does on Linux (its
//! `symbolize/gimli/elf.rs`), so that the names, files and lines come out
//! the same, with state owned by leakscope alone.
//!
//! What is followed, in `backtrace`'s order: a separate debug file found by
//! build id under `/usr/lib/debug/.build-id/`, then by `.gnu_debuglink`
//! (next to the file, in its `.debug/` directory, under `/usr/lib/debug`),
//! then the file itself. Not followed (as `backtrace` does): DWARF packages
//! (`.dwp`), split DWARF (`.dwo`), supplementary files
//! (`.gnu_debugaltlink`), and GNU-style `.zdebug_*` sections: with those,
//! the symbol table still names the function, without file and line.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use addr2line::gimli;
use gimli::{Reader as _, Section as _};
use object::elf::{ELFCOMPRESS_ZLIB, ELF_NOTE_GNU, NT_GNU_BUILD_ID, SHF_COMPRESSED};
use object::read::elf::{CompressionHeader, FileHeader, SectionHeader, SectionTable, Sym};
use object::read::StringTable;
use object::NativeEndian;

type Elf = object::elf::FileHeader64<NativeEndian>;
type Reader = gimli::EndianSlice<'static, gimli::NativeEndian>;

/// A read-only private mapping of a whole file, unmapped on drop.
pub(super) struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; reading it
// from any thread is fine.
unsafe impl Send for Mapped {}

impl Mapped {
    fn open(path: &Path) -> Option<Mapped> {
        use std::os::fd::AsRawFd;
        let file = File::open(path).ok()?;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // If the file is truncated later, reads past its end fault: the same
        // exposure as `backtrace`'s; installed binaries are replaced, not
        // truncated.
        // SAFETY: a new private read-only mapping of an open file at no
        // fixed address: no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then_some(Mapped { ptr, len })
    }

    /// The file's bytes, for as long as `self` lives: callers keep `self`
    /// next to (and dropped after) anything that borrows them.
    fn bytes(&self) -> &'static [u8] {
        // The `'static` is the lie every self-referential holder tells:
        // `Object` declares its borrowers before the mappings, so they are
        // dropped first.
        // SAFETY: `ptr` is a live mapping of `len` readable bytes until
        // `self` is dropped, and no borrower outlives `self` (above).
        unsafe { core::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `open`, not
        // unmapped before, and nothing borrows it any more (see `bytes`).
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// One symbol of the symbol table: `[address, address + size]`.
struct SymtabEntry {
    address: u64,
    size: u64,
    name: u32,
}

/// The symbol table, sorted by address; built on first use (only addresses
/// without DWARF need it).
struct Symtab {
    strings: StringTable<'static>,
    syms: Vec<SymtabEntry>,
}

/// One parsed object. Field order matters: the parsed state borrows the
/// mappings and decompressed buffers below it, and fields drop in order.
pub(super) struct Object {
    dwarf: Option<addr2line::Context<Reader>>,
    symtab: Option<Option<Symtab>>,
    /// The file (or separate debug file) the state above was read from.
    data: &'static [u8],
    /// Decompressed `SHF_COMPRESSED` sections, borrowed by `dwarf`.
    /// (`Box<[u8]>` contents do not move when the `Vec` grows.)
    #[allow(clippy::vec_box)]
    decompressed: Vec<Box<[u8]>>,
    /// DWARF units touched so far (by `.debug_info` offset), and the bytes
    /// estimated for them (see `mod.rs`, "Memory").
    units: HashSet<usize>,
    /// `.debug_info` and line program bytes of the units in `units`.
    touched_info: usize,
    touched_line: usize,
    /// Estimated bytes of `addr2line`'s up-front per-unit state.
    base_bytes: usize,
    _maps: Vec<Mapped>,
}

/// The estimate of `addr2line`'s parsed state (see `mod.rs`, "Memory").
/// Measured with glibc's `mallinfo2` around each step on this crate's test
/// binary, debug build (512 units, 17 MiB of `.debug_info`) and release
/// build (`debug = 1`: 1142 units, 7.6 MiB): what each input byte costs on
/// the heap once parsed. One linear model does not fit both builds well;
/// these constants err high on the first and low on the second (see
/// `mod.rs` for the numbers).
mod estimate {
    /// Built with the context, for every unit: its abbreviations (measured
    /// 16.8 heap bytes per `.debug_abbrev` byte), its address ranges (from
    /// the unit's `DW_AT_ranges` list, else `.debug_aranges`: 32-byte
    /// entries for 16 input bytes, counted over both sections since which
    /// one a unit uses is not known without parsing it), and the rest of a
    /// `gimli::Unit` (its line program header's directories and files:
    /// about 4.8 KiB a unit in the debug build, more in the release one).
    pub(super) fn base(abbrev: usize, aranges: usize, ranges: usize, units: usize) -> usize {
        17 * abbrev + 2 * aranges + 2 * ranges + 4800 * units
    }

    /// Parsed when an address falls in the unit: its line table (measured
    /// 4.1 bytes per line-program byte) and its functions (0.25 per
    /// `.debug_info` byte).
    pub(super) fn unit(info: usize, line: usize) -> usize {
        info / 4 + 4 * line
    }
}

/// One frame found for an address, before demangling.
pub(super) struct RawFrame {
    /// The name as stored (mangled); `None`: unnamed.
    pub(super) name: Option<Vec<u8>>,
    pub(super) file: Option<String>,
    pub(super) line: Option<u32>,
}

impl Object {
    /// Opens and parses the object at `path` (following separate debug
    /// files). `None`: unreadable or not an ELF file for this target.
    pub(super) fn load(path: &Path) -> Option<Object> {
        let map = Mapped::open(path)?;
        let data = map.bytes();
        let (endian, sections) = parse(data)?;
        if let Some(debug) = build_id(endian, &sections, data).and_then(locate_build_id) {
            if let Some(o) = Object::load_debug(&debug) {
                return Some(o);
            }
        }
        if let Some(debug) = debuglink(endian, &sections, data, path) {
            if let Some(o) = Object::load_debug(&debug) {
                return Some(o);
            }
        }
        Object::from_map(map)
    }

    fn load_debug(path: &Path) -> Option<Object> {
        Object::from_map(Mapped::open(path)?)
    }

    fn from_map(map: Mapped) -> Option<Object> {
        let data = map.bytes();
        let (endian, sections) = parse(data)?;
        let mut decompressed: Vec<Box<[u8]>> = Vec::new();
        let mut section = |name: &str| -> &'static [u8] {
            section_data(endian, &sections, data, name, &mut decompressed).unwrap_or(&[])
        };
        let dwarf_sections = gimli::Dwarf::load(|id| -> Result<Reader, ()> {
            Ok(gimli::EndianSlice::new(
                section(id.name()),
                gimli::NativeEndian,
            ))
        })
        .ok()?;
        let base_bytes = {
            let d = &dwarf_sections;
            let mut units = 0;
            let mut headers = d.units();
            while let Ok(Some(_)) = headers.next() {
                units += 1; // headers only: each unit is skipped by its length
            }
            estimate::base(
                d.debug_abbrev.reader().len(),
                d.debug_aranges.reader().len(),
                section_size(endian, &sections, ".debug_ranges")
                    + section_size(endian, &sections, ".debug_rnglists"),
                units,
            )
        };
        // No DWARF at all: no context, the symbol table alone names things.
        let dwarf = if dwarf_sections.debug_info.reader().is_empty() {
            None
        } else {
            // Reads every unit's header, abbreviations and ranges (not their
            // functions or lines: those wait for an address inside them).
            addr2line::Context::from_dwarf(dwarf_sections).ok()
        };
        Some(Object {
            dwarf,
            symtab: None,
            data,
            decompressed,
            units: HashSet::new(),
            touched_info: 0,
            touched_line: 0,
            base_bytes,
            _maps: vec![map],
        })
    }

    /// Heap bytes this object holds (exact for leakscope's own buffers, an
    /// estimate for `addr2line`'s parsed state). The file mapping is not
    /// counted here: see [`Object::mapped_bytes`].
    pub(super) fn held_bytes(&self) -> usize {
        let decompressed: usize = self.decompressed.iter().map(|b| b.len()).sum();
        let symtab = match &self.symtab {
            Some(Some(t)) => t.syms.capacity() * core::mem::size_of::<SymtabEntry>(),
            _ => 0,
        };
        let dwarf = if self.dwarf.is_some() {
            self.base_bytes + estimate::unit(self.touched_info, self.touched_line)
        } else {
            0
        };
        core::mem::size_of::<Self>()
            + decompressed
            + symtab
            + dwarf
            + self.units.capacity() * (core::mem::size_of::<usize>() + 1)
    }

    /// Bytes of files mapped (clean, file-backed pages: not heap, reclaimable
    /// by the kernel, resident only where read).
    #[cfg(test)]
    pub(super) fn touched(&self) -> (usize, usize, usize) {
        (self.units.len(), self.touched_info, self.touched_line)
    }

    pub(super) fn mapped_bytes(&self) -> usize {
        self._maps.iter().map(|m| m.len).sum()
    }

    /// Looks up `svma` (an address as stated in the file). Frames come from
    /// DWARF when it covers the address (a frame without a name takes the
    /// symbol table's), else one frame from the symbol table, else none.
    pub(super) fn find(&mut self, svma: u64) -> Vec<RawFrame> {
        let mut frames = Vec::new();
        if let Some(ctx) = &self.dwarf {
            // Which unit holds the address, for the memory estimate. This
            // parses that unit's functions and lines, which `find_frames`
            // below then reuses.
            let unit = ctx.find_dwarf_and_unit(svma).skip_all_loads().map(|u| {
                let off = u.header.offset().0;
                let info = u.header.length_including_self();
                let line = u
                    .line_program
                    .as_ref()
                    .map_or(0, |p| p.header().unit_length());
                (off, info, line)
            });
            if let Some((off, info, line)) = unit {
                if self.units.insert(off) {
                    self.touched_info += info;
                    self.touched_line += line;
                }
            }
            // Split DWARF would ask to load `.dwo` files: answered "none".
            if let Ok(mut it) = ctx.find_frames(svma).skip_all_loads() {
                while let Ok(Some(f)) = it.next() {
                    let name = f.function.map(|n| n.name.slice().to_vec());
                    let (file, line) = match f.location {
                        Some(l) => (l.file.map(str::to_owned), l.line),
                        None => (None, None),
                    };
                    frames.push(RawFrame { name, file, line });
                }
            }
        }
        let need_symtab = frames.is_empty() || frames.iter().any(|f| f.name.is_none());
        if need_symtab {
            let name = self.search_symtab(svma).map(<[u8]>::to_vec);
            if frames.is_empty() {
                if let Some(n) = name {
                    frames.push(RawFrame {
                        name: Some(n),
                        file: None,
                        line: None,
                    });
                }
            } else {
                for f in frames.iter_mut().filter(|f| f.name.is_none()) {
                    f.name.clone_from(&name);
                }
            }
        }
        frames
    }

    fn search_symtab(&mut self, addr: u64) -> Option<&'static [u8]> {
        let data = self.data;
        let t = self.symtab.get_or_insert_with(|| symtab(data)).as_ref()?;
        let i = match t.syms.binary_search_by_key(&addr, |s| s.address) {
            Ok(i) => i,
            Err(i) => i.checked_sub(1)?,
        };
        let s = t.syms.get(i)?;
        (s.address <= addr && addr <= s.address.saturating_add(s.size))
            .then(|| t.strings.get(s.name).ok())
            .flatten()
    }
}

fn parse(data: &'static [u8]) -> Option<(NativeEndian, SectionTable<'static, Elf>)> {
    let elf = Elf::parse(data).ok()?;
    let endian = elf.endian().ok()?;
    let sections = elf.sections(endian, data).ok()?;
    Some((endian, sections))
}

/// The symbol table (`.symtab`, else `.dynsym`): defined functions and
/// objects, sorted by address, as `backtrace` keeps it.
fn symtab(data: &'static [u8]) -> Option<Symtab> {
    let (endian, sections) = parse(data)?;
    let mut table = sections
        .symbols(endian, data, object::elf::SHT_SYMTAB)
        .ok()?;
    if table.is_empty() {
        table = sections
            .symbols(endian, data, object::elf::SHT_DYNSYM)
            .ok()?;
    }
    let mut syms: Vec<SymtabEntry> = table
        .iter()
        .filter(|s| {
            let t = s.st_type();
            t == object::elf::STT_FUNC || t == object::elf::STT_OBJECT
        })
        .filter(|s| s.st_shndx(endian) != object::elf::SHN_UNDEF)
        .map(|s| SymtabEntry {
            address: s.st_value(endian),
            size: s.st_size(endian),
            name: s.st_name(endian),
        })
        .collect();
    syms.sort_unstable_by_key(|s| s.address);
    syms.shrink_to_fit();
    Some(Symtab {
        strings: table.strings(),
        syms,
    })
}

/// A section's size in the file (compressed size if compressed).
fn section_size(endian: NativeEndian, sections: &SectionTable<'static, Elf>, name: &str) -> usize {
    sections
        .section_by_name(endian, name.as_bytes())
        .map_or(0, |(_, h)| h.sh_size(endian) as usize)
}

/// A section's contents by name, decompressed (zlib, `SHF_COMPRESSED`) into
/// `out` when needed.
fn section_data(
    endian: NativeEndian,
    sections: &SectionTable<'static, Elf>,
    data: &'static [u8],
    name: &str,
    out: &mut Vec<Box<[u8]>>,
) -> Option<&'static [u8]> {
    let (_, header) = sections.section_by_name(endian, name.as_bytes())?;
    let raw = header.data(endian, data).ok()?;
    if !header.sh_flags(endian).contains(SHF_COMPRESSED) {
        return Some(raw);
    }
    let mut bytes = object::Bytes(raw);
    let ch = bytes
        .read::<<Elf as FileHeader>::CompressionHeader>()
        .ok()?;
    if ch.ch_type(endian) != ELFCOMPRESS_ZLIB {
        return None;
    }
    // Never trust a stated size for an allocation: cap it by a sane ratio.
    let size = usize::try_from(ch.ch_size(endian)).ok()?;
    if size > raw.len().saturating_mul(64) {
        return None;
    }
    let mut buf = vec![0u8; size].into_boxed_slice();
    let mut d = flate2::Decompress::new(true);
    let st = d
        .decompress(bytes.0, &mut buf, flate2::FlushDecompress::Finish)
        .ok()?;
    if st != flate2::Status::StreamEnd || d.total_out() as usize != size {
        return None;
    }
    let p: *const [u8] = &*buf;
    out.push(buf);
    // `out` (the `Object`'s `decompressed`) is never mutated but by pushing,
    // and is dropped after every borrower (field order in `Object`).
    // SAFETY: the box's heap contents stay put when the box moves into
    // `out`, which outlives every borrower of them (above).
    Some(unsafe { &*p })
}

fn build_id(
    endian: NativeEndian,
    sections: &SectionTable<'static, Elf>,
    data: &'static [u8],
) -> Option<&'static [u8]> {
    for section in sections.iter() {
        if let Ok(Some(mut notes)) = section.notes(endian, data) {
            while let Ok(Some(note)) = notes.next() {
                if note.name() == ELF_NOTE_GNU && note.n_type(endian) == NT_GNU_BUILD_ID {
                    return Some(note.desc());
                }
            }
        }
    }
    None
}

const DEBUG_PATH: &str = "/usr/lib/debug";

/// `/usr/lib/debug/.build-id/ab/cdef….debug`
fn locate_build_id(id: &[u8]) -> Option<PathBuf> {
    use std::fmt::Write;
    if id.len() < 2 || !Path::new(DEBUG_PATH).is_dir() {
        return None;
    }
    let mut p = format!("{DEBUG_PATH}/.build-id/{:02x}/", id[0]);
    for b in &id[1..] {
        let _ = write!(p, "{b:02x}");
    }
    p.push_str(".debug");
    let p = PathBuf::from(p);
    p.is_file().then_some(p)
}

/// The file a `.gnu_debuglink` names, searched as gdb (and `backtrace`) do.
/// The CRC is not checked (neither does `backtrace`).
fn debuglink(
    endian: NativeEndian,
    sections: &SectionTable<'static, Elf>,
    data: &'static [u8],
    path: &Path,
) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let (_, header) = sections.section_by_name(endian, b".gnu_debuglink")?;
    let raw = header.data(endian, data).ok()?;
    let len = raw.iter().position(|&b| b == 0)?;
    let name = Path::new(std::ffi::OsStr::from_bytes(&raw[..len]));
    let path = std::fs::canonicalize(path).ok()?;
    let parent = path.parent()?;
    let next_to = parent.join(name);
    if next_to != path && next_to.is_file() {
        return Some(next_to);
    }
    let dot_debug = parent.join(".debug").join(name);
    if dot_debug.is_file() {
        return Some(dot_debug);
    }
    let global = Path::new(DEBUG_PATH)
        .join(parent.strip_prefix("/").ok()?)
        .join(name);
    global.is_file().then_some(global)
}
