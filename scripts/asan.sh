#!/usr/bin/env bash
# AddressSanitizer over the allocator, tracked-object and server tests and
# the library's unit tests (nightly `-Zsanitizer=address`).
#
#   scripts/asan.sh            # build and run everything listed below
#   scripts/asan.sh --list     # print the test list and exit
#
# Needs a nightly toolchain (ASAN_TOOLCHAIN, default `nightly`). The build
# goes to target/x86_64-unknown-linux-gnu/ (`--target` keeps the sanitizer
# flags off build scripts and proc macros).
#
# `--cfg leakscope_asan` turns instrumentation off in exactly one place, the
# caching unwinder's stack reads (`walk_frames` in src/alloc/unwind/walk.rs,
# the reason is written there); nothing else is excluded.
#
# ASan and leakscope: `TrackingAllocator::system()` wraps `System`, i.e.
# malloc/free, which ASan intercepts, so every block leakscope hands out
# has ASan's redzones and use-after-free / overflow checks.
#
# ASAN_OPTIONS:
# - detect_leaks=0: the tests leak on purpose (a leak detector's tests:
#   blocks kept live to be found, `mem::forget`, tables and caches that
#   live for the process, threads left running), so LeakSanitizer would
#   report the intended leaks, not bugs;
# - the rest make a finding fail loudly: abort with a non-zero exit even in
#   a forked child (`alloc_fork`'s parent sees the child's status), and
#   symbolize the report.
set -euo pipefail

toolchain="${ASAN_TOOLCHAIN:-nightly}"
target=x86_64-unknown-linux-gnu

# The allocator's, objects' and server's tests, from tests/ (by name, so a
# new file is a conscious addition).
tests=(
    alloc_bounds alloc_concurrency alloc_fork alloc_lifetimes
    alloc_passthrough alloc_reentrancy alloc_thread_exit alloc_totals
    alloc_unwind
    track_ages track_arc_holders track_coarse_clock track_labels
    track_sites track_unwind_safe track_with_allocator leak_check
    server_accounting server_hostile server_routes
    heap_growth window_marks dumps_limits
)
# server_accounting can fail here (seen once in four runs) on a real
# accounting bug, not an ASan one: a debug-server worker thread that tokio
# starts inside the measured window frees std's 24-byte `ThreadInit` box
# (allocated by the guarded spawning thread) and allocates its thread-name
# box before `on_thread_start` enters the guard, so the application's live
# bytes move (-3 bytes per worker start on stable, reproducible by letting
# the blocking pool's workers idle out). Kept in: the fix belongs in the
# listener, not in this list.
# Left out: memory_breakdown and memory_routes (they check RSS moving by
# what a 64 MiB malloc touches; under ASan malloc is its interceptor's,
# with shadow memory beside every block, so RSS is not what they measure).
# Left out: server_budget (64 full renders under load; its minutes of
# rendering exercise nothing the routes and accounting tests do not, and
# under ASan it alone would take most of the time budget).

if [ "${1:-}" = --list ]; then
    printf '%s\n' lib "${tests[@]}"
    exit 0
fi

cd "$(dirname "$0")/.."

export RUSTFLAGS="${RUSTFLAGS:-} -Zsanitizer=address --cfg leakscope_asan"
export RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -Zsanitizer=address --cfg leakscope_asan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:symbolize=1:${ASAN_OPTIONS:-}"

# Unit tests skipped under ASan, each for a reason that is ASan's, not
# leakscope's:
# - shared_library_address_resolves: it checks that `libc::malloc` lies in
#   libc; with ASan's runtime linked into the test binary the symbol is
#   ASan's malloc interceptor, in the executable.
skip=(--skip symbolize::tests::shared_library_address_resolves)

args=(--target "$target" --all-features --lib)
for t in "${tests[@]}"; do
    args+=(--test "$t")
done

echo "== asan: $(rustc "+$toolchain" --version)"
echo "== asan: RUSTFLAGS=$RUSTFLAGS"
echo "== asan: ASAN_OPTIONS=$ASAN_OPTIONS"
echo "== asan: lib ${tests[*]}"
start=$(date +%s)
cargo "+$toolchain" test "${args[@]}" --no-run
built=$(date +%s)
echo "== asan: built in $((built - start)) s"
cargo "+$toolchain" test "${args[@]}" --no-fail-fast -- "${skip[@]}"
end=$(date +%s)
echo "== asan: ran lib and ${#tests[@]} test binaries in $((end - built)) s (total $((end - start)) s)"
