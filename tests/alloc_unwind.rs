//! Sampled stacks are walked by leakscope's caching unwinder (not the much
//! slower system unwinder) on ordinary threads, and its stacks name the
//! user's functions with the user's frame first, on the main thread, on a
//! spawned thread, through a deep recursion, and after the process loads
//! and unloads a library (the unwinder rebuilds its module list).
//!
//! `harness = false`: asserting "no sample fell back" needs the test's
//! threads alone to allocate (two threads sampling at once while the module
//! list is rebuilt would rightly make one of them fall back).

use std::hint::black_box;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

#[inline(never)]
fn allocate_in_named_function() -> Vec<u8> {
    black_box(vec![1u8; 333])
}

#[inline(never)]
fn recurse_then_allocate(depth: u32) -> Vec<u8> {
    if depth == 0 {
        return black_box(vec![2u8; 444]);
    }
    let v = recurse_then_allocate(black_box(depth - 1));
    black_box(v)
}

fn first_frame_of(snap: &leakscope::Snapshot, size: u64) -> Vec<String> {
    snap.heap
        .sites
        .iter()
        .filter(|s| s.live_bytes == size)
        .filter_map(|s| s.frames.first().map(|f| f.function.clone()))
        .collect()
}

fn caching_unwinder_walks_ordinary_threads() {
    leakscope::set_sample_rate(1);
    let before = leakscope::heap_stats();
    let a = allocate_in_named_function();
    let b = std::thread::spawn(allocate_in_named_function)
        .join()
        .unwrap();
    let c = recurse_then_allocate(20);
    let after = leakscope::heap_stats();
    leakscope::set_sample_rate(512 * 1024);

    assert!(after.samples >= before.samples + 3);
    assert_eq!(
        after.system_unwinds, before.system_unwinds,
        "every sample here should have been walked by the caching unwinder"
    );
    let snap = leakscope::snapshot();
    let named = first_frame_of(&snap, 333);
    assert!(
        named
            .iter()
            .filter(|f| f.contains("allocate_in_named_function"))
            .count()
            >= 1,
        "{named:?}"
    );
    let deep = snap
        .heap
        .sites
        .iter()
        .find(|s| s.live_bytes == 444)
        .expect("the recursion's sample");
    let depth = deep
        .frames
        .iter()
        .filter(|f| f.function.contains("recurse_then_allocate"))
        .count();
    assert_eq!(depth, 21, "{:#?}", deep.frames);
    drop((a, b, c));
}

/// A library the process has not loaded yet: part of glibc, so present
/// wherever leakscope's caching unwinder runs.
const LIB: &std::ffi::CStr = c"libresolv.so.2";

fn dlopen_and_dlclose_rebuild_the_module_list() {
    leakscope::set_sample_rate(1);
    let before = leakscope::heap_stats();
    let a = allocate_in_named_function();
    let loaded_before = leakscope::heap_stats().metadata_bytes;
    // SAFETY: loading a glibc library with no constructors of note.
    let h = unsafe { libc::dlopen(LIB.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!h.is_null(), "dlopen libresolv.so.2");
    let b = allocate_in_named_function();
    assert!(
        leakscope::heap_stats().metadata_bytes > loaded_before,
        "the sample after dlopen should have mapped a new module list"
    );
    // SAFETY: `h` came from dlopen above; nothing of it is in use.
    assert_eq!(unsafe { libc::dlclose(h) }, 0);
    let c = allocate_in_named_function();
    let after = leakscope::heap_stats();
    leakscope::set_sample_rate(512 * 1024);
    assert!(after.samples >= before.samples + 3);
    assert_eq!(
        after.system_unwinds, before.system_unwinds,
        "after dlopen and dlclose the module list is rebuilt, not given up"
    );
    drop((a, b, c));
}

fn main() {
    caching_unwinder_walks_ordinary_threads();
    println!("test caching_unwinder_walks_ordinary_threads ... ok");
    dlopen_and_dlclose_rebuild_the_module_list();
    println!("test dlopen_and_dlclose_rebuild_the_module_list ... ok");
    println!("test result: ok. 2 passed; 0 failed");
}
