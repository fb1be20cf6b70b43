#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and fails on the
# first crash (libFuzzer exits non-zero; the input is left in
# fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [SECONDS]     # per target, default 30
#
# Needs a nightly toolchain (libFuzzer's sanitizer coverage); installs
# cargo-fuzz if it is missing. Each target starts from its committed seeds
# in fuzz/corpus/<target>/ plus what earlier runs on this machine found
# (fuzz/target/corpus-run/<target>/, not committed).
set -euo pipefail

secs="${1:-30}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/../fuzz"

if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
    cargo "+$toolchain" install cargo-fuzz --locked
fi

targets=$(cargo "+$toolchain" fuzz list)
for t in $targets; do
    work="target/corpus-run/$t"
    mkdir -p "$work"
    echo "== fuzz $t for ${secs}s"
    # New inputs go to the first directory (the work copy), never to the
    # committed seeds.
    cargo "+$toolchain" fuzz run "$t" "$work" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1
done
echo "== fuzz: every target ran ${secs}s without a crash"
