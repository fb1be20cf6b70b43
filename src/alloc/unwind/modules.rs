//! The module list: every loaded object's executable range and its
//! `.eh_frame` CFI, read in place from memory (ELF program headers, the
//! `.eh_frame_hdr` binary-search table).
//!
//! Built once, on the first sample, from `dl_iterate_phdr`, under the
//! re-entrancy guard (its memory is metadata). Each walk first compares
//! glibc's load/unload counters (`dlpi_adds`/`dlpi_subs`) with the build's:
//! after a `dlopen` or `dlclose` the list is rebuilt (at most `MAX_BUILDS`
//! times in all; the replaced lists are kept, not freed, because another
//! thread may still be walking with one), and while it is being rebuilt,
//! walks fall back. Every call into the loader goes through the fork gate
//! (`loader.rs`).

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

use gimli::{BaseAddresses, EhFrame, EhFrameHdr, EndianSlice, LittleEndian, ParsedEhFrameHdr};

use super::loader::outside_fork;
use super::mmap::{map_slice, map_uninit};

type Slice = EndianSlice<'static, LittleEndian>;

/// One loaded object's unwind data, read in place.
pub(super) struct Module {
    /// Executable range, actual addresses.
    pub(super) start: u64,
    pub(super) end: u64,
    /// Load bias: actual address = stated address + bias.
    pub(super) bias: u64,
    pub(super) hdr: ParsedEhFrameHdr<Slice>,
    pub(super) eh_frame: EhFrame<Slice>,
    pub(super) bases: BaseAddresses,
}

/// A module list and the loader counters it was built under.
pub(super) struct Built {
    /// Sorted by `start`.
    pub(super) modules: &'static [Module],
    pub(super) adds: u64,
    pub(super) subs: u64,
    /// Which build this is (caches remember it).
    pub(super) id: u32,
}

/// The current module list (never freed once published).
static BUILT: AtomicPtr<Built> = AtomicPtr::new(core::ptr::null_mut());
/// Held (try-lock) by the thread building a module list.
static BUILDING: AtomicBool = AtomicBool::new(false);
/// Module lists built so far.
static BUILDS: AtomicU32 = AtomicU32::new(0);
/// After this many builds (a process that keeps loading libraries), walks
/// fall back for good: each replaced list stays allocated.
const MAX_BUILDS: u32 = 8;

/// The module list, built or rebuilt when the loader's counters moved.
pub(super) fn current_modules() -> Option<&'static Built> {
    let (adds, subs) = loader_counters()?;
    let p = BUILT.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: published lists live in mappings that are never unmapped.
        let b = unsafe { &*p };
        if b.adds == adds && b.subs == subs {
            return Some(b);
        }
    }
    if BUILDS.load(Ordering::Relaxed) >= MAX_BUILDS || BUILDING.swap(true, Ordering::Acquire) {
        return None;
    }
    let id = BUILDS.fetch_add(1, Ordering::Relaxed) + 1;
    let Some(built) = outside_fork(|| build(adds, subs, id)).flatten() else {
        BUILDS.fetch_sub(1, Ordering::Relaxed);
        BUILDING.store(false, Ordering::Release);
        return None;
    };
    let Some(fresh) = map_uninit::<Built>(1) else {
        BUILDING.store(false, Ordering::Release);
        return None;
    };
    // SAFETY: a fresh mapping with room for one `Built`.
    unsafe { fresh.write(built) };
    BUILT.store(fresh, Ordering::Release);
    BUILDING.store(false, Ordering::Release);
    // SAFETY: written above, never unmapped.
    let b = unsafe { &*fresh };
    (!b.modules.is_empty()).then_some(b)
}

/// In a `fork()` child: a build another thread had under way will never
/// finish; let the next walk build.
pub(super) fn fork_child() {
    BUILDING.store(false, Ordering::Relaxed);
}

/// glibc's counts of objects loaded and unloaded so far.
fn loader_counters() -> Option<(u64, u64)> {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        let need = core::mem::offset_of!(libc::dl_phdr_info, dlpi_subs) + 8;
        if size >= need {
            // SAFETY: glibc passes a valid `info` of `size` bytes, which
            // covers both counters (checked just above).
            let counters = unsafe { ((*info).dlpi_adds, (*info).dlpi_subs) };
            // SAFETY: `data` is `loader_counters`' `out`, alive and not
            // otherwise borrowed during `dl_iterate_phdr`.
            let out = unsafe { &mut *(data as *mut Option<(u64, u64)>) };
            *out = Some(counters);
        }
        crate::__hooks::pause(crate::__hooks::Point::LoaderInside);
        1 // stop after the first object: the counters are global
    }
    let mut out: Option<(u64, u64)> = None;
    outside_fork(|| {
        // SAFETY: the callback only writes `out`, which outlives the call.
        unsafe { libc::dl_iterate_phdr(Some(first), &mut out as *mut _ as *mut libc::c_void) }
    })?;
    out
}

