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
	# Containers outlive containerd-lite: if it is not running, start it to stop them.
	if ! "$bin/hearthctl" container ls >/dev/null 2>&1 && [ -d "$dir/state/containerd-lite" ]; then
		"$bin/containerd-lite" --run-dir "$run" --state-dir "$dir/state/containerd-lite" --base-rootfs "$base" >>"$dir/logs/containerd-lite.log" 2>&1 &
		echo $! > "$dir/pids/containerd-lite"
		for _ in $(seq 100); do "$bin/hearthctl" container ls >/dev/null 2>&1 && break; sleep 0.1; done
	fi
	# Every running container stops first: their mounts go with them.
	for c in $("$bin/hearthctl" container ls 2>/dev/null | awk 'NR > 1 && $2 == "running" {print $1}'); do
		"$bin/hearthctl" container stop "$c" >/dev/null || true
	done
	stop
	ip link del hearthdemo0 2>/dev/null || true
	nft delete table inet hearthdemo0 2>/dev/null || true # netd's table, kept across its restarts
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
# The containers' root users (each container has its own host uid) must reach their root file systems.
chmod 711 "$dir" "$dir/state"

start_daemon() {
	local name=$1; shift
	"$bin/$name" --run-dir "$run" --state-dir "$dir/state/$name" "$@" >>"$dir/logs/$name.log" 2>&1 &
	echo $! > "$dir/pids/$name"
}
start_daemon certd
# A bridge of the demo's own, removed by "deploy/demo.sh stop". LAN names are announced over
# mDNS only on the interfaces named in HEARTH_LAN_INTERFACES (none by default: the demo keeps
# to this machine); its HTTPS proxy listens on HEARTH_HTTPS_ADDR (default :443).
https_addr=${HEARTH_HTTPS_ADDR:-:443}
start_daemon netd --bridge hearthdemo0 --subnet 10.89.0.0/24 --lan-interfaces "${HEARTH_LAN_INTERFACES:-none}" \
	--https-addr "$https_addr" --http-addr "${HEARTH_HTTP_ADDR:-:80}"
start_daemon containerd-lite --base-rootfs "$base"

for _ in $(seq 100); do
	"$bin/hearthctl" container ls >/dev/null 2>&1 && break
	sleep 0.1
done
"$bin/hearthctl" container ls >/dev/null || { echo "demo: containerd-lite did not come up; see $dir/logs/containerd-lite.log" >&2; exit 1; }

hctl() { "$bin/hearthctl" "$@"; }

# The example package, hello-pg (Postgres and our app in one container), built and signed
# offline by examples/build.sh with its development key, which this host then trusts.
ex=$top/build/examples
if [ ! -s "$ex/hello-pg-1.0.0.hpkg" ]; then
	echo "demo: building the example package hello-pg (Postgres is debootstrapped the first time: about a minute, then cached)"
	examples/build.sh "$ex" hello-pg >/dev/null
fi
hctl keys ls 2>/dev/null | grep -F "$(cat "$ex/dev.pub")" >/dev/null || hctl keys trust "$ex/dev.pub" >/dev/null
if hctl info hello-pg >/dev/null 2>&1; then
	hctl start hello-pg >/dev/null
else
	hctl --timeout 10m install "$ex/hello-pg-1.0.0.hpkg"
fi
echo "demo: waiting for hello-pg's daemons"
for _ in $(seq 300); do
	hctl status hello-pg 2>/dev/null | grep '^app .* ready ' >/dev/null && break
	sleep 0.2
done
hctl status hello-pg

addr=$(hctl container ls | awk '$1 == "hello-pg" {print $4}')
hctl cert root >"$dir/hearth-root.crt" 2>/dev/null
port=${https_addr##*:}
for _ in $(seq 50); do
	out=$(curl -sS --max-time 5 --cacert "$dir/hearth-root.crt" --resolve "hello-pg.local:$port:127.0.0.1" "https://hello-pg.local:$port/rows" 2>&1) && break
	sleep 0.2
done

cat <<MSG

Hearth is running under $dir, with the example package hello-pg installed from its signed file
($ex/hello-pg-1.0.0.hpkg).
It answers at https://hello-pg.local$( [ "$port" = 443 ] || echo ":$port" ) through netd's proxy, with a certificate from this
host's root CA ($dir/hearth-root.crt: trust it on your devices), and on netd's bridge at
http://$addr:8080. From this machine:
  curl --cacert $dir/hearth-root.crt --resolve hello-pg.local:$port:127.0.0.1 https://hello-pg.local:$port/rows
$out

To announce hello-pg.local on your LAN over mDNS, start the demo with HEARTH_LAN_INTERFACES=eth0
(your LAN interface). Where it answers: $bin/hearthctl addresses hello-pg, and netd's
bindings: $top/bin/tools/grpcurl -plaintext -unix $run/netd.sock hearth.net.v1.BindingService/ListBindings

  sockets:  $run/{containerd-lite,netd,certd}.sock
  logs:     $dir/logs/   and   $bin/hearthctl logs hello-pg -f
Try:
  export HEARTH_RUN_DIR=$run
  $bin/hearthctl info hello-pg
  $bin/hearthctl addresses hello-pg
  $bin/hearthctl exec -it hello-pg db -- bash
  $top/bin/tools/grpcurl -plaintext -unix $run/containerd-lite.sock list    (after make tools)
Stop it:    deploy/demo.sh stop
MSG
