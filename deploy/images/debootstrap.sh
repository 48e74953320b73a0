#!/usr/bin/env bash
# Builds a Debian bookworm minbase root file system, optionally with more packages, as a
# tarball cached outside the clone and keyed by content (this script, the suite, the
# packages): a second call with the same inputs prints the cached path at once.
#   usage: deploy/images/debootstrap.sh [PACKAGE...]     → prints the tarball's path
# Needs root and debootstrap. The mirror is the first Debian mirror apt is configured
# with on this machine (override with HEARTH_DEBIAN_MIRROR).
set -euo pipefail
suite=bookworm
packages=("$@")
cache=${HEARTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}
mkdir -p "$cache"
key=$( { cat "$0"; echo "$suite"; printf '%s\n' "${packages[@]}"; } | sha256sum | cut -c1-16)
out="$cache/debootstrap-$suite-$key.tar"
if [ -s "$out" ]; then
	echo "$out"
	exit 0
fi
[ "$(id -u)" = 0 ] || { echo "debootstrap.sh: needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debootstrap.sh: install debootstrap (deploy/install-deps.sh does)" >&2; exit 1; }

mirror=${HEARTH_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
		grep -v security | head -1 | sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//; s/ .*//' || true)
fi
[ -n "$mirror" ] || { echo "debootstrap.sh: no Debian mirror found in apt's sources; set HEARTH_DEBIAN_MIRROR" >&2; exit 1; }

work=$(mktemp -d "$cache/.build-XXXXXX")
trap 'umount -R "$work/root/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
include=""
[ ${#packages[@]} -gt 0 ] && include="--include=$(IFS=,; echo "${packages[*]}")"
echo "debootstrap.sh: building $suite minbase ${packages[*]:-} from $mirror (about a minute)" >&2
debootstrap --variant=minbase $include "$suite" "$work/root" "$mirror" >"$work/log" 2>&1 || {
	tail -20 "$work/log" >&2; exit 1; }
# Trim what a container never needs.
rm -rf "$work/root"/var/cache/apt/archives/*.deb "$work/root"/var/lib/apt/lists/* "$work/root"/usr/share/doc/* \
	"$work/root"/usr/share/man/* "$work/root"/usr/share/locale/* "$work/root"/var/log/*
# /dev comes from the container runtime; image layers may not carry device nodes.
tar --numeric-owner --xattrs --exclude='./dev/*' -C "$work/root" -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$out"
echo "$out"
