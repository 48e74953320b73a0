// Package integration runs Hearth's real binaries against real LXC, mounts and sockets.
// Most tests need root and skip, saying so, without it; CI runs them as root.
//
// The binaries come from HEARTH_BIN_DIR and the base rootfs from HEARTH_BASE_ROOTFS
// (make test sets both); without them the tests build their own.
package integration
