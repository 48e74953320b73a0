#!/bin/sh
# Builds the base root file system every Hearth container boots from: busybox (static)
# with its applets, a static guestd as /sbin/guestd and its init as /sbin/guestd-init (the
# guestd-init next to GUESTD_BINARY), and the static effect client as
# /usr/local/bin/hearth-effect (guestd binds it into every subcontainer).
#   usage: build.sh OUT_DIR GUESTD_BINARY [HEARTH_EFFECT_BINARY]
set -eu
out=$1
guestd=$2
guestd_init=$(dirname "$guestd")/guestd-init
effect=${3:-}
busybox=${BUSYBOX:-/bin/busybox}

[ -x "$guestd" ] || { echo "build.sh: guestd binary $guestd not found: build it first (make build)" >&2; exit 1; }
[ -x "$guestd_init" ] || { echo "build.sh: guestd-init binary $guestd_init not found next to guestd: build it first (make build)" >&2; exit 1; }
[ -z "$effect" ] || [ -x "$effect" ] || { echo "build.sh: hearth-effect binary $effect not found: build it first (make build)" >&2; exit 1; }
if ! "$busybox" --list >/dev/null 2>&1; then
	echo "build.sh: $busybox is not busybox: install busybox-static" >&2; exit 1
fi
if ldd "$busybox" >/dev/null 2>&1; then
	echo "build.sh: $busybox is dynamically linked: install busybox-static" >&2; exit 1
fi

tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
mkdir -p bin sbin usr/bin usr/sbin etc dev proc sys run tmp root var/log media/hearth
chmod 1777 tmp
chmod 700 root
cp "$busybox" bin/busybox
chmod 755 bin/busybox
for applet in $(bin/busybox --list-full); do
	case "$applet" in bin/busybox) continue ;; esac
	mkdir -p "$(dirname "$applet")"
	[ -e "$applet" ] || ln -s /bin/busybox "$applet"
done
cp "$guestd" sbin/guestd
chmod 755 sbin/guestd
cp "$guestd_init" sbin/guestd-init
chmod 755 sbin/guestd-init
if [ -n "$effect" ]; then
	mkdir -p usr/local/bin
	cp "$effect" usr/local/bin/hearth-effect
	chmod 755 usr/local/bin/hearth-effect
fi
cat > etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > etc/group <<'G'
root:x:0:
nogroup:x:65534:
G
printf '127.0.0.1 localhost\n::1 localhost\n' > etc/hosts
: > etc/resolv.conf
echo hearth > etc/hostname
cd - >/dev/null
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
