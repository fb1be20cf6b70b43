#!/usr/bin/env bash
# The service-level benchmark of issue 16: a small axum JSON service
# (examples/svc/service.rs) built once per global allocator, driven at a
# fixed rate by an open-loop load generator (examples/svc/loadgen.rs), with
# and without a canary's scrapes of leakscope's debug server.
#
# Variants: system, tracking (TrackingAllocator over System, default sample
# rate, debug server on), jemalloc, tracking_jemalloc (TrackingAllocator
# over jemalloc). The tracking variants run twice per round: unscraped, and
# scraped (GET /metrics every 1 s, GET /debug/pprof/heap every 10 s).
#
# With two or more CPUs (and taskset) the server runs on CPU 0 and the
# generator on CPU 1. Unless RATE is given, the System variant's maximum
# rate is measured first (closed loop, 3 s) and every run goes at half of
# it. Each run is a fresh server process: WARMUP seconds of load that are
# not measured, then SECS measured seconds. Runs are interleaved across
# ROUNDS rounds (the order rotates each round), so slow drift of a shared
# machine hits every variant alike.
#
# The table gives, per variant, the median over rounds of: latency
# percentiles from the scheduled send time, the 100-ms windows holding a
# request slower than 10 ms, server CPU time (utime+stime of every thread)
# per request and its ratio to the inner allocator's unscraped run of the
# same round, peak RSS (VmHWM), and the scrape durations (median and max
# over all rounds).
#
#   scripts/bench-service.sh                     # SECS=20 ROUNDS=3
#   SECS=10 ROUNDS=1 scripts/bench-service.sh    # a quick check
#   RATE=3000 scripts/bench-service.sh           # a fixed rate
#   VARIANTS="system tracking tracking:scraped" scripts/bench-service.sh
#   SPIN=0 scripts/bench-service.sh              # generator sleeps (busy machine)
#
# The generator reports how late it was itself at its due times; runs where
# that p99 exceeds 0.5 ms are listed under the table (a busy machine).
#
# Results: target/bench-service/results.jsonl (one JSON line per run) and
# the servers' output beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${SECS:-20}"
ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-3}"
RATE="${RATE:-}"
CONNS="${CONNS:-32}"
VARIANTS="${VARIANTS:-system tracking tracking:scraped jemalloc tracking_jemalloc tracking_jemalloc:scraped}"

out="target/bench-service"
bin="target/release/examples"
rm -rf "$out"
mkdir -p "$out"

srv_pin=()
gen_pin=()
spin=()
# The generator's clock (see examples/svc/loadgen.rs): SPIN=1 spins before
# each due time (on time to microseconds and cheapest per request, but only
# on a quiet machine: a busy one's scheduler runs a spinning process late),
# SPIN=0 sleeps on a timer thread (on time to tens of microseconds, one
# wake-up per request). SPIN=auto (the default): spin when the generator
# has a CPU of its own and the 1-minute load average (read before the
# build) is below 1.
SPIN="${SPIN:-auto}"
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
    srv_pin=(taskset -c 0)
    gen_pin=(taskset -c 1)
    pinning="server on CPU 0, generator on CPU 1"
    if [ "$SPIN" = auto ]; then
        SPIN=$(awk '{ print ($1 < 1.0) ? 1 : 0 }' /proc/loadavg)
    fi
else
    pinning="not pinned ($(nproc) CPU(s)$(command -v taskset >/dev/null 2>&1 || echo ', no taskset'))"
    if [ "$SPIN" = auto ]; then
        SPIN=0
    fi
fi
clock="timer thread"
if [ "$SPIN" = 1 ]; then
    spin=(--spin)
    clock="spinning"
fi

cargo build --release --example svc_system --example svc_tracking \
    --example svc_jemalloc --example svc_tracking_jemalloc --example svc_loadgen

server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap cleanup EXIT

