#!/usr/bin/env bash
# make bench: Go benchmarks, with peers run side by side in the same run; prints medians
# and ratios. Root is needed for the container and image benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${BENCH_COUNT:-5}
# The binaries and pinned tools make builds (make bench builds them first).
export HEARTH_BIN_DIR=${HEARTH_BIN_DIR:-$PWD/bin} HEARTH_BASE_ROOTFS=${HEARTH_BASE_ROOTFS:-$PWD/build/base-rootfs}
export PATH="$PWD/bin/tools:$PATH"
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# A debootstrapped root file system (with postgresql-15: about 400 MB), cached outside
# the clone, for the image import benchmarks.
if [ -z "${HEARTH_BENCH_ROOTFS_TAR:-}" ] && [ "$(id -u)" = 0 ]; then
	HEARTH_BENCH_ROOTFS_TAR=$(deploy/images/debootstrap.sh postgresql-15)
	export HEARTH_BENCH_ROOTFS_TAR
fi

status=0
# (BenchmarkDensity runs once, below, not with the others.)
env -u HEARTH_BENCH_DENSITY go test -run '^$' -bench "${BENCH:-.}" -benchmem -count "$count" -timeout 60m \
	./internal/... ./services/containerd-lite/... ./services/guestd/... ./services/netd/... ./services/certd/... ./integration/... | tee "$out" || status=$?
trap 'rm -f "$out"; exit $status' EXIT

# median NAME [UNIT]: the median over the runs of NAME's ns/op, or of the metric UNIT.
median() {
	local unit=${2:-ns/op}
	{ grep -E "^$1(-[0-9]+)? " "$out" || true; } |
		awk -v u="$unit" '{for (i = 2; i <= NF; i++) if ($i == u) print $(i-1)}' |
		sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'
}
# ratio A B: medians of two benchmarks' ns/op and their ratio.
ratio() {
	local a b
	a=$(median "$1"); b=$(median "$2")
	[ -n "$a" ] && [ -n "$b" ] || return 0
	awk -v a="$a" -v b="$b" -v n1="$1" -v n2="$2" 'BEGIN {printf "%-45s %10.2f ms\n%-45s %10.2f ms\nratio %s / %s = %.2f\n\n", n1, a/1e6, n2, b/1e6, n1, n2, a/b}'
}
# show NAME UNIT LABEL: one metric's median.
show() {
	local v
	v=$(median "$1" "$2")
	[ -n "$v" ] && printf '%-45s %10s %s\n' "$3" "$v" "$2"
	return 0
}
# trace NAME TITLE: the start's breakdown a benchmark reported (metrics at-STEP-ms: when
# each step ended, from the start's request), medians in time order, each with the time
# since the step before it.
trace() {
	local units u v
	units=$({ grep -E "^$1(-[0-9]+)? " "$out" || true; } | tr ' \t' '\n\n' | grep -E '^at-.*-ms$' | sort -u)
	[ -n "$units" ] || return 0
	echo "$2 (ms from the request: end of each step, and its own time)"
	for u in $units; do
		v=$(median "$1" "$u")
		[ -n "$v" ] && printf '%s %s\n' "$v" "$(printf '%s' "$u" | sed 's/^at-//; s/-ms$//')"
	done | sort -g | awk '{printf "  %-34s %8.2f %+8.2f\n", $2, $1, $1 - last; last = $1}'
	echo
}
echo
echo "== medians of $count runs =="
ratio BenchmarkContainerCreateStartStop BenchmarkLXCExecuteSameRootfs
show BenchmarkContainerCreateStartStop create+start-p50-ms "container create+start (p50)"
show BenchmarkOverlayCreateDestroy create-p50-ms "overlay create (p50)"
show BenchmarkOverlayCreateDestroy create-p99-ms "overlay create (p99)"
show BenchmarkOverlayCreateDestroy destroy-p50-ms "overlay destroy (p50)"
show BenchmarkOverlayCreateDestroy destroy-p99-ms "overlay destroy (p99)"
show BenchmarkPackageStartTwoBusybox start-to-ready-p50-ms "two busybox daemons, start to ready (p50)"
show BenchmarkPackageStartTwoBusybox guestd-pss-KiB "guestd memory, init + serving (PSS)"
echo
trace BenchmarkContainerCreateStartStop "container create+start, breakdown"
trace BenchmarkPackageStartTwoBusybox "two busybox daemons, start to ready, breakdown"
show BenchmarkPackageInstallBusybox install-p50-ms "install of the busybox package (p50; goal <= 1000)"
show BenchmarkPackageUpdateBusybox update-p50-ms "update of the busybox package (p50)"
echo
# An effect's round trip (JSON-RPC on effects.sock -> guestd -> gRPC on host.sock ->
# containerd-lite and back) next to the bare gRPC call on the same host.sock, and the
# shim's hop alone (a call guestd answers itself): medians of the runs' percentiles.
ep50=$(median BenchmarkEffectRoundTrip effect-p50-µs)
gp50=$(median BenchmarkEffectRoundTrip grpc-p50-µs)
if [ -n "$ep50" ] && [ -n "$gp50" ]; then
	echo "== an effect's round trip (identity.get), µs, medians of $count runs =="
	for m in "effect:effect (effects.sock -> guestd -> host.sock)" "grpc:bare gRPC on the same host.sock" "hop:the shim's hop alone (guestd answers)"; do
		printf '%-45s %10s p50 %10s p99\n' "${m#*:}" "$(median BenchmarkEffectRoundTrip "${m%%:*}-p50-µs")" "$(median BenchmarkEffectRoundTrip "${m%%:*}-p99-µs")"
	done
	awk -v e="$ep50" -v g="$gp50" 'BEGIN {
		r = e / g
		printf "ratio effect / bare gRPC (p50) = %.2f\n", r
		printf "goal: effect p50 <= 200 µs: %s (%.0f µs); <= 2x the bare call: %s (%.2fx)\n", e <= 200 ? "met" : "not met", e, r <= 2 ? "met" : "not met", r
	}'
	echo
