#!/usr/bin/env bash
# Installs what Hearth needs to build, run and test on Debian 12, and the id range its
# unprivileged containers use. Cheap when everything is already there.
#   usage: deploy/install-deps.sh [--check]    (--check: only report what is missing)
set -euo pipefail

# podman, runc (its runtime there) and catatonit (its pods' pause process): bench/peers.sh.
packages=(lxc lxc-dev busybox-static debootstrap uidmap pkg-config gcc make git iproute2 util-linux ca-certificates openssl curl podman runc catatonit)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
subid_ok=true
for f in /etc/subuid /etc/subgid; do
	grep -qs '^root:100000:65536$' "$f" || subid_ok=false
done

if [ "${1:-}" = "--check" ]; then
	[ ${#missing[@]} -eq 0 ] || echo "missing packages: ${missing[*]}"
	$subid_ok || echo "missing root:100000:65536 in /etc/subuid or /etc/subgid"
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
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! $subid_ok; then
	for f in /etc/subuid /etc/subgid; do
		grep -qs '^root:100000:65536$' "$f" || echo 'root:100000:65536' >> "$f"
	done
fi
if ! command -v go >/dev/null; then
	echo "install-deps: Go 1.26 is needed on PATH (the go command)" >&2
	exit 1
fi