# start_server VARIANT NAME: starts target/release/examples/svc_VARIANT and
# sets server_pid, svc_addr and debug_addr (empty without a debug server).
start_server() {
    local log="$out/$2.out"
    "${srv_pin[@]}" "$bin/svc_$1" 127.0.0.1:0 >"$log" 2>"$out/$2.err" &
    server_pid=$!
    svc_addr=""
    for _ in $(seq 1 200); do
        svc_addr=$(sed -n 's|^listening on http://||p' "$log")
        [ -n "$svc_addr" ] && break
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "bench-service: svc_$1 exited:" >&2
            cat "$out/$2.err" >&2
            exit 1
        fi
        sleep 0.05
    done
    if [ -z "$svc_addr" ]; then
        echo "bench-service: svc_$1 did not print its address" >&2
        exit 1
    fi
    debug_addr=$(sed -n 's|^debug on http://||p' "$log")
}

echo "bench-service: $(nproc) CPU(s), $pinning, generator clock: $clock (SPIN=$SPIN); load average$(uptime | sed 's/.*load average//')"

if [ -z "$RATE" ]; then
    start_server system max
    line=$("${gen_pin[@]}" "$bin/svc_loadgen" --target "$svc_addr" --max --secs 3 --conns 16 \
        --pid "$server_pid" | grep '^max_rate=' || true)
    cleanup
    echo "bench-service: $line"
    max=$(sed -n 's/^max_rate=\([0-9]*\).*/\1/p' <<<"$line")
    gen_pct=$(sed -n 's/.*generator_cpu_pct=\([0-9]*\).*/\1/p' <<<"$line")
    if [ -n "$gen_pct" ] && [ "$gen_pct" -ge 90 ]; then
        echo "bench-service: warning: the generator used ${gen_pct}% of its CPU, so this maximum may be the generator's; set RATE" >&2
    fi
    if [ -z "$max" ] || [ "$max" -le 0 ]; then
        echo "bench-service: could not measure the maximum rate" >&2
        exit 1
    fi
    RATE=$((max / 2))
    echo "bench-service: System variant's maximum ${max}/s (closed loop, 16 connections); running at ${RATE}/s"
else
    echo "bench-service: running at RATE=${RATE}/s"
fi

