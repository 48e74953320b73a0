#!/usr/bin/env bash
# Builds the example packages, offline, into OUT (default build/examples):
#   busybox-1.0.0.hpkg                 one busybox image, for fast tests and the dev lab
#   hello-pg-{1.0.0,2.0.0,3.0.0}.hpkg  Postgres and our app; 2.0.0's migration adds a column
#                                      to the app's table, 3.0.0's migration fails
# signed with OUT/dev.key (made on first use; trust OUT/dev.pub to install them).
#   usage: examples/build.sh [OUT] [busybox|hello-pg]...   (default: both)
# hello-pg needs root once: its Postgres image is debootstrapped (cached outside the clone).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build/examples}
shift || true
which=("$@")
[ ${#which[@]} -gt 0 ] || which=(busybox hello-pg)
bin=$top/bin
[ -x "$bin/hearthctl" ] || make -C "$top" "$bin/hearthctl" >/dev/null
mkdir -p "$out"
out=$(cd "$out" && pwd)
[ -s "$out/dev.key" ] || "$bin/hearthctl" keys generate --out "$out/dev" >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
busybox=$(command -v busybox || echo /bin/busybox)

# A root file system tarball of busybox-static with its applets as links.
busybox_tar() {
	local root=$work/bbroot
	rm -rf "$root"
	mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/www"
	cp "$busybox" "$root/bin/busybox"
	for a in $("$busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\n' >"$root/etc/group"
	# Fixed times and owners: the same inputs give the same package.
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$1" .
}

for w in "${which[@]}"; do
	case $w in
	busybox)
		d=$work/busybox
		mkdir -p "$d/images"
		cp -r "$top/examples/busybox/manifest.yaml" "$top/examples/busybox/README.md" "$top/examples/busybox/LICENSE" "$top/examples/busybox/assets" "$d/"
		sed -i 's#bb: {oci: images}#bb: {oci: images/busybox.tar}#' "$d/manifest.yaml"
		busybox_tar "$d/images/busybox.tar"
		"$bin/hearthctl" pack "$d" --key "$out/dev.key" --out "$out/busybox-1.0.0.hpkg" >/dev/null
		echo "$out/busybox-1.0.0.hpkg"
		;;
	hello-pg)
		pg=$("$top/deploy/images/debootstrap.sh" postgresql-15)
		(cd "$top" && CGO_ENABLED=0 go build -trimpath -o "$work/server" ./examples/hello-pg/app)
		(cd "$top" && go run ./examples/hello-pg/mkimage -app "$work/server" -out "$work/app-layout" -busybox "$busybox")
		for v in 1.0.0 2.0.0 3.0.0; do
			d=$work/hello-pg-$v
			mkdir -p "$d/images"
			ln -s "$pg" "$d/images/postgres.tar"
			ln -s "$work/app-layout" "$d/images/app"
			awk -v ver="$v" -v hooks="$top/examples/hello-pg/package/hooks-$v.yaml" \
				'{ gsub(/@VERSION@/, ver); if ($0 == "@HOOKS@") { while ((getline l < hooks) > 0) print l } else print }' \
				"$top/examples/hello-pg/package/manifest.yaml.in" >"$d/manifest.yaml"
			sed -i 's#db: {oci: images}#db: {oci: images/postgres.tar}#; s#app: {oci: images}#app: {oci: images/app}#' "$d/manifest.yaml"
			"$bin/hearthctl" pack "$d" --key "$out/dev.key" --out "$out/hello-pg-$v.hpkg" >/dev/null
			echo "$out/hello-pg-$v.hpkg"
		done
		;;
	*) echo "build.sh: no example $w (busybox, hello-pg)" >&2; exit 2 ;;
	esac
done
