#!/usr/bin/env bash
# Compares System and TrackingAllocator on the same workloads in one run:
# criterion bench targets (a global allocator is per binary) run back to
# back, then a table of mean times and ratios read from criterion's output.
# A third target, a wrapper with one shared atomic counter, calibrates what
# "one atomic per call" costs on the same workloads.
#
#   scripts/bench-alloc.sh            # full run (about 1 minute per target)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench alloc_system -- "$@" >/dev/null
cargo bench --bench alloc_tracking -- "$@" >/dev/null
cargo bench --bench alloc_counter -- "$@" >/dev/null
python3 - <<'PY'
import json, os
root = "target/criterion"
def mean(group, name):
    p = os.path.join(root, group, name, "new", "estimates.json")
    with open(p) as f:
        return json.load(f)["mean"]["point_estimate"]
ops = {"churn_1t": 1000, "churn_2t": 1000, "request_mix": 1}
unit = {"churn_1t": "ns/op", "churn_2t": "ns/op per thread", "request_mix": "ns/request"}
print(f"{'workload':<12} {'System':>8} {'Tracking':>9} {'ratio':>6} {'1 atomic':>9} {'ratio':>6}  unit")
for g in ["churn_1t", "churn_2t", "request_mix"]:
    s, t = mean(g, "system") / ops[g], mean(g, "tracking") / ops[g]
    a = mean(g, "atomic_counter") / ops[g]
    print(f"{g:<12} {s:>8.1f} {t:>9.1f} {t / s:>6.3f} {a:>9.1f} {a / s:>6.3f}  {unit[g]}")
r0 = mean("churn_1t", "tracking_rate0") / 1000
r1 = mean("churn_1t", "tracking_rate1") / 1000
print(f"\nrate 0 (sampling off): {r0:.1f} ns/op; rate 1 (every alloc sampled): {r1:.1f} ns/op")
print(f"sampled path: {r1 - r0:.0f} ns per sample")
PY