read -r -a configs <<<"$VARIANTS"
n=${#configs[@]}
for r in $(seq 1 "$ROUNDS"); do
    for k in $(seq 0 $((n - 1))); do
        cfg=${configs[$(((k + r - 1) % n))]}
        variant=${cfg%%:*}
        scraped=""
        label="$variant"
        if [ "$cfg" != "$variant" ]; then
            scraped=1
            label="$variant+scraped"
        fi
        start_server "$variant" "r$r-${label/+/-}"
        args=(--target "$svc_addr" --rate "$RATE" --secs "$SECS" --warmup "$WARMUP"
            --conns "$CONNS" --pid "$server_pid" --label "$label" --json "$out/results.jsonl")
        if [ -n "$scraped" ]; then
            if [ -z "$debug_addr" ]; then
                echo "bench-service: svc_$variant has no debug server to scrape" >&2
                exit 1
            fi
            args+=(--debug "$debug_addr")
        fi
        echo "--- round $r/$ROUNDS: $label"
        "${gen_pin[@]}" "$bin/svc_loadgen" "${args[@]}" "${spin[@]}"
        cleanup
    done
done

echo "bench-service: done; load average$(uptime | sed 's/.*load average//')"
python3 - "$out/results.jsonl" "$RATE" "$SECS" "$ROUNDS" <<'PY'
import json, statistics, sys
path, rate, secs, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
runs = [json.loads(l) for l in open(path)]
labels = []
for x in runs:
    if x["label"] not in labels:
        labels.append(x["label"])
by = {l: [x for x in runs if x["label"] == l] for l in labels}
inner = {"tracking": "system", "tracking_jemalloc": "jemalloc"}
def near_scrape(x):
    """Stalled windows that overlap a scrape (from its start to 100 ms after its end)."""
    spans = [(a, a + ms / 1e3 + 0.1) for k in ("metrics", "heap")
             for a, ms in zip(x[k]["at_s"], x[k]["each_ms"])]
    return sum(1 for w, m in enumerate(x["window_max_ms"]) if m > 10
               and any(a < (w + 1) * 0.1 and w * 0.1 < b for a, b in spans))
def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None
def f(v, fmt):
    return "-" if v is None else format(v, fmt)
print()
print(f"rate {rate}/s, {secs} s measured per run, {rounds} round(s); medians over rounds;"
      " latency in ms from the scheduled send time")
hdr = (f"{'variant':<26} {'p50':>6} {'p99':>7} {'p99.9':>7} {'max':>7} {'stalls':>12}"
       f" {'CPU us/req':>10} {'x inner':>8} {'RSS MiB':>8} {'/metrics med/max ms':>20}"
       f" {'heap med/max ms':>16} {'errors':>6}")
print(hdr)
print("-" * len(hdr))
for l in labels:
    rs = by[l]
    base = l.split("+")[0]
    ratio = []
    if base in inner:
        for i, x in enumerate(rs):
            ref = by.get(inner[base], [])
            if i < len(ref) and x["cpu_us_per_req"] and ref[i]["cpu_us_per_req"]:
                ratio.append(x["cpu_us_per_req"] / ref[i]["cpu_us_per_req"])
    def scr(key):
        ms = [m for x in rs for m in x[key]["each_ms"]]
        if not ms:
            return "-"
        return f"{statistics.median(ms):.1f}/{max(ms):.1f}"
    def ms(key, fmt):
        v = med([x[key] for x in rs])
        return f(v and v / 1e3, fmt)
    stalls = med([x["stall_windows"] for x in rs])
    rss = med([x["vm_hwm_kib"] for x in rs])
    ratio_s = f"{statistics.median(ratio):.3f}" if ratio else ""
    stalls_s = f"{stalls:g}/{rs[0]['windows']}"
    if "+scraped" in l:
        stalls_s += f" ({med([near_scrape(x) for x in rs]):g})"
    print(f"{l:<26} {ms('p50_us', '.3f'):>6} {ms('p99_us', '.2f'):>7} {ms('p999_us', '.2f'):>7}"
          f" {ms('max_us', '.1f'):>7} {stalls_s:>12} {f(med([x['cpu_us_per_req'] for x in rs]), '.1f'):>10}"
          f" {ratio_s:>8} {f(rss and rss / 1024, '.1f'):>8} {scr('metrics'):>20} {scr('heap'):>16}"
          f" {sum(x['errors'] for x in rs):>6}")
if rounds > 1:
    print()
    print("per round (p99 ms, CPU us/req):")
    for l in labels:
        print(f"  {l:<26} " + "  ".join(
            f"{x['p99_us'] / 1e3:.2f}, {f(x['cpu_us_per_req'], '.1f')}" for x in by[l]))
late = [f"{x['label']} (round {i + 1}): p99 {x['gen_late_p99_us'] / 1e3:.2f} ms, max {x['gen_late_max_us'] / 1e3:.1f} ms"
        for l in labels for i, x in enumerate(by[l]) if x["gen_late_p99_us"] > 500]
if late:
    print()
    print("warning: the generator itself was late at its due times (its CPU was busy), so these runs'"
          " latencies are partly the generator's:")
    for w in late:
        print("  " + w)
print()
print("stalls: 100-ms windows (of the measured part) holding a request slower than 10 ms"
      " (in parentheses: those overlapping a scrape or the 100 ms after it);"
      " x inner: CPU per request over the inner allocator's unscraped run of the same round"
      " (tracking over system, tracking_jemalloc over jemalloc); RSS: peak (VmHWM);"
      " scrapes: median and max over every scrape of every round, timed from connect to last byte.")
PY