/// Builds the module list from every loaded object's `PT_GNU_EH_FRAME`.
fn build(adds: u64, subs: u64, id: u32) -> Option<Built> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is `build`'s module list, alive and not otherwise
        // borrowed during `dl_iterate_phdr`.
        let list = unsafe { &mut *(data as *mut Vec<Module>) };
        // SAFETY: glibc passes a valid, aligned `info` for the duration of
        // the callback.
        let info = unsafe { &*info };
        // SAFETY: `info` comes from `dl_iterate_phdr`: its program headers
        // are mapped while the callback runs (and while the object stays
        // loaded), which is `module_of`'s requirement.
        if let Some(m) = unsafe { module_of(info) } {
            list.push(m);
        }
        0
    }
    let mut modules: Vec<Module> = Vec::new();
    // SAFETY: the callback only touches `modules`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(each),
            &mut modules as *mut Vec<Module> as *mut libc::c_void,
        )
    };
    modules.sort_by_key(|m| m.start);
    Some(Built {
        modules: map_slice(modules)?,
        adds,
        subs,
        id,
    })
}

/// One loaded object's unwind sections, read in place.
///
/// # Safety
/// `info` must come from `dl_iterate_phdr`: its program headers and the
/// segments they describe are mapped.
unsafe fn module_of(info: &libc::dl_phdr_info) -> Option<Module> {
    if info.dlpi_phdr.is_null() {
        return None;
    }
    let bias = info.dlpi_addr;
    // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
    let phdrs =
        unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let mut text: Option<(u64, u64)> = None;
    let mut hdr: Option<(u64, u64)> = None;
    for p in phdrs {
        let r = (p.p_vaddr, p.p_vaddr.checked_add(p.p_memsz)?);
        if p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0 {
            text = Some(match text {
                None => r,
                Some(t) => (t.0.min(r.0), t.1.max(r.1)),
            });
        } else if p.p_type == libc::PT_GNU_EH_FRAME {
            hdr = Some(r);
        }
    }
    let (text, hdr) = (text?, hdr?);
    // SAFETY: PT_GNU_EH_FRAME is mapped (it lies in a loaded segment).
    let hdr_bytes: &'static [u8] = unsafe {
        core::slice::from_raw_parts(
            bias.checked_add(hdr.0)? as *const u8,
            (hdr.1 - hdr.0) as usize,
        )
    };
    let eh_start = eh_frame_svma(hdr_bytes, hdr.0)?;
    // `.eh_frame`'s length is not recorded in the header: it runs to the
    // end of the loaded segment that holds it, at most (lookups go
    // through the header's table, and each entry has its length).
    let seg = phdrs.iter().find(|p| {
        p.p_type == libc::PT_LOAD
            && p.p_vaddr <= eh_start
            && eh_start < p.p_vaddr.saturating_add(p.p_filesz)
    })?;
    let eh_end = seg.p_vaddr.saturating_add(seg.p_filesz);
    // SAFETY: `[eh_start, eh_end)` lies inside a loaded segment's file
    // contents, mapped while the object is loaded.
    let eh_bytes: &'static [u8] = unsafe {
        core::slice::from_raw_parts(
            bias.checked_add(eh_start)? as *const u8,
            (eh_end - eh_start) as usize,
        )
    };
    let bases = BaseAddresses::default()
        .set_eh_frame_hdr(hdr.0)
        .set_eh_frame(eh_start)
        .set_text(text.0);
    let parsed = EhFrameHdr::new(hdr_bytes, LittleEndian)
        .parse(&bases, 8)
        .ok()?;
    parsed.table()?; // no search table: not worth a linear scan
    let mut eh_frame = EhFrame::new(eh_bytes, LittleEndian);
    eh_frame.set_address_size(8);
    Some(Module {
        start: bias.checked_add(text.0)?,
        end: bias.checked_add(text.1)?,
        bias,
        hdr: parsed,
        eh_frame,
        bases,
    })
}

/// Where `.eh_frame` starts, from `.eh_frame_hdr`'s `eh_frame_ptr`
/// (the encodings linkers emit: pc-relative or absolute, 4 or 8 bytes).
fn eh_frame_svma(hdr: &[u8], hdr_svma: u64) -> Option<u64> {
    if hdr.len() < 8 || hdr[0] != 1 {
        return None;
    }
    let enc = hdr[1];
    let field = hdr_svma.wrapping_add(4);
    let value = match enc & 0x0f {
        0x03 => u32::from_le_bytes(hdr[4..8].try_into().ok()?) as i64,
        0x0b => i32::from_le_bytes(hdr[4..8].try_into().ok()?) as i64,
        0x04 | 0x0c if hdr.len() >= 12 => i64::from_le_bytes(hdr[4..12].try_into().ok()?),
        _ => return None,
    };
    match enc & 0x70 {
        0x00 => Some(value as u64),
        0x10 => Some(field.wrapping_add(value as u64)),
        0x30 => Some(hdr_svma.wrapping_add(value as u64)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_eh_frame_ptr() {
        // version 1, pcrel|sdata4, then -0x100 from the field at +4.
        let mut h = vec![1u8, 0x1b, 0x03, 0x3b];
        h.extend_from_slice(&(-0x100i32).to_le_bytes());
        assert_eq!(eh_frame_svma(&h, 0x2000), Some(0x2004 - 0x100));
        h[1] = 0x03; // absolute udata4
        h[4..8].copy_from_slice(&0x1234u32.to_le_bytes());
        assert_eq!(eh_frame_svma(&h, 0x2000), Some(0x1234));
        h[0] = 2; // unknown version
        assert_eq!(eh_frame_svma(&h, 0x2000), None);
        assert_eq!(eh_frame_svma(&h[..3], 0x2000), None);
    }
}
