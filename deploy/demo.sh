#!/usr/bin/env bash
# Runs a private Hearth under one directory (default ./demo, or $HEARTH_DEMO_DIR):
# certd, netd and containerd-lite on their own sockets and state, then one container
# started through hearthctl, and prints where everything answers.
#   usage: deploy/demo.sh [start|stop]     (make demo builds first, then starts)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
dir=${HEARTH_DEMO_DIR:-$top/demo}
run=$dir/run
bin=$top/bin
base=$top/build/base-rootfs
export HEARTH_RUN_DIR=$run

stop() {
	[ -d "$dir/pids" ] || return 0
	for f in "$dir"/pids/*; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		# Only our own daemons: the pid must still run the command we started.
		if [ -r "/proc/$pid/cmdline" ] && [ "$(tr '\0' '\n' < "/proc/$pid/cmdline" | head -1)" = "$bin/$(basename "$f")" ]; then
			kill "$pid"
		fi
		rm -f "$f"
	done
	sleep 0.5
}

case "${1:-start}" in
stop)
	# Every running container stops first: their mounts go with them.
	for c in $("$bin/hearthctl" container ls 2>/dev/null | awk 'NR > 1 && $2 == "running" {print $1}'); do
		"$bin/hearthctl" container stop "$c" >/dev/null || true
	done
	stop
	echo "demo stopped; its state stays in $dir (remove it with: deploy/demo.sh stop && rm -rf $dir)"
	exit 0 ;;
start) ;;
*) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac

[ "$(id -u)" = 0 ] || { echo "demo: run as root (sudo make demo): it mounts file systems and starts LXC containers" >&2; exit 1; }
deploy/install-deps.sh
[ -x "$bin/containerd-lite" ] && [ -d "$base" ] || make -C "$top" build
stop
mkdir -p "$dir/logs" "$dir/pids" "$dir/state"
# The containers' root (uid 100000 on the host) must reach their root file systems.
chmod 711 "$dir" "$dir/state"

start_daemon() {
	local name=$1; shift
	"$bin/$name" --run-dir "$run" --state-dir "$dir/state/$name" "$@" >>"$dir/logs/$name.log" 2>&1 &
	echo $! > "$dir/pids/$name"
}
start_daemon certd
start_daemon netd
start_daemon containerd-lite --base-rootfs "$base"

for _ in $(seq 100); do
	"$bin/hearthctl" container ls >/dev/null 2>&1 && break
	sleep 0.1
done
"$bin/hearthctl" container ls >/dev/null || { echo "demo: containerd-lite did not come up; see $dir/logs/containerd-lite.log" >&2; exit 1; }

"$bin/hearthctl" container status demo >/dev/null 2>&1 || "$bin/hearthctl" container create demo
"$bin/hearthctl" container start demo >/dev/null
"$bin/hearthctl" container status demo

cat <<MSG

Hearth is running under $dir
  sockets:  $run/{containerd-lite,netd,certd}.sock
  logs:     $dir/logs/
Try:
  export HEARTH_RUN_DIR=$run
  $bin/hearthctl container ls
  $bin/hearthctl container status demo
  $top/bin/tools/grpcurl -plaintext -unix $run/containerd-lite.sock list    (after make tools)
Stop it:    deploy/demo.sh stop
MSG
