#!/usr/bin/env bash
# Compares System and TrackingAllocator on the same workloads in one run:
# two criterion bench targets (a global allocator is per binary), run back to
# back, then a table of mean times and ratios read from criterion's output.
#
#   scripts/bench-alloc.sh            # full run (about 1 minute per target)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench alloc_system -- "$@" >/dev/null
cargo bench --bench alloc_tracking -- "$@" >/dev/null
python3 - <<'PY'
import json, os
root = "target/criterion"
def mean(group, name):
    p = os.path.join(root, group, name, "new", "estimates.json")
    with open(p) as f:
        return json.load(f)["mean"]["point_estimate"]
ops = {"churn_1t": 1000, "churn_2t": 1000, "request_mix": 1}
unit = {"churn_1t": "ns/op", "churn_2t": "ns/op per thread", "request_mix": "ns/request"}
print(f"{'workload':<12} {'System':>10} {'Tracking':>10} {'ratio':>7}  unit")
for g in ["churn_1t", "churn_2t", "request_mix"]:
    s, t = mean(g, "system") / ops[g], mean(g, "tracking") / ops[g]
    print(f"{g:<12} {s:>10.1f} {t:>10.1f} {t / s:>7.3f}  {unit[g]}")
r0 = mean("churn_1t", "tracking_rate0") / 1000
r1 = mean("churn_1t", "tracking_rate1") / 1000
print(f"\nrate 0 (sampling off): {r0:.1f} ns/op; rate 1 (every alloc sampled): {r1:.1f} ns/op")
print(f"sampled path: {r1 - r0:.0f} ns per sample")
PY
