#!/usr/bin/env bash
# Model check of the cohort hand-off between a stripe's owner and remote
# droppers (src/objects/cohort.rs) with loom: tests/loom_cohort.rs, every
# interleaving of each scenario within the preemption bound
# (LOOM_MAX_PREEMPTIONS, default 3). The test first checks that its copy of
# the code is still verbatim in cohort.rs.
#
#   scripts/loom-cohort.sh
#
# Its own target dir (target/loom): `--cfg leakscope_loom` changes every crate's
# flags, so sharing target/ would rebuild the normal build afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
RUSTFLAGS="${RUSTFLAGS:-} --cfg leakscope_loom" \
    cargo test --release --target-dir target/loom --test loom_cohort
echo "== loom-cohort: $(($(date +%s) - start)) s"
