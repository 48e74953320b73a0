#!/usr/bin/env bash
# Hearth's dev lab: containerd-lite, netd and certd each in a container of its own, plus
# Pebble, pebble-challtestsrv and a tor (deploy/lab/compose.yaml), run by a dockerd of the
# lab's own in a network namespace of its own (its own bridge, data root and socket: the
# system's docker, if any, is never used). Needs root, docker.io and docker-compose
# (deploy/install-deps.sh), and `make build tools`. Nothing is pulled: every image is a
# root assembled here from the binaries `make` built and the host's files.
#   usage: deploy/lab/lab.sh up|down|env|test [DIR]      (DIR: default build/lab)
#          deploy/lab/lab.sh check                       exits 0 when the lab can run here
#          deploy/lab/lab.sh restart NAME [DIR]          rebuild NAME's image and restart it alone
# `up` leaves the lab running and prints how to reach it; `down` removes everything it made
# (containers, volumes, dockerd, namespaces, mounts, DIR). `test` is make lab-test.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${HEARTH_BIN_DIR:-$top/bin}
base=${HEARTH_BASE_ROOTFS:-$top/build/base-rootfs}
docker=${HEARTH_DOCKER:-/usr/bin/docker}
cmd=${1:-}
shift || true
name=""
if [ "$cmd" = restart ]; then name=${1:?usage: lab.sh restart NAME [DIR]}; shift; fi
lab=${1:-$top/build/lab}
# The lab's LAN, inside its namespace: a bridge with the address netd serves on, and a
# "LAN client" namespace joined to it (198.18.44.0/24: a benchmarking range no LAN uses).
lan_addr=198.18.44.1
client_addr=198.18.44.10

die() { echo "lab: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (it runs dockerd, LXC and network namespaces)"

# The lab's settings, kept in DIR/lab.env once up.
load() {
	[ -s "$lab/lab.env" ] || die "no lab in $lab (run: deploy/lab/lab.sh up $lab)"
	# shellcheck disable=SC1091
	. "$lab/lab.env"
	export DOCKER_HOST HEARTH_LAB_DIR HEARTH_BASE_ROOTFS HEARTH_LAB_LAN HEARTH_LAB_LAN_ADDR
}
# COMPOSE_DOCKER_CLI_BUILD=0: compose builds through the API itself, whatever docker CLI is on PATH.
compose() { COMPOSE_DOCKER_CLI_BUILD=0 docker-compose -p hearth-lab -f "$top/deploy/lab/compose.yaml" "$@"; }

# addroot ROOT FILE...: copies each file to the same path under ROOT, with the shared
# libraries it links (as ldd lists them) when it is a dynamic executable.
addroot() {
	local root=$1 f l
	shift
	for f in "$@"; do
		mkdir -p "$root$(dirname "$f")"
		cp -L "$f" "$root$f"
		for l in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true); do
			[ -e "$root$l" ] && continue
			mkdir -p "$root$(dirname "$l")"
			cp -L "$l" "$root$l"
		done
	done
}

# context NAME: DIR/ctx/NAME, the build context of NAME's image.
context() {
	local c=$lab/ctx/$1 r
	rm -rf "$c"
	r=$c/root
	mkdir -p "$r"/{etc,tmp,run,proc,sys,dev,var/lib}
	chmod 1777 "$r/tmp"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
	printf 'root:x:0:\n' >"$r/etc/group"
	{ cat "$top/deploy/lab/Dockerfile"; echo 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin'; } >"$c/Dockerfile"
	case $1 in
	certd | netd)
		[ -x "$bin/$1" ] || die "no $bin/$1: run make build"
		mkdir -p "$r/usr/lib/hearth"
		addroot "$r" "$bin/$1"
		mv "$r$bin/$1" "$r/usr/lib/hearth/$1"
		;;
	containerd-lite)
		[ -x "$bin/$1" ] || die "no $bin/$1: run make build"
		mkdir -p "$r/usr/lib/hearth"
		addroot "$r" "$bin/$1" "$(command -v cat)" "$(command -v mkfs.ext4)" "$(command -v e2fsck)" "$(command -v resize2fs)"
		mv "$r$bin/$1" "$r/usr/lib/hearth/$1"
		# liblxc's seccomp profiles and configuration, its rootfs mount point, mke2fs's defaults.
		for d in /usr/share/lxc /usr/lib/x86_64-linux-gnu/lxc /etc/lxc /etc/mke2fs.conf; do
			[ -e "$d" ] || continue
			mkdir -p "$r$(dirname "$d")"
			cp -a "$d" "$r$d"
		done
		;;
	tor)
		addroot "$r" "$(command -v tor)"
		[ -e "$r/usr/bin/tor" ] || { mkdir -p "$r/usr/bin"; mv "$r$(command -v tor)" "$r/usr/bin/tor"; }
		mkdir -p "$r/etc/tor"
		cat >"$r/etc/tor/torrc" <<-TORRC
			DataDirectory /var/lib/tor
			ControlPort 127.0.0.1:9051
			SocksPort 0
			DisableNetwork 1
			Log notice stdout
		TORRC
		;;
	pebble)
		[ -x "$bin/tools/pebble" ] || die "no $bin/tools/pebble: run make tools"
		addroot "$r" "$bin/tools/pebble" "$bin/tools/pebble-challtestsrv"
		mkdir -p "$r/usr/bin"
		mv "$r$bin/tools/pebble" "$r$bin/tools/pebble-challtestsrv" "$r/usr/bin/"
		;;
	esac
}

