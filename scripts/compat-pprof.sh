#!/usr/bin/env bash
# Compatibility of leakscope's pprof heap profiles with `go tool pprof`.
#
# Builds and runs examples/pprof_dump (which writes profiles of a known
# workload), then runs `go tool pprof` non-interactively on them:
#   -raw   sample types, period type (and for allocs the default type)
#          identical to profiles written by the Go runtime itself;
#   -top   the leaking user function on top, names shown without the binary
#          (-symbolize=none);
#   -tags  the age label is shown as a time;
#   -tagfocus=age=600s:  keeps the old memory and drops the young cache;
#   -base  the diff of two profiles shows the growth;
#   time windows (min_age+max_age, since=<mark>, until=<mark>, and the
#          ?debug=1 text of one): read, the right functions in use, and
#          -comments shows the filter statement.
# Installs Go (Debian's golang-go) when `go` is missing. No network otherwise:
# GOPROXY=off, GOTOOLCHAIN=local, caches under a temporary directory.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
    echo "compat-pprof: installing golang-go"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq golang-go >/dev/null
fi

# 1. Profiles from leakscope (built before HOME is moved: rustup reads it).
cargo build --quiet --example pprof_dump
target_dir="$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
ex="$target_dir/debug/examples/pprof_dump"
test -x "$ex" || { echo "compat-pprof: $ex not built" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home" "$work/pprof" "$work/nobin"
export HOME="$work/home"
export GOCACHE="$work/gocache"
export GOPATH="$work/gopath"
export GOFLAGS=""
export GO111MODULE=off
export GOTOOLCHAIN=local
export GOPROXY=off
export GOTELEMETRY=off
export PPROF_TMPDIR="$work/pprof"
export PPROF_BINARY_PATH="$work/nobin"

fail=0
check() { # check DESCRIPTION COMMAND... : run a test command, report
    local what="$1"
    shift
    if "$@"; then
        echo "ok   - $what"
    else
        echo "FAIL - $what"
        fail=1
    fi
}
pp() { go tool pprof -symbolize=none "$@" 2>"$work/pprof.err"; }

echo "compat-pprof: $(go version)"

# 1. Run the example.
(cd "$work" && "$ex" --base base.pb.gz --grown grown.pb.gz --allocs allocs.pb.gz \
    --old old.pb.gz --text heap.txt --svg heap.svg \
    --window window.pb.gz --since since.pb.gz --until until.pb.gz --since-text since.txt)

# 2. Reference profiles from the Go runtime.
mkdir -p "$work/goref"
cat >"$work/goref/main.go" <<'EOF'
package main

import (
	"os"
	"runtime"
	"runtime/pprof"
)

var keep [][]byte

func main() {
	runtime.MemProfileRate = 4096
	for i := 0; i < 64; i++ {
		keep = append(keep, make([]byte, 65536))
	}
	runtime.GC()
	for i, name := range []string{"heap", "allocs"} {
		f, err := os.Create(os.Args[1+i])
		if err != nil {
			panic(err)
		}
		if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
			panic(err)
		}
		f.Close()
	}
}
EOF
(cd "$work/goref" && go run main.go "$work/go-heap.pb.gz" "$work/go-allocs.pb.gz")

# Lines of `-raw` that describe the layout: period type and sample types.
layout() { pp -raw "$1" | grep -E '^(PeriodType:|alloc_objects/count)' || true; }
layout "$work/go-heap.pb.gz" >"$work/go-heap.layout"
layout "$work/go-allocs.pb.gz" >"$work/go-allocs.layout"
layout "$work/grown.pb.gz" >"$work/ls-heap.layout"
layout "$work/allocs.pb.gz" >"$work/ls-allocs.layout"
echo "go runtime heap layout:"
sed 's/^/    /' "$work/go-heap.layout"
# Go's heap profile leaves default_sample_type unset (tools then show the
# last type, inuse_space); leakscope sets it explicitly. Compare the types
# without the [dflt] marker, then check where the marker is.
check "heap profile: sample types and period type as Go's" \
    cmp -s <(sed 's/\[dflt\]//' "$work/go-heap.layout") <(sed 's/\[dflt\]//' "$work/ls-heap.layout")
