#!/usr/bin/env bash
# Instructions per operation under System and TrackingAllocator, counted by
# valgrind's callgrind on the criterion bench binaries. Unlike wall time on
# a shared VM (runs differ by several percent), the count is deterministic
# to within glibc's heap-layout effects, so it shows what a change to the
# fast path did. Needs valgrind.
#
#   scripts/callgrind-alloc.sh
#   MAX_CHURN_EXTRA=32 scripts/callgrind-alloc.sh   # also fail (exit 1) if the
#       churn loop's extra instructions per alloc+free exceed 32 (CI's
#       regression check; 29.0 when it was set)
#
# Each workload runs for a few seconds in criterion's --profile-time mode
# (no analysis); the instructions inside the workload function (inclusive)
# are divided by the number of operations it ran (churn: 1000 per call,
# request mix: 1 per call).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
out="target/callgrind-alloc"
mkdir -p "$out"
# A build error is shown and stops the script.
if ! build=$(cargo bench --no-run --bench alloc_system --bench alloc_tracking 2>&1); then
    printf '%s\n' "$build" >&2
    exit 1
fi
bins=$(sed -n 's/.*Executable benches\/\(alloc_[a-z]*\)\.rs (\(.*\))/\1 \2/p' <<<"$build")
while read -r name bin; do
    for w in churn_1t request_mix; do
        variant=${name#alloc_}
        valgrind --tool=callgrind --callgrind-out-file="$out/$name.$w.out" \
            --toggle-collect='*workloads::churn*' --toggle-collect='*workloads::request*' \
            "$bin" --bench --profile-time 2 "^$w/$variant\$" >/dev/null 2>&1
    done
done <<<"$bins"
python3 - "$out" "${MAX_CHURN_EXTRA:-}" <<'PY'
import math, re, sys
out = sys.argv[1]
limit = float(sys.argv[2]) if sys.argv[2] else None
def measure(path, fn):
    """(inclusive instructions collected, calls to the workload function)."""
    names, total, calls, cur = {}, 0, 0, None
    with open(path) as f:
        for line in f:
            m = re.match(r'(c?fn)=\((\d+)\)(?: (.*))?', line)
            if m:
                if m.group(3):
                    names[m.group(2)] = m.group(3)
                if m.group(1) == 'cfn':
                    cur = names.get(m.group(2), '')
                continue
            if line.startswith('calls=') and cur and cur.endswith(fn):
                calls += int(line.split('=')[1].split()[0])
            if line.startswith('summary:') or line.startswith('totals:'):
                total = int(line.split()[1])
    return total, calls
per = {"churn_1t": ("workloads::churn", 1000), "request_mix": ("workloads::request", 1)}
print(f"{'workload':<12} {'System':>9} {'Tracking':>9} {'extra':>7} {'ratio':>6}  (instructions per operation; churn: per alloc+free)")
for w, (fn, ops) in per.items():
    r = {}
    for v in ("system", "tracking"):
        total, calls = measure(f"{out}/alloc_{v}.{w}.out", fn)
        r[v] = total / (calls * ops) if calls else float('nan')
    extra = r['tracking'] - r['system']
    print(f"{w:<12} {r['system']:>9.1f} {r['tracking']:>9.1f} {extra:>7.1f} {r['tracking'] / r['system']:>6.3f}")
    if w == "churn_1t" and limit is not None:
        if math.isnan(extra) or extra > limit:
            print(f"FAIL: churn extra {extra:.1f} instructions per alloc+free > {limit} (MAX_CHURN_EXTRA)")
            sys.exit(1)
        print(f"ok: churn extra {extra:.1f} <= {limit}")
PY