# pebble_files: Pebble's HTTPS certificate (for 127.0.0.1) and configuration.
pebble_files() {
	local p=$lab/pebble
	mkdir -p "$p"
	[ -s "$p/pebble.json" ] && return
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj /CN=lab-pebble-ca \
		-keyout "$p/ca.key" -out "$p/ca.pem" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
		-keyout "$p/key.pem" -out "$p/cert.csr" 2>/dev/null
	openssl x509 -req -in "$p/cert.csr" -CA "$p/ca.pem" -CAkey "$p/ca.key" -CAcreateserial -days 3650 \
		-extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n') -out "$p/cert.pem" 2>/dev/null
	chmod 644 "$p"/*.pem
	cat >"$p/pebble.json" <<-JSON
		{"pebble": {"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
		 "certificate": "/etc/pebble/cert.pem", "privateKey": "/etc/pebble/key.pem",
		 "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": false,
		 "retryAfter": {"authz": 1, "order": 1},
		 "profiles": {"default": {"description": "lab", "validityPeriod": 7776000}}}}
	JSON
}

# waitfor WHAT SECONDS CMD...: runs CMD every 200 ms until it succeeds.
waitfor() {
	local what=$1 n=$(($2 * 5))
	shift 2
	until "$@" >/dev/null 2>&1; do
		n=$((n - 1))
		[ $n -gt 0 ] || die "$what not ready (see $lab/*.log, docker-compose logs)"
		sleep 0.2
	done
}

check() {
	command -v docker-compose >/dev/null && [ -x "$docker" ] && command -v dockerd >/dev/null ||
		die "needs docker.io and docker-compose (deploy/install-deps.sh installs them)"
	command -v nsenter >/dev/null && command -v ip >/dev/null || die "needs nsenter and ip (util-linux, iproute2)"
	[ -w /run ] && ip netns list >/dev/null 2>&1 || die "cannot make network namespaces here"
}

up() {
	check
	[ -d "$base" ] || die "no base rootfs at $base: run make build"
	[ -e "$lab/lab.env" ] && die "a lab is already in $lab (deploy/lab/lab.sh down $lab first)"
	mkdir -p "$lab"
	lab=$(cd "$lab" && pwd)
	chmod 755 "$lab"
	local ns
	ns=hlab$(printf '%s' "$lab" | sha256sum | cut -c1-6)
	ip netns list | grep -w "$ns" >/dev/null && die "network namespace $ns exists: deploy/lab/lab.sh down $lab"
	cat >"$lab/lab.env" <<-ENV
		NETNS=$ns
		CLIENT_NETNS=${ns}c
		DOCKER_HOST=unix://$lab/docker.sock
		HEARTH_LAB_DIR=$lab
		HEARTH_BASE_ROOTFS=$base
		HEARTH_LAB_LAN=hlan
		HEARTH_LAB_LAN_ADDR=$lan_addr
	ENV
	load
	local t0=$SECONDS
	mkdir -p "$lab/run" "$lab/containerd-lite" "$lab/docker"
	# containerd-lite's state: a shared mount, so the mounts it makes propagate to the next
	# containerd-lite container (compose binds it rshared).
	mountpoint -q "$lab/containerd-lite" || mount --bind "$lab/containerd-lite" "$lab/containerd-lite"
	mount --make-rshared "$lab/containerd-lite"
	# The namespace, its loopback, the LAN bridge and the LAN client.
	ip netns add "$NETNS"
	ip -n "$NETNS" link set lo up
	ip -n "$NETNS" link add hlan type bridge
	ip -n "$NETNS" addr add "$lan_addr/24" dev hlan
	ip -n "$NETNS" link set hlan up
	ip netns add "$CLIENT_NETNS"
	ip -n "$NETNS" link add hlanv master hlan type veth peer name eth0 netns "$CLIENT_NETNS"
	ip -n "$NETNS" link set hlanv up
	ip -n "$CLIENT_NETNS" addr add "$client_addr/24" dev eth0
	ip -n "$CLIENT_NETNS" link set eth0 up
	ip -n "$CLIENT_NETNS" link set lo up
	ip -n "$CLIENT_NETNS" route add default via "$lan_addr"
	# The lab's dockerd: only its network namespace is entered (not `ip netns exec`, which
	# would give it a mount namespace of its own, where the shared mounts above are not shared).
	# Its containers share the host's cgroup namespace (the default on cgroup v1, asked for on
	# v2), so LXC can put packages in cgroups outside containerd-lite's container.
	nsenter --net="/run/netns/$NETNS" dockerd --data-root "$lab/docker" --exec-root "$lab/x" \
		-H "$DOCKER_HOST" --pidfile "$lab/dockerd.pid" --bip 10.233.0.1/24 --default-cgroupns-mode host \
		--default-address-pool base=10.234.0.0/16,size=24 --log-level warn >"$lab/dockerd.log" 2>&1 &
	waitfor dockerd 60 "$docker" info
	for s in certd netd containerd-lite tor pebble; do context "$s"; done
	pebble_files
	compose build -q
	compose up -d
	waitfor "the daemons' sockets" 60 test -S "$lab/run/containerd-lite.sock" -a -S "$lab/run/netd.sock" -a -S "$lab/run/certd.sock"
	waitfor containerd-lite 60 "$bin/hearthctl" --run-dir "$lab/run" container ls
	echo "lab: up in $((SECONDS - t0)) s"
	env_help
}

env_help() {
	cat <<-HELP
		The lab is up ($HEARTH_LAB_DIR). From this host:
		  export HEARTH_RUN_DIR=$HEARTH_LAB_DIR/run
		  $bin/hearthctl keys trust $top/build/examples/dev.pub
		  $bin/hearthctl install $top/build/examples/busybox-1.0.0.hpkg
		  $bin/hearthctl ls
		The LAN is $HEARTH_LAB_LAN_ADDR/24 inside network namespace $NETNS; a LAN client is in $CLIENT_NETNS:
		  $bin/hearthctl cert root > /tmp/hearth-root.pem
		  ip netns exec $CLIENT_NETNS curl --cacert /tmp/hearth-root.pem --resolve busybox.local:443:$HEARTH_LAB_LAN_ADDR https://busybox.local/
		The daemons and their logs:
		  . $HEARTH_LAB_DIR/lab.env; export DOCKER_HOST HEARTH_LAB_DIR HEARTH_BASE_ROOTFS HEARTH_LAB_LAN HEARTH_LAB_LAN_ADDR
		  docker-compose -p hearth-lab -f $top/deploy/lab/compose.yaml ps     (or: logs netd)
		Rebuild and restart one daemon alone:  make bin/netd && deploy/lab/lab.sh restart netd $HEARTH_LAB_DIR
		Take it down:                          make lab-down
	HELP
}

restart() {
	load
	context "$name"
	compose build -q "$name"
	compose up -d --no-deps --force-recreate "$name"
}

down() {
	[ -s "$lab/lab.env" ] || { echo "lab: nothing in $lab"; return 0; }
	load
	local pid
	pid=$(cat "$lab/dockerd.pid" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		# Packages first (through containerd-lite, while it runs), then the lab's containers.
		if [ -S "$lab/run/containerd-lite.sock" ]; then
			for c in $("$bin/hearthctl" --run-dir "$lab/run" container ls 2>/dev/null | awk 'NR > 1 { print $1 }'); do
				"$bin/hearthctl" --run-dir "$lab/run" container rm --force "$c" >/dev/null 2>&1 || true
			done
		fi
		compose down -v -t 20 >/dev/null 2>&1 || true
		kill "$pid"
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
	fi
	ip netns del "$CLIENT_NETNS" 2>/dev/null || true
	ip netns del "$NETNS" 2>/dev/null || true
	# Whatever is still mounted under the lab (containerd-lite's state, dockerd's layers).
	for m in $(awk -v d="$lab" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf "$lab"
	echo "lab: down"
}

case $cmd in
check) check ;;
up) up ;;
down) down ;;
env) load; env_help ;;
restart) restart ;;
test) exec "$top/deploy/lab/test.sh" "$lab" ;;
*) die "usage: lab.sh up|down|env|test|check [DIR] | restart NAME [DIR]" ;;
esac