fi
show BenchmarkImageImportVsTar import-MB/s "image import of a rootfs tarball"
show BenchmarkImageImportVsTar tar-MB/s "tar -x of the same file (same runs, interleaved)"
show BenchmarkImageImportVsTar import/tar "ratio import / tar -x (median of the runs' ratios)"
show BenchmarkImageImportVsTar tar+sync-MB/s "tar -x, then a sync of its file system (durable, as an import is)"
show BenchmarkImageImportVsTar import/tar+sync "ratio import / (tar -x + sync)"
show BenchmarkImageImportVsTar import-cpu-s "CPU of containerd-lite through an import"
show BenchmarkImageImportVsTar tar-cpu-s "CPU of tar -x (same runs)"
show BenchmarkImageImportVsTar import/tar-by-cpu "ratio by CPU: tar's CPU / the import's"
show BenchmarkImageReimport ns/op "second import of a stored image (ns)"
echo
show BenchmarkLocalLeafIssue leaves/s "certd local leaf issuance" || true
acme=$(median BenchmarkACMEIssuePebble)
[ -z "$acme" ] || awk -v v="$acme" 'BEGIN {printf "%-45s %10.1f ms\n", "certd ACME issuance (Pebble, always valid)", v/1e6}'

# Peers of "start request -> all daemons ready" for a package of two busybox daemons (B
# waits for A): podman pod and bare lxc-execute, as medians from bench/peers.sh (root only;
# BENCH_PEERS=0 skips them). A failed peer shows as "PEER <name> failed".
if [ "$(id -u)" = 0 ] && [ "${BENCH_PEERS:-1}" != 0 ]; then
	peers=$(bench/peers.sh) || echo "bench/peers.sh exited non-zero" >&2
	echo
	echo "== package start, peers (ms, BENCH_ITER=${BENCH_ITER:-10} runs) =="
	grep '^PEER ' <<<"$peers" || echo "no PEER lines from bench/peers.sh"
fi

# Hearth's own number next to the peers': ratios of the start-to-ready medians.
ours=$(median BenchmarkPackageStartTwoBusybox start-to-ready-p50-ms)
if [ -n "$ours" ] && [ -n "${peers:-}" ]; then
	echo
	echo "== package start to ready: hearth / peer =="
	grep '^PEER ' <<<"$peers" | awk -v ours="$ours" '{
		for (i = 3; i <= NF; i++) if ($i ~ /^median_ms=/) { split($i, kv, "="); m = kv[2] }
		if (m > 0) printf "hearth %.1f ms / %s %.1f ms = %.2f\n", ours, $2, m, ours / m
		m = 0
	}'
fi

# Backups: Hearth's engine against restic on the same ~1 GiB tree (BENCH_BACKUP=0 skips).
if [ "${BENCH_BACKUP:-1}" != 0 ]; then
	echo
	echo "== backup and restore of ~1 GiB of mixed files: hearth / restic =="
	bench/backup.sh 2>/dev/null | grep -v '^BACKUP ' || echo "bench/backup.sh failed" >&2
