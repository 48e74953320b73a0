#!/usr/bin/env bash
# Peers of the "start request -> all daemons ready" benchmark, for make bench (bench/run.sh).
#
# The package: daemon A = busybox httpd on 8080; daemon B = busybox httpd on 8081, started
# only once A answers HTTP. "All ready" = both ports answer an HTTP GET from inside the
# package's network namespace. Each peer runs the same two daemons from the same busybox
# rootfs, BENCH_ITER times (default 10, after one untimed warm-up), and prints
#   PEER <name> median_ms=<float> p90_ms=<float> n=<int>
# for podman-pod and lxc-execute (or "PEER <name> skipped|failed reason=..."), and after
# the last run, with both daemons up, what the peer's own processes hold besides them:
#   PEERMEM <name> pss_kib=<int> rss_kib=<int> procs=<what was counted>
# (podman pod: the three conmons and the infra container's catatonit; lxc-execute: its
# monitor and lxc-init), to set beside Hearth's per-service overhead.
#
#   podman-pod:  pod (--network none) with containers A and B created beforehand; timed from
#                `podman start A` (which also starts the pod's infra container), poll A from
#                the pod's netns, `podman start B`, poll B: what a compose user does.
#   lxc-execute: one unprivileged container whose /start.sh starts A, polls it, starts B,
#                polls it, then touches /ready; timed from launching lxc-execute until the
#                marker shows up in the rootfs (both ports are then checked from its netns).
#
# Polls are every 10 ms on both sides. Everything (storage, config, rootfs, LXC path) lives
# in one mktemp dir and is removed on exit, failure or interrupt. Needs root.
#   usage: bench/peers.sh [podman-pod|lxc-execute]   (default: both, one after the other)
#   env: BENCH_ITER (10), BENCH_PEER_TIMEOUT (30 s: the longest wait for one daemon)
set -euo pipefail
export LC_ALL=C

iter=${BENCH_ITER:-10}
timeout_s=${BENCH_PEER_TIMEOUT:-30}
log() { echo "peers: $*" >&2; }
peers=(podman-pod lxc-execute)

if [ "$(id -u)" != 0 ]; then
	log "needs root (podman pods and unprivileged LXC containers with id maps); skipping"
	for p in "${peers[@]}"; do echo "PEER $p skipped reason=not-root"; done
	exit 0
fi
bb=$(command -v busybox || true)
if [ -z "$bb" ]; then
	log "busybox (the static build: busybox-static) is not installed; skipping"
	for p in "${peers[@]}"; do echo "PEER $p skipped reason=no-busybox"; done
	exit 0
fi

