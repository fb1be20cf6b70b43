#!/usr/bin/env bash
# Compatibility of leakscope's /metrics with real Prometheus tooling.
#
#   1. `promtool check metrics` on the canary's /metrics: no problems.
#   2. A real Prometheus server (loopback, its own temporary TSDB) scrapes
#      the canary every second; its HTTP API must return data for
#        leakscope_objects_live
#        histogram_quantile(0.9, sum by (le) (rate(leakscope_object_lifetime_seconds_bucket[10s])))
#        histogram_quantile(0.5, leakscope_objects_live_age_seconds_bucket)
#      (non-empty, numeric results).
#
# Installs Debian's `prometheus` package (promtool included) when missing,
# with service starts blocked by /usr/sbin/policy-rc.d (an existing one is
# put back afterwards). Everything started here is killed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."

say() { echo "compat-prometheus: $*"; }

# --- install -----------------------------------------------------------------
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    say "installing Debian's prometheus package (service starts blocked)"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    policy=/usr/sbin/policy-rc.d
    backup=""
    if [ -e "$policy" ]; then
        backup="$(mktemp)"
        $sudo cp -p "$policy" "$backup"
    fi
    restore_policy() {
        if [ -n "$backup" ]; then
            $sudo cp -p "$backup" "$policy"
            rm -f "$backup"
        else
            $sudo rm -f "$policy"
        fi
    }
    trap restore_policy EXIT
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    restore_policy
    trap - EXIT
    # The package's service must not be running (policy-rc.d blocked it).
    if pgrep -x prometheus >/dev/null 2>&1; then
        say "warning: a prometheus process was already running before this script"
    fi
fi
say "$(prometheus --version 2>&1 | head -1)"

# --- the canary ----------------------------------------------------------------
cargo build --quiet --example canary
target_dir="$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
canary="$target_dir/debug/examples/canary"
test -x "$canary" || { echo "compat-prometheus: $canary not built" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

"$canary" --duration 120 --addr 127.0.0.1:0 >"$work/canary.out" 2>"$work/canary.err" &
pids+=("$!")
addr=""
for _ in $(seq 1 100); do
    addr="$(sed -n 's#^listening on http://##p' "$work/canary.out" | head -1)"
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { cat "$work/canary.err" >&2; echo "compat-prometheus: canary did not start" >&2; exit 1; }
say "canary on $addr"

# HTTP GET without assuming curl is installed.
http_get() {
    python3 - "$1" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    sys.stdout.write(r.read().decode())
EOF
}

fail=0
check() { # check DESCRIPTION COMMAND...
    local what="$1"
    shift
    if "$@"; then
        echo "ok   - $what"
    else
        echo "FAIL - $what"
        fail=1
    fi
}

# --- 1. promtool ------------------------------------------------------------------
sleep 1 # let the canary create, drop and age some objects
http_get "http://$addr/metrics" >"$work/metrics.txt"
promtool_clean() {
    # promtool exits non-zero on errors and prints lint problems; both fail.
    promtool check metrics <"$work/metrics.txt" >"$work/promtool.out" 2>&1 || {
        cat "$work/promtool.out"
        return 1
    }
    if [ -s "$work/promtool.out" ]; then
        cat "$work/promtool.out"
        return 1
    fi
}
check "promtool check metrics: no problems ($(wc -l <"$work/metrics.txt") lines)" promtool_clean
check "histogram families are typed histogram" \
    grep -q '^# TYPE leakscope_object_lifetime_seconds histogram$' "$work/metrics.txt"
check "the memory family has its five kinds" \
    test "$(grep -c '^leakscope_memory_bytes{kind="' "$work/metrics.txt")" -eq 5

# --- 2. a real Prometheus server -------------------------------------------------
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: leakscope-canary
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ['$addr']
EOF
prometheus \
    --config.file="$work/prometheus.yml" \
    --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$port" \
    >"$work/prometheus.log" 2>&1 &
pids+=("$!")
say "prometheus on 127.0.0.1:$port"

# query EXPR: prints the number of result series with a numeric value
query() {
    python3 - "http://127.0.0.1:$port" "$1" <<'EOF'
import json, math, sys, urllib.parse, urllib.request
base, expr = sys.argv[1], sys.argv[2]
url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
try:
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
except Exception:
    print(0)
    sys.exit(0)
res = body.get("data", {}).get("result", []) if body.get("status") == "success" else []
ok = [s for s in res if not math.isnan(float(s["value"][1]))]
print(len(ok))
EOF
}

queries=(
    'leakscope_objects_live'
    'histogram_quantile(0.9, sum by (le) (rate(leakscope_object_lifetime_seconds_bucket[10s])))'
    'histogram_quantile(0.5, leakscope_objects_live_age_seconds_bucket)'
    'sum(leakscope_memory_bytes)'
)
for q in "${queries[@]}"; do
    n=0
    for _ in $(seq 1 60); do
        n="$(query "$q")"
        [ "$n" -gt 0 ] && break
        sleep 0.5
    done
    check "prometheus answers $q ($n series)" test "$n" -gt 0
done
if [ "$fail" != 0 ]; then
    echo "--- prometheus log (tail)"
    tail -20 "$work/prometheus.log"
    echo "--- targets"
    http_get "http://127.0.0.1:$port/api/v1/targets" || true
    echo
fi

[ "$fail" = 0 ] && say "all checks passed" || say "FAILED"
exit "$fail"
