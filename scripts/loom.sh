#!/usr/bin/env bash
# Model checks with loom (tests/loom_*.rs): the fork protocol's loader
# gate and the counter blocks' sequence lock. Bounded (preemption bound
# 3): well under a minute of checking; the first build takes a few
# minutes.
#
#   scripts/loom.sh
#
# Built by the `loom/` package, in its own target directory: `--cfg loom`
# changes every crate's flags (it would invalidate the normal builds), and
# must not reach leakscope's dev-dependencies (see loom/Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/../loom"
export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-../target/loom}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
timeout 900 cargo test --release --tests