check "allocs profile: sample types, default and period type as Go's" \
    cmp -s "$work/go-allocs.layout" "$work/ls-allocs.layout"
check "heap profile defaults to inuse_space" grep -q 'inuse_space/bytes\[dflt\]' "$work/ls-heap.layout"
check "allocs profile defaults to alloc_space" grep -q 'alloc_space/bytes\[dflt\]' "$work/ls-allocs.layout"

# -top: flat bytes of a function (first column, in kB) or nothing.
flat_kb() { # flat_kb FILE FUNCTION [pprof flags...]
    local file="$1" func="$2"
    shift 2
    pp -top -unit=kB "$@" "$file" | awk -v f="$func" '
        $6 == f { v = $1; sub(/kB$/, "", v); print v; exit }'
}
# near VALUE TARGET: VALUE within 2% of TARGET (estimates, not exact counts).
near() { awk -v v="${1:-0}" -v t="$2" 'BEGIN { d = v - t; if (d < 0) d = -d; exit !(d <= t * 0.02) }'; }
pp -top "$work/grown.pb.gz" >"$work/top.txt"
sed -n '1,16p' "$work/top.txt"
first_fn="$(awk '/flat%/ { getline; print $6; exit }' "$work/top.txt")"
check "top function of the grown heap is pprof_dump::leak_sessions (got $first_fn)" \
    test "$first_fn" = "pprof_dump::leak_sessions"
check "names, files and lines are in the profile (no binary needed)" \
    grep -q 'pprof_dump::build_pool' "$work/top.txt"
lines_ok() { pp -raw "$work/grown.pb.gz" | grep -Eq 'pprof_dump::leak_sessions .*pprof_dump\.rs:[0-9]+'; }
check "locations carry source file and line" lines_ok
buildid_ok() { pp -raw "$work/grown.pb.gz" | grep -Eq '^1: 0x[0-9a-f]+/0x[0-9a-f]+/0x[0-9a-f]+ .*pprof_dump [0-9a-f]{16,}'; }
check "mapping 1 is the main binary with its build id" buildid_ok

# -tags: age labels.
pp -tags "$work/grown.pb.gz" >"$work/tags.txt"
cat "$work/tags.txt"
check "-tags shows the age label" grep -q 'age:' "$work/tags.txt"
check "-tags shows 20-minute-old memory in the 30-minute bucket" grep -q '1800s' "$work/tags.txt"

# -tagfocus on age: old memory only.
old_leak="$(flat_kb "$work/grown.pb.gz" pprof_dump::leak_sessions -tagfocus=age=600s:)"
old_cache="$(flat_kb "$work/grown.pb.gz" 'pprof_dump::fresh_cache::{{closure}}' -tagfocus=age=600s:)"
all_cache="$(flat_kb "$work/grown.pb.gz" 'pprof_dump::fresh_cache::{{closure}}')"
echo "leak_sessions older than 10m: ${old_leak:-none} kB; fresh_cache: all ${all_cache:-none} kB, older than 10m ${old_cache:-none} kB"
check "-tagfocus=age=600s: keeps the 2 MiB of old leaked sessions" near "$old_leak" 2048
young_dropped() { test "${old_cache:-none}" = none && near "$all_cache" 3072; }
check "-tagfocus=age=600s: drops the young cache (3 MiB without the filter)" young_dropped
old_prof="$(flat_kb "$work/old.pb.gz" pprof_dump::leak_sessions)"
check "min_age=10m profile keeps the 2 MiB of old sessions (got ${old_prof:-none} kB)" \
    near "$old_prof" 2048

# -base: the diff shows the growth.
grew="$(flat_kb "$work/grown.pb.gz" pprof_dump::leak_sessions -base "$work/base.pb.gz")"
pool="$(flat_kb "$work/grown.pb.gz" 'pprof_dump::build_pool::{{closure}}' -base "$work/base.pb.gz")"
echo "diff grown - base: leak_sessions ${grew:-none} kB, build_pool ${pool:-none}"
check "-base: leak_sessions grew by 6 MiB" near "$grew" 6144
check "-base: the pool did not grow" test "${pool:-none}" = none -o "${pool:-0}" = 0

