#!/usr/bin/env bash
# make bench: Go benchmarks, with peers run side by side in the same run; prints medians
# and ratios. Root is needed for the container benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${BENCH_COUNT:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

go test -run '^$' -bench . -benchmem -count "$count" ./internal/... ./services/containerd-lite/... ./services/guestd/... ./services/netd/... ./services/certd/... ./integration/... | tee "$out"

# Median ns/op per benchmark name.
median() {
	grep -E "^$1(-[0-9]+)? " "$out" | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'
}
ratio() {
	local a b
	a=$(median "$1"); b=$(median "$2")
	[ -n "$a" ] && [ -n "$b" ] || return 0
	awk -v a="$a" -v b="$b" -v n1="$1" -v n2="$2" 'BEGIN {printf "%-45s %10.2f ms\n%-45s %10.2f ms\nratio %s / %s = %.2f\n\n", n1, a/1e6, n2, b/1e6, n1, n2, a/b}'
}
echo
echo "== medians of $count runs =="
ratio BenchmarkContainerCreateStartStop BenchmarkLXCExecuteSameRootfs