# Each peer runs in its own process (the script again, with the peer's name), with its own
# work dir and cleanup, so that one peer's failure neither leaks nor stops the other. An
# interrupt is passed on to the running peer, which cleans up before exiting.
if [ $# -eq 0 ]; then
	status=0 child=
	trap '[ -z "$child" ] || { kill -TERM "$child" 2>/dev/null; wait "$child"; }; exit 130' INT TERM
	for p in "${peers[@]}"; do
		"$BASH" "${BASH_SOURCE[0]}" "$p" &
		child=$!
		wait "$child" || { echo "PEER $p failed"; status=1; }
		child=
	done
	exit "$status"
fi
peer=$1

work=$(mktemp -d)
chmod 755 "$work" # the unprivileged container's root must reach its rootfs
rootfs=$work/rootfs
pstore=$work/podman
lxcpath=$work/lxc
lxcname=peer-$$
pod=hearth-peer-$$
cgparent=/hearth-peer-$$
podman_used=false
lxc_pid= # lxc-execute, while it runs

pm() {
	podman --root "$pstore/root" --runroot "$pstore/runroot" --storage-driver overlay "$@"
}

cleanup() {
	local rc=$? m
	trap - EXIT INT TERM
	set +e
	if [ -n "$lxc_pid" ]; then
		lxc-stop -k -P "$lxcpath" -n "$lxcname" >/dev/null 2>&1
		kill -0 "$lxc_pid" 2>/dev/null && kill -KILL "$lxc_pid" 2>/dev/null
		wait "$lxc_pid" 2>/dev/null
	fi
	if $podman_used; then
		pm pod rm -a -f -t 0 >/dev/null 2>&1
		pm rm -a -f -t 0 >/dev/null 2>&1
		pm rmi -a -f >/dev/null 2>&1
		# The pod's cgroups (cgroupfs manager); rmdir only removes empty ones.
		find /sys/fs/cgroup -depth -type d \( -path "*$cgparent" -o -path "*$cgparent/*" \) \
			-exec rmdir {} + 2>/dev/null
	fi
	# Anything still mounted under the work dir (podman's overlay storage), deepest first.
	findmnt -rn -o TARGET | grep -F "$work/" | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	rm -rf --one-file-system "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A sleep without a fork: read with a timeout on a pipe nobody writes to.
exec {nap_fd}<> <(:)
nap() { read -r -t "$1" -u "$nap_fd" _ || true; }

# usec T0 T1: microseconds between two $EPOCHREALTIME readings.
usec() { echo $((${2/./} - ${1/./})); }

# mem NAME WHAT PID...: the PEERMEM line, the PSS and RSS summed over the PIDs.
mem() {
	local name=$1 what=$2 p pss=0 rss=0 v
	shift 2
	for p; do
		v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
		pss=$((pss + ${v:-0}))
		v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
		rss=$((rss + ${v:-0}))
	done
	echo "PEERMEM $name pss_kib=$pss rss_kib=$rss procs=$what"
}

# stats NAME FILE: the PEER line from a file of per-run microseconds (median: middle value,
# mean of the two middle ones for an even count; p90: nearest rank).
stats() {
	sort -n "$2" | awk -v name="$1" '{a[NR] = $1 / 1000} END {
		if (NR == 0) { printf "PEER %s failed reason=no-samples\n", name; exit }
		m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
		r = int(0.9 * NR); if (r < 0.9 * NR) r++
		printf "PEER %s median_ms=%.2f p90_ms=%.2f n=%d\n", name, m, a[r], NR
	}'
}

# The same busybox rootfs for both peers.
mkdir -p "$rootfs"/{bin,www,proc,sys,dev,tmp,etc,run}
cp "$bb" "$rootfs/bin/busybox"
for a in sh httpd wget sleep usleep touch; do ln -s busybox "$rootfs/bin/$a"; done
echo '<html><body>hearth bench</body></html>' > "$rootfs/www/index.html"
echo 'root:x:0:0:root:/:/bin/sh' > "$rootfs/etc/passwd"
echo 'root:x:0:' > "$rootfs/etc/group"
hbb=$rootfs/bin/busybox # the host's poller runs the same static busybox

# The in-namespace poll (busybox sh): poll PORT N: until PORT answers a GET, every 10 ms,
# at most N times.
poll_fn='poll() { i=0; until wget -q -O /dev/null "http://127.0.0.1:$1/"; do i=$((i + 1)); [ "$i" -lt "$2" ] || return 1; usleep 10000; done; }'
polls=$((timeout_s * 100))

# ---- podman pod ------------------------------------------------------------------------
podman_peer() {
	if ! command -v podman >/dev/null; then
		echo "PEER podman-pod skipped reason=no-podman"
		return
	fi
	mkdir -p "$pstore/tmp"
	cat > "$pstore/containers.conf" <<-EOF
		[containers]
		default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
		[engine]
		runtime = "runc"
		cgroup_manager = "cgroupfs"
		events_logger = "file"
		events_logfile_path = "$pstore/tmp/events.log"
		tmp_dir = "$pstore/tmp/libpod"
		static_dir = "$pstore/root/libpod"
		volume_path = "$pstore/root/volumes"
		lock_type = "file"
		[network]
		network_config_dir = "$pstore/networks"
	EOF
	cat > "$pstore/storage.conf" <<-EOF
		[storage]
		driver = "overlay"
		graphroot = "$pstore/root"
		runroot = "$pstore/runroot"
	EOF
	export CONTAINERS_CONF=$pstore/containers.conf CONTAINERS_STORAGE_CONF=$pstore/storage.conf
	podman_used=true
	local image=localhost/hearth-peer-busybox:latest
	tar -C "$rootfs" -cf "$work/rootfs.tar" .
	# Importing the image and building the pod's pause image (on the first pod create) write
	# a blob-info cache outside --root whatever the config says: do both, untimed, in a
	# private mount namespace with a throwaway tmpfs over /var/lib.
	export -f pm
	export pstore
	unshare -m --propagation private "$BASH" -euo pipefail -c '
		mount -t tmpfs tmpfs /var/lib
		pm import -q "$1" "$2" >/dev/null
		pm pod create --name "$3" --network none --cgroup-parent "$4" >/dev/null
		pm pod rm -f -t 0 "$3" >/dev/null
	' setup "$work/rootfs.tar" "$image" "$pod-setup" "$cgparent"

	local i t0 t1 samples=$work/podman.us pid
	: > "$samples"
	for ((i = 0; i <= iter; i++)); do
		rm -f "$pstore/a.pid"
		pm pod create --name "$pod" --network none --cgroup-parent "$cgparent" >/dev/null
		pm create --pod "$pod" --name "$pod-a" --pidfile "$pstore/a.pid" "$image" \
			/bin/httpd -f -p 8080 -h /www >/dev/null
		pm create --pod "$pod" --name "$pod-b" "$image" \
			/bin/httpd -f -p 8081 -h /www >/dev/null

		t0=$EPOCHREALTIME
		pm start "$pod-a" >/dev/null
		pid=$(<"$pstore/a.pid")
		nsenter --net="/proc/$pid/ns/net" "$hbb" sh -c "$poll_fn; poll 8080 $polls" ||
			{ log "podman-pod: A never answered"; exit 1; }
		pm start "$pod-b" >/dev/null
		nsenter --net="/proc/$pid/ns/net" "$hbb" sh -c "$poll_fn; poll 8081 $polls" ||
			{ log "podman-pod: B never answered"; exit 1; }
		t1=$EPOCHREALTIME

		if [ "$i" -eq "$iter" ]; then
			local infra
			infra=$(pm pod inspect --format '{{.InfraContainerID}}' "$pod")
			# shellcheck disable=SC2046 # one PID per word
			mem podman-pod conmon-x3+catatonit $(pm inspect --format '{{.State.ConmonPid}}' "$pod-a" "$pod-b" "$infra") \
				"$(pm inspect --format '{{.State.Pid}}' "$infra")"
		fi
		pm pod rm -f -t 0 "$pod" >/dev/null
		if [ "$i" -eq 0 ]; then
			log "podman-pod warm-up: $(usec "$t0" "$t1") us"
		else
			usec "$t0" "$t1" >> "$samples"
			log "podman-pod run $i/$iter: $(usec "$t0" "$t1") us"
		fi
	done
	stats podman-pod "$samples"
}

# ---- lxc-execute -----------------------------------------------------------------------
lxc_peer() {
	if ! command -v lxc-execute >/dev/null; then
		echo "PEER lxc-execute skipped reason=no-lxc"
		return
	fi
	# Root's lowest subordinate range of 65536 ids in both /etc/subuid and /etc/subgid:
	# newuidmap allows only those (not a fixed 100000).
	local ids
	ids=$(awk -F: 'NR == FNR { if ($1 == "root" && $3 >= 65536) g[$2] = 1; next }
		$1 == "root" && $3 >= 65536 && ($2 in g) { print $2 }' /etc/subgid /etc/subuid 2>/dev/null | sort -n | head -1)
	if [ -z "$ids" ]; then
		echo "PEER lxc-execute skipped reason=no-subordinate-ids-for-root"
		return
	fi
	local dir=$lxcpath/$lxcname
	mkdir -p "$dir"
	chmod 755 "$lxcpath" "$dir"
	cp -a "$rootfs" "$dir/rootfs"
	cat > "$dir/rootfs/start.sh" <<-EOF
		$poll_fn
		httpd -f -p 8080 -h /www &
		poll 8080 $polls || exit 1
		httpd -f -p 8081 -h /www &
		poll 8081 $polls || exit 1
		touch /ready
		exec sleep 100000
	EOF
	chown -R "$ids:$ids" "$dir/rootfs"
	{
		echo "lxc.uts.name = $lxcname"
		echo "lxc.rootfs.path = dir:$dir/rootfs"
		echo "lxc.idmap = u 0 $ids 65536"
		echo "lxc.idmap = g 0 $ids 65536"
		echo "lxc.net.0.type = empty"
		echo "lxc.net.0.flags = up"
		echo "lxc.autodev = 1"
		echo "lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed"
		echo "lxc.tty.max = 0"
		echo "lxc.pty.max = 1024"
		echo "lxc.cap.drop = mac_admin mac_override sys_time sys_module sys_rawio"
		[ ! -e /usr/share/lxc/config/common.seccomp ] ||
			echo "lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp"
	} > "$dir/config"

	local i t0 t1 n samples=$work/lxc.us ipid
	: > "$samples"
	for ((i = 0; i <= iter; i++)); do
		rm -f "$dir/rootfs/ready"
		t0=$EPOCHREALTIME
		lxc-execute -P "$lxcpath" -n "$lxcname" -f "$dir/config" -- /bin/sh /start.sh \
			>"$work/lxc.log" 2>&1 &
		lxc_pid=$!
		n=0
		until [ -e "$dir/rootfs/ready" ]; do
			if ! kill -0 "$lxc_pid" 2>/dev/null || [ $((n += 1)) -gt "$polls" ]; then
				log "lxc-execute: never ready; its output:"
				cat "$work/lxc.log" >&2
				exit 1
			fi
			nap 0.01
		done
		t1=$EPOCHREALTIME

		# Both daemons answer from the container's network namespace (untimed check).
		ipid=$(lxc-info -P "$lxcpath" -n "$lxcname" -p -H)
		nsenter --net="/proc/$ipid/ns/net" "$hbb" sh -c \
			'wget -q -O /dev/null http://127.0.0.1:8080/ && wget -q -O /dev/null http://127.0.0.1:8081/' ||
			{ log "lxc-execute: marker written but the daemons do not answer"; exit 1; }
		[ "$i" -ne "$iter" ] || mem lxc-execute monitor+lxc-init "$lxc_pid" "$ipid"
		lxc-stop -k -P "$lxcpath" -n "$lxcname" >/dev/null
		wait "$lxc_pid" || true # killed: non-zero
		lxc_pid=
		if [ "$i" -eq 0 ]; then
			log "lxc-execute warm-up: $(usec "$t0" "$t1") us"
		else
			usec "$t0" "$t1" >> "$samples"
			log "lxc-execute run $i/$iter: $(usec "$t0" "$t1") us"
		fi
	done
	stats lxc-execute "$samples"
}

case $peer in
podman-pod) podman_peer ;;
lxc-execute) lxc_peer ;;
*) log "unknown peer $peer"; exit 2 ;;
esac