check "flame graph SVG written" grep -q 'pprof_dump::leak_sessions' "$work/heap.svg"
check "text form has Go's header" grep -q '^heap profile: .* @ heap/2$' "$work/heap.txt"
# pprof's legacy text parser reads the ?debug=1 form without scaling the
# (already scaled) values again: its in-use total equals the header's.
text_inuse="$(sed -n 's/^heap profile: [0-9]*: \([0-9]*\) .*/\1/p' "$work/heap.txt")"
text_total="$(pp -top -unit=B "$work/heap.txt" | sed -n 's/.* of \([0-9]*\)B total.*/\1/p')"
check "legacy parser reads the text form unscaled ($text_total B vs header $text_inuse B)" \
    test -n "$text_inuse" -a "$text_total" = "$text_inuse"

# Time windows: every windowed profile is read, keeps the right memory in
# use, and says it is filtered (-comments).
reads() { pp -raw "$1" >/dev/null; }
for f in window since until; do
    check "$f.pb.gz is read by go tool pprof" reads "$work/$f.pb.gz"
    pp -comments "$work/$f.pb.gz" >"$work/$f.comments" || true
    check "$f.pb.gz: -comments states the filter" grep -q '^leakscope filter: heap born ' "$work/$f.comments"
done
sed 's/^/    /' "$work/window.comments"
w_leak="$(flat_kb "$work/window.pb.gz" pprof_dump::leak_sessions)"
w_pool="$(flat_kb "$work/window.pb.gz" 'pprof_dump::build_pool::{{closure}}')"
w_cache="$(flat_kb "$work/window.pb.gz" 'pprof_dump::fresh_cache::{{closure}}')"
echo "min_age=10m&max_age=30m: leak_sessions ${w_leak:-none} kB, build_pool ${w_pool:-none} kB, fresh_cache ${w_cache:-none} kB"
check "min_age=10m&max_age=30m keeps the 2 MiB of old sessions" near "$w_leak" 2048
check "min_age=10m&max_age=30m keeps the 4 MiB pool" near "$w_pool" 4096
check "min_age=10m&max_age=30m drops the young cache" test "${w_cache:-none}" = none
s_leak="$(flat_kb "$work/since.pb.gz" pprof_dump::leak_sessions)"
s_pool="$(flat_kb "$work/since.pb.gz" 'pprof_dump::build_pool::{{closure}}')"
s_cache="$(flat_kb "$work/since.pb.gz" 'pprof_dump::fresh_cache::{{closure}}')"
echo "since=deploy: leak_sessions ${s_leak:-none} kB, build_pool ${s_pool:-none} kB, fresh_cache ${s_cache:-none} kB"
check "since=deploy keeps the 6 MiB of sessions leaked after it" near "$s_leak" 6144
check "since=deploy keeps the 3 MiB cache" near "$s_cache" 3072
check "since=deploy drops the pool" test "${s_pool:-none}" = none
u_leak="$(flat_kb "$work/until.pb.gz" pprof_dump::leak_sessions)"
u_cache="$(flat_kb "$work/until.pb.gz" 'pprof_dump::fresh_cache::{{closure}}')"
echo "until=deploy: leak_sessions ${u_leak:-none} kB, fresh_cache ${u_cache:-none} kB"
check "until=deploy keeps the 2 MiB of sessions leaked before it" near "$u_leak" 2048
check "until=deploy drops the cache" test "${u_cache:-none}" = none
check "since=deploy text form states the filter" grep -q '^# leakscope filter: heap born ' "$work/since.txt"
s_text_inuse="$(sed -n 's/^heap profile: [0-9]*: \([0-9]*\) .*/\1/p' "$work/since.txt")"
s_text_total="$(pp -top -unit=B "$work/since.txt" | sed -n 's/.* of \([0-9]*\)B total.*/\1/p')"
check "legacy parser reads the since=deploy text form ($s_text_total B vs header $s_text_inuse B)" \
    test -n "$s_text_inuse" -a "$s_text_total" = "$s_text_inuse"

if [ "$fail" -ne 0 ]; then
    echo "compat-pprof: FAILED"
    cat "$work/pprof.err" >&2 || true
    exit 1
fi
echo "compat-pprof: all checks passed"