fi

# The TLS reverse proxy: netd's against nginx in the same configuration, same backend
# (PROXY lines and a table; "PROXY skipped" without nginx or wrk).
echo
echo "== TLS reverse proxy: hearth / nginx =="
bench/proxy.sh || echo "bench/proxy.sh failed" >&2

# Density: N busybox packages (the example, repacked under N ids) installed and run side
# by side with containerd-lite, netd and certd, once (BENCH_DENSITY=N, 100 by default; 0
# skips; root only): the table, and a "DENSITY n=N NAME VALUE" line per figure.
density=${BENCH_DENSITY:-100}
if [ "$(id -u)" = 0 ] && [ "$density" != 0 ]; then
	dout=$(mktemp)
	trap 'rm -f "$out" "$dout"; exit $status' EXIT
	if HEARTH_BENCH_DENSITY=$density go test -run '^$' -bench '^BenchmarkDensity$' -benchtime 1x -count 1 -timeout 30m ./integration/ >"$dout" 2>&1; then
		awk '/^== density:/ {p = 1} /^(goos|goarch|pkg|cpu|Benchmark|PASS|ok|---)/ {p = 0} p' "$dout"
	else
		status=1
		echo
		echo "== density: the benchmark failed =="
		tail -n 60 "$dout"
	fi
fi

# The summary: each figure of the performance table beside its peer, from this run, with
# its goal ("-" where this run did not measure it: BENCH, BENCH_PEERS or BENCH_DENSITY
# left it out).
# dens KEY: a figure of the density run.
dens() { [ -n "${dout:-}" ] && awk -v k="$1" '$1 == "DENSITY" && $3 == k {print $4}' "$dout" | head -n 1; return 0; }
# peer [KIND] NAME KEY: a field of bench/peers.sh's PEER (or KIND, such as PEERMEM) line.
peer() {
	local kind=PEER
	[ $# -lt 3 ] || { kind=$1; shift; }
	grep "^$kind $1 " <<<"${peers:-}" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}
echo
echo "== summary: hearth / peer, this run (medians) =="
d() { echo "${1:--}"; }
mib() { [ -n "$1" ] && awk -v v="$1" 'BEGIN {printf "%.1f", v / 1024}'; return 0; }
{
	# figure, hearth, then peer name and value pairs; "-": not measured in this run
	echo "start-to-both-ready-ms $(d "${ours:-}") lxc-execute $(d "$(peer lxc-execute median_ms)") podman-pod $(d "$(peer podman-pod median_ms)")"
	lx=$(median BenchmarkLXCExecuteSameRootfs)
	echo "create+start-p50-ms $(d "$(median BenchmarkContainerCreateStartStop create+start-p50-ms)") lxc-execute $(d "${lx:+$(awk -v v="$lx" 'BEGIN {printf "%.2f", v / 1e6}')}")"
	pm=$(peer PEERMEM podman-pod pss_kib) pr=$(peer PEERMEM podman-pod rss_kib)
	echo "overhead-PSS-MiB-N=1 $(d "$(dens n1-overhead-pss-MiB)") podman-pod-PSS $(d "$(mib "$pm")") podman-pod-RSS $(d "$(mib "$pr")")"
	echo "overhead-PSS-MiB-N=$density $(d "$(dens nN-overhead-pss-avg-MiB)")"
	echo "start-all-$density-s $(d "$(dens start-all-all-s)")"
	echo "start-all-$density-host-CPU-s $(d "$(dens start-all-all-cpu-s)")"
	echo "idle-CPU-%-N=$density $(d "$(dens idle-cpu-pct)")"
	echo "import-MB/s $(d "$(median BenchmarkImageImportVsTar import-MB/s)") tar-x $(d "$(median BenchmarkImageImportVsTar tar-MB/s)") tar-x+sync $(d "$(median BenchmarkImageImportVsTar tar+sync-MB/s)")"
} | awk '{
	printf "%-26s %9s", $1, $2
	for (i = 3; i < NF; i += 2) {
		r = ($2 != "-" && $(i + 1) != "-" && $(i + 1) > 0) ? sprintf("%.2f", $2 / $(i + 1)) : "-"
		printf "   %s %s (ratio %s)", $i, $(i + 1), r
	}
	printf "\n"
}'
echo "goals: start to both ready <= 60 ms and <= 2x lxc-execute; create+start p50 <= 30 ms;"
echo "  overhead PSS <= 8 MiB at N=1, <= 4 MiB at N=100; start --all of 100 <= 4 s; import >= 0.9x tar -x"
