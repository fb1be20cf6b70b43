//! The loaded objects (the executable and shared libraries) and where they
//! are loaded, from `dl_iterate_phdr`.
//!
//! Every call here runs under the symbolizer's mutex, which the `fork()`
//! prepare hook takes: so no fork happens while this thread is inside
//! `dl_iterate_phdr` (whose loader lock a child would otherwise inherit held).

use std::path::PathBuf;

/// One loaded object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Module {
    /// The file to open. The main executable (which the loader reports
    /// without a name) is `/proc/self/exe`: the inode actually running, even
    /// if the file on disk was replaced since.
    pub(super) path: PathBuf,
    /// Load bias: actual address = address stated in the file + `bias`.
    pub(super) bias: usize,
    /// `PT_LOAD` segments as actual `[start, end)` ranges.
    pub(super) segments: Vec<(usize, usize)>,
}

impl Module {
    /// Whether `pc` lies in one of this object's loaded segments.
    pub(super) fn contains(&self, pc: usize) -> bool {
        self.segments.iter().any(|&(s, e)| s <= pc && pc < e)
    }

    /// Bytes this entry holds on the heap (an estimate: capacities).
    pub(super) fn heap_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
            + self.path.as_os_str().len()
            + self.segments.capacity() * core::mem::size_of::<(usize, usize)>()
    }
}

/// glibc's counts of objects loaded and unloaded so far (`dlpi_adds`,
/// `dlpi_subs`): when they move, the module list is rebuilt.
pub(super) fn loader_counters() -> Option<(u64, u64)> {
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
            // SAFETY: `data` is `loader_counters`' `out`, alive for the call.
            unsafe { *data.cast::<Option<(u64, u64)>>() = Some(counters) };
        }
        1 // stop after the first object: the counters are global
    }
    let mut out: Option<(u64, u64)> = None;
    // SAFETY: the callback only writes `out`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(first), (&raw mut out).cast()) };
    out
}

/// Every loaded object, in the loader's order (the executable first).
pub(super) fn list() -> Vec<Module> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: glibc passes a valid `info` for the duration of the call.
        let info = unsafe { &*info };
        // SAFETY: `data` is `list`'s `out`, alive and not otherwise borrowed
        // during the call.
        let out = unsafe { &mut *data.cast::<Vec<Module>>() };
        // SAFETY: `info` comes from `dl_iterate_phdr` (see `module_of`).
        if let Some(m) = unsafe { module_of(info, out.is_empty()) } {
            out.push(m);
        }
        0
    }
    let mut out: Vec<Module> = Vec::new();
    // SAFETY: the callback only touches `out`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut out).cast()) };
    out
}

/// # Safety
/// `info` must come from `dl_iterate_phdr`, inside its callback: its name
/// and program headers are valid while the callback runs.
unsafe fn module_of(info: &libc::dl_phdr_info, first: bool) -> Option<Module> {
    let phdrs = if info.dlpi_phdr.is_null() || info.dlpi_phnum == 0 {
        &[][..]
    } else {
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
        unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
    };
    let bias = info.dlpi_addr as usize;
    let segments: Vec<(usize, usize)> = phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD && p.p_memsz > 0)
        .filter_map(|p| {
            let start = (p.p_vaddr as usize).checked_add(bias)?;
            Some((start, start.checked_add(p.p_memsz as usize)?))
        })
        .collect();
    if segments.is_empty() {
        return None;
    }
    let name: &[u8] = if info.dlpi_name.is_null() {
        b""
    } else {
        // SAFETY: a non-null `dlpi_name` is a NUL-terminated string, valid
        // during the callback.
        unsafe { core::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    let path = if name.is_empty() {
        // The loader names the executable "" (and only it, first); a static
        // executable has a zero bias and no name either.
        if !first && bias != 0 {
            return None;
        }
        PathBuf::from("/proc/self/exe")
    } else {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(name))
    };
    Some(Module {
        path,
        bias,
        segments,
    })
}
