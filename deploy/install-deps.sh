#!/usr/bin/env bash
# Installs what Hearth needs to build, run and test on Debian 12, and the id ranges its
# unprivileged containers use: every container gets 65536 host ids of its own, from a
# subordinate range of root's in /etc/subuid and /etc/subgid. The range added here holds
# 1024 containers (67108864 ids), placed after every range already given to anyone.
# Cheap when everything is already there.
#   usage: deploy/install-deps.sh [--check]    (--check: only report what is missing)
set -euo pipefail

# e2fsprogs: mkfs.ext4 for the packages' disks. podman, runc (its runtime there) and catatonit (its pods' pause process): bench/peers.sh.
# restic: the backup benchmark's peer. tor: netd's onion services (netd runs a private tor).
# avahi-daemon, avahi-utils, dbus-daemon: the mDNS tests run avahi as a LAN client and rival in
# namespaces of their own (netd's own responder needs none of them).
# nftables: the tests compare netd's ruleset (nft list) before and after restarts.
# nginx, wrk and nghttp2-client (h2load): bench/proxy.sh, which runs nginx as its own process
# (Debian's own nginx service, where it starts, holds port 80: it is stopped below).
# systemd (systemd-analyze) and strace: the install test verifies the units and traces certd
# and netd under their units' restrictions (integration/install_test.go).
# docker.io and docker-compose: the dev lab (deploy/lab), which runs a dockerd of its own in a
# network namespace of its own; the system's docker service is kept from starting (below).
packages=(lxc lxc-dev busybox-static debootstrap uidmap e2fsprogs pkg-config gcc libc6-dev musl-tools make git iproute2 util-linux ca-certificates openssl curl podman runc catatonit restic tor avahi-daemon avahi-utils dbus-daemon nginx wrk nghttp2-client nftables docker.io docker-compose systemd strace)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
done
# Containers' ids: one range of root's, the same in both files, of at least SUBID_COUNT.
SUBID_COUNT=67108864
subid_ok=false
for line in $(grep -hs '^root:' /etc/subuid || true); do
	IFS=: read -r _ start count <<<"$line"
	if [ "${count:-0}" -ge "$SUBID_COUNT" ] && grep -qsx "root:$start:$count" /etc/subgid; then
		subid_ok=true
	fi
done

if [ "${1:-}" = "--check" ]; then
	[ ${#missing[@]} -eq 0 ] || echo "missing packages: ${missing[*]}"
	$subid_ok || echo "missing a range of $SUBID_COUNT subordinate ids for root, the same in /etc/subuid and /etc/subgid"
	[ ${#missing[@]} -eq 0 ] && $subid_ok
	exit
fi

if [ ${#missing[@]} -gt 0 ] || ! $subid_ok; then
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: missing ${missing[*]:-} ${subid_ok/true/}; run as root (sudo $0)" >&2
		exit 1
	fi
fi
if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Without systemd, Debian's packages start their services through invoke-rc.d, which asks
	# policy-rc.d: where there is none, one refuses for the time of the install (a system
	# dockerd would add its bridge and firewall rules to the machine's network at once).
	policy=/usr/sbin/policy-rc.d
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# made by hearth install-deps.sh for the time of an install\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		trap 'rm -f "$policy"' EXIT
	fi
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# Debian's tor, avahi-daemon and nginx packages start system services that talk to
	# the network (the Tor network; mDNS announcing this machine) or hold port 80; netd
	# runs its own tor, mDNS responder and proxy, the tests their own avahi and the
	# benchmark its own nginx; the dev lab runs its own dockerd. Stop and disable the ones
	# just installed.
	for pair in tor:tor avahi-daemon:avahi-daemon nginx:nginx docker.io:docker docker.io:containerd; do
		svc=${pair#*:}
		printf '%s\n' "${missing[@]}" | grep -x "${pair%%:*}" >/dev/null || continue
		if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
			systemctl disable --now "$svc.service" "$svc.socket" >/dev/null 2>&1 || true
			[ "$svc" = tor ] && systemctl disable --now tor@default.service >/dev/null 2>&1 || true
		elif [ -x "/etc/init.d/$svc" ]; then
			"/etc/init.d/$svc" stop >/dev/null 2>&1 || true
			update-rc.d "$svc" disable >/dev/null 2>&1 || true
		fi
	done
fi
if ! $subid_ok; then
	# After every range given so far (to anyone), aligned to 65536, at least 100000.
	start=$(cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: 'NF==3 && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ { e = $2 + $3; if (e > m) m = e } END { m = (m < 100000) ? 100000 : m; print int((m + 65535) / 65536) * 65536 }')
	echo "install-deps: giving root's containers host ids $start-$((start + SUBID_COUNT - 1)) in /etc/subuid and /etc/subgid"
	for f in /etc/subuid /etc/subgid; do
		echo "root:$start:$SUBID_COUNT" >> "$f"
	done
fi
if ! command -v go >/dev/null; then
	echo "install-deps: Go 1.26 is needed on PATH (the go command)" >&2
	exit 1
fi
