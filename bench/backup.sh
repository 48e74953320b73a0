#!/usr/bin/env bash
# Backup benchmark, for make bench: Hearth's backup engine (the kopia-based library in
# services/containerd-lite/internal/backup, run as its Go benchmark BenchmarkBackupTree)
# against Debian's restic, with a filesystem repository each, on the same directory of
# about 1 GiB of mixed files (20000 small files half of them text, 160 random files of
# 1-5 MiB, 4 files of 64-112 MiB; always the same bytes: written by the package's
# TestBenchTree). Each run, for each peer: a new repository, a first backup, a second
# backup of the unchanged directory, a restore into an empty directory. The tree is read
# once before the runs, so that both peers read it from the page cache.
#
# Prints, per peer, the medians over the runs as
#   BACKUP <peer> first_mbps=<MB/s> second_ms=<ms> second_bytes=<B> restore_mbps=<MB/s> repo_bytes=<B> runs=<n>
# (MB = 10^6 bytes of file data; *_bytes = bytes of files added to the repository
# directory), or "BACKUP <peer> skipped|failed reason=...", then a table with the ratios.
#   usage: bench/backup.sh
#   env: BENCH_BACKUP_RUNS (3), BENCH_BACKUP_DIR (where the work directory goes; it needs
#        about 5 GB free; default: $TMPDIR or /tmp)
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

runs=${BENCH_BACKUP_RUNS:-3}
log() { echo "backup-bench: $*" >&2; }

work=$(mktemp -d "${BENCH_BACKUP_DIR:-${TMPDIR:-/tmp}}/hearth-backup-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

log "building the benchmark and writing the tree in $work"
(cd services/containerd-lite && go test -c -o "$work/backup.test" ./internal/backup/)
HEARTH_BACKUP_BENCH_GEN="$work/tree" "$work/backup.test" -test.run '^TestBenchTree$' >/dev/null
data_bytes=$(find "$work/tree" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
data_files=$(find "$work/tree" -type f | wc -l)
find "$work/tree" -type f -exec cat {} + >/dev/null # into the page cache

# files_bytes DIR: the total size of the files below DIR.
files_bytes() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
# now_ms: wall clock in milliseconds (bash's EPOCHREALTIME).
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# One run of ours: the Go benchmark's metrics, as key=value.
run_hearth() {
	local line
	line=$(HEARTH_BACKUP_BENCH_TREE="$work/tree" HEARTH_BACKUP_BENCH_WORK="$work" \
		"$work/backup.test" -test.run '^$' -test.bench '^BenchmarkBackupTree$' -test.benchtime 1x |
		grep '^BenchmarkBackupTree') || return 1
	awk '{for (i = 2; i <= NF; i++) {
		if ($i == "first-MB/s") f = $(i-1); if ($i == "second-ms") s = $(i-1)
		if ($i == "second-bytes") b = $(i-1); if ($i == "restore-MB/s") r = $(i-1)
		if ($i == "repo-bytes") p = $(i-1) }
		printf "first_mbps=%s second_ms=%s second_bytes=%s restore_mbps=%s repo_bytes=%s\n", f, s, b, r, p}' <<<"$line"
}

# One run of restic, the same steps. (Its commands are chained with || return: errexit
# does not hold inside the "if" that calls this.)
run_restic() {
	local repo="$work/restic-repo" cache="$work/restic-cache" out="$work/restic-out" t0 t1 t2 t3 t4 s1 s2
	export RESTIC_PASSWORD="bench password"
	rm -rf "$repo" "$cache" "$out"
	restic init -q --repo "$repo" --cache-dir "$cache" >/dev/null || return 1
	t0=$(now_ms)
	(cd "$work" && restic backup -q --repo "$repo" --cache-dir "$cache" tree >/dev/null) || return 1
	t1=$(now_ms)
	s1=$(files_bytes "$repo")
	(cd "$work" && restic backup -q --repo "$repo" --cache-dir "$cache" tree >/dev/null) || return 1
	t2=$(now_ms)
	s2=$(files_bytes "$repo")
	mkdir "$out"
	t3=$(now_ms)
	restic restore -q --repo "$repo" --cache-dir "$cache" --target "$out" latest >/dev/null || return 1
	t4=$(now_ms)
	if [ "$(files_bytes "$out")" != "$data_bytes" ]; then
		log "restic restored $(files_bytes "$out") bytes, not $data_bytes"
		return 1
	fi
	rm -rf "$repo" "$cache" "$out"
	awk -v d="$data_bytes" -v a="$((t1 - t0))" -v b="$((t2 - t1))" -v c="$((t4 - t3))" -v s1="$s1" -v s2="$s2" \
		'BEGIN {printf "first_mbps=%.1f second_ms=%d second_bytes=%d restore_mbps=%.1f repo_bytes=%d\n", d/1e3/a, b, s2-s1, d/1e3/c, s1}'
}

peers=(hearth restic)
declare -A results
for p in "${peers[@]}"; do results[$p]=; done
if ! command -v restic >/dev/null; then
	log "restic is not installed (Debian's restic; make deps installs it)"
	peers=(hearth)
	echo "BACKUP restic skipped reason=no-restic"
fi
for i in $(seq "$runs"); do
	for p in "${peers[@]}"; do
		log "run $i/$runs: $p"
		if r=$("run_$p"); then
			results[$p]+="$r"$'\n'
		else
			log "$p failed in run $i"
		fi
	done
done

# median KEY LINES: the median of KEY's values.
median() {
	grep -o "$1=[0-9.]*" <<<"$2" | cut -d= -f2 | sort -g | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]}'
}
keys=(first_mbps second_ms second_bytes restore_mbps repo_bytes)
declare -A med
for p in "${peers[@]}"; do
	if [ -z "${results[$p]}" ]; then
		echo "BACKUP $p failed"
		continue
	fi
	n=$(grep -c . <<<"${results[$p]}")
	line="BACKUP $p"
	for k in "${keys[@]}"; do
		med[$p.$k]=$(median "$k" "${results[$p]}")
		line+=" $k=${med[$p.$k]}"
	done
	echo "$line runs=$n"
done

echo
echo "== backup and restore, $((data_bytes / 1000000)) MB in $data_files files, medians of $runs runs =="
printf '%-32s %14s %14s %10s\n' "" hearth restic "hearth/restic"
row() { # row LABEL KEY UNIT
	local a=${med[hearth.$2]:-} b=${med[restic.$2]:-}
	awk -v l="$1" -v a="$a" -v b="$b" -v u="$3" 'BEGIN {
		r = (a != "" && b != "" && b + 0 != 0) ? sprintf("%.2f", a / b) : "-"
		printf "%-32s %14s %14s %10s\n", l, (a == "" ? "-" : a " " u), (b == "" ? "-" : b " " u), r }'
}
row "first backup" first_mbps MB/s
row "second backup (unchanged)" second_ms ms
row "second backup, bytes written" second_bytes B
row "restore" restore_mbps MB/s
row "repository after first backup" repo_bytes B
