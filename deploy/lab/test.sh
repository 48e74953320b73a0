#!/usr/bin/env bash
# make lab-test: brings the dev lab up in a directory of its own (under its own dockerd, in
# its own network namespace), installs the busybox example with the host's hearthctl
# through the shared sockets, fetches its page from a LAN client over its LAN binding,
# binds it on a domain (certified by the lab's Pebble), rebuilds and restarts netd alone and
# fetches again (the package's container untouched), does the same for certd and
# containerd-lite, and takes everything down, checking nothing is left.
#   usage: deploy/lab/test.sh [DIR]     (default: a new directory under /tmp)
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${HEARTH_BIN_DIR:-$top/bin}
lab=${1:-$(mktemp -d /tmp/hearth-lab-test.XXXXXX)}
rmdir "$lab" 2>/dev/null || true # lab.sh up makes it
labsh=$top/deploy/lab/lab.sh
fail() { echo "lab-test: FAIL: $*" >&2; exit 1; }
t0=$SECONDS
trap '"$labsh" down "$lab" >/dev/null 2>&1 || true' EXIT

ex=$(mktemp -d)
"$top/examples/build.sh" "$ex" busybox >"$ex/build.log" 2>&1 || { cat "$ex/build.log"; fail "examples/build.sh busybox"; }
t=$SECONDS
"$labsh" up "$lab" >"$ex/up.log" 2>&1 || { cat "$ex/up.log"; fail "lab up"; }
up=$((SECONDS - t))
# shellcheck disable=SC1091
. "$lab/lab.env"
ctl() { "$bin/hearthctl" --run-dir "$lab/run" "$@"; }

ctl keys trust "$ex/dev.pub" >/dev/null
ctl install "$ex/busybox-1.0.0.hpkg" >"$ex/install.log" 2>&1 || { cat "$ex/install.log"; fail "install busybox through $lab/run"; }
ctl cert root 2>/dev/null | sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p' >"$ex/root.pem"
[ -s "$ex/root.pem" ] || fail "no root certificate from certd"
ctl addresses busybox | grep 'https://busybox.local' >/dev/null || fail "no LAN address: $(ctl addresses busybox)"

# fetch: busybox's page from the LAN client, over HTTPS trusting only Hearth's root, within 30 s.
fetch() {
	local out n=150
	while :; do
		out=$(ip netns exec "$CLIENT_NETNS" curl -sS --max-time 5 --cacert "$ex/root.pem" \
			--resolve "busybox.local:443:$HEARTH_LAB_LAN_ADDR" https://busybox.local/ 2>&1) &&
			[ "$out" = "hello from busybox 1.0.0" ] && return 0
		n=$((n - 1))
		[ $n -gt 0 ] || fail "$1: https://busybox.local/ from the LAN client: $out"
		sleep 0.2
	done
}
initpid() { ctl container ls | awk '$1 == "busybox" { print $3 }'; }
fetch "after install"
pid=$(initpid)
[ -n "$pid" ] && [ "$pid" -gt 0 ] || fail "busybox's container has no init PID: $(ctl container ls)"
echo "lab-test: busybox answers on its LAN binding (init PID $pid)"

# A domain binding: certd gets its certificate from the lab's Pebble, which validates through
# netd's listeners on the LAN address (challtestsrv resolves every name there).
ctl bind busybox web --domain busybox.lab.test >/dev/null 2>&1 || fail "bind busybox web --domain busybox.lab.test"
issuer=""
for _ in $(seq 100); do
	issuer=$(echo | ip netns exec "$CLIENT_NETNS" openssl s_client -connect "$HEARTH_LAB_LAN_ADDR:443" \
		-servername busybox.lab.test 2>/dev/null | openssl x509 -noout -issuer 2>/dev/null || true)
	case $issuer in *Pebble*) break ;; esac
	sleep 0.2
done
case $issuer in *Pebble*) ;; *) fail "busybox.lab.test is served with a certificate from ${issuer:-nobody}, not Pebble" ;; esac
echo "lab-test: busybox.lab.test has a certificate from the lab's Pebble"

for d in netd certd containerd-lite; do
	make -C "$top" -s "$bin/$d" >/dev/null
	t=$SECONDS
	"$labsh" restart "$d" "$lab" >"$ex/restart.log" 2>&1 || { cat "$ex/restart.log"; fail "restart $d"; }
	fetch "after $d's restart"
	[ "$(initpid)" = "$pid" ] || fail "busybox's container changed across $d's restart (init PID $pid, now $(initpid))"
	echo "lab-test: $d rebuilt and restarted in $((SECONDS - t)) s; busybox answers, same container"
done

dockerd=$(cat "$lab/dockerd.pid")
"$labsh" down "$lab" >/dev/null
trap - EXIT
rm -rf "$ex"
! kill -0 "$dockerd" 2>/dev/null || fail "the lab's dockerd ($dockerd) still runs"
! kill -0 "$pid" 2>/dev/null || fail "busybox's container ($pid) still runs"
! ip netns list | grep -w "$NETNS" >/dev/null || fail "network namespace $NETNS left"
! grep -q " $lab" /proc/self/mountinfo || fail "mounts left under $lab"
[ ! -e "$lab" ] || fail "$lab left"
echo "lab-test: ok (lab up in $up s, whole test $((SECONDS - t0)) s)"
