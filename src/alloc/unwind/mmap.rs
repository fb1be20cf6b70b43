//! Memory straight from the kernel for the unwinder's long-lived state
//! (rule caches, module lists), never freed, counted in
//! [`mapped_bytes`](super::mapped_bytes).

use core::sync::atomic::Ordering;

/// Memory straight from the kernel for the unwinder's long-lived state
/// (caches, module lists, never freed). Kept out of the user's malloc
/// heap on purpose: a 100 KiB block that the first sample leaves in the
/// middle of the heap changes where glibc's later chunks go and how they
/// coalesce, which showed up as extra work inside glibc's malloc and
/// free on the request-mix benchmark.
pub(super) fn map_uninit<T>(count: usize) -> Option<*mut T> {
    const { assert!(core::mem::align_of::<T>() <= 4096) };
    let len = core::mem::size_of::<T>().checked_mul(count)?.max(1);
    // SAFETY: a new anonymous private mapping: no file, no fixed
    // address, so no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    super::MAPPED.fetch_add(len as u64, Ordering::Relaxed);
    Some(p.cast())
}

/// Moves `v` into mapped memory (see [`map_uninit`]).
pub(super) fn map_slice<T>(v: Vec<T>) -> Option<&'static [T]> {
    let p = map_uninit::<T>(v.len())?;
    let n = v.len();
    for (i, x) in v.into_iter().enumerate() {
        // SAFETY: `p` holds room for `n` values; each slot is written once.
        unsafe { p.add(i).write(x) };
    }
    // SAFETY: all `n` values were written above; the mapping is never
    // unmapped.
    Some(unsafe { core::slice::from_raw_parts(p, n) })
}
