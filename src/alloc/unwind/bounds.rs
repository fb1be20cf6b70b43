//! The calling thread's stack bounds, read once per thread with
//! `pthread_getattr_np` and kept in a const-initialised thread-local.

use core::cell::Cell;

thread_local! {
    /// This thread's stack as `[low, high)`; `(0, 0)` not read yet,
    /// `(1, 1)` unreadable.
    static STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// This thread's stack bounds, read once per thread.
pub(super) fn stack_bounds() -> Option<(usize, usize)> {
    let b = STACK.try_with(|s| s.get()).ok()?;
    let b = if b == (0, 0) {
        let b = read_stack_bounds().unwrap_or((1, 1));
        let _ = STACK.try_with(|s| s.set(b));
        b
    } else {
        b
    };
    (b.0 < b.1 && b != (1, 1)).then_some(b)
}

/// For the main thread glibc reads /proc/self/maps, which allocates: the
/// caller holds the re-entrancy guard, so that is metadata.
fn read_stack_bounds() -> Option<(usize, usize)> {
    // SAFETY: `pthread_attr_t` is a plain C struct for which all-zero
    // bytes are a valid (if meaningless) value; it is only read after
    // `pthread_getattr_np` initialised it.
    let mut attr: libc::pthread_attr_t = unsafe { core::mem::zeroed() };
    // SAFETY: `pthread_self()` is the calling thread, alive; `attr` is a
    // valid local for the call to initialise.
    if unsafe { libc::pthread_getattr_np(libc::pthread_self(), &mut attr) } != 0 {
        return None;
    }
    let mut addr: *mut libc::c_void = core::ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: `attr` was initialised by `pthread_getattr_np` above; the
    // out-pointers are valid locals.
    let r = unsafe { libc::pthread_attr_getstack(&attr, &mut addr, &mut size) };
    // SAFETY: `attr` was initialised above and is destroyed exactly once,
    // here, and not used after.
    unsafe { libc::pthread_attr_destroy(&mut attr) };
    if r != 0 || addr.is_null() || size == 0 {
        return None;
    }
    let lo = addr as usize;
    Some((lo, lo.checked_add(size)?))
}
