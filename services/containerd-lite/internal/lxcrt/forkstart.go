package lxcrt

// "containerd-lite forkstart NAME LXCPATH" is handled here, in C, before the Go runtime
// starts: liblxc forks the container's monitor from this process, and the monitor lives
// as long as the container. Forked from a Go process, it kept a copy of everything the Go
// runtime and the daemon's packages had allocated at start (~3 MiB of anonymous memory per
// container); forked from here, only liblxc's own (see BenchmarkDensity's monitor PSS).
// The constructor runs in every process that links this package, and does nothing unless
// the first argument is "forkstart".

/*
#cgo LDFLAGS: -llxc
#include <lxc/lxccontainer.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

__attribute__((constructor)) static void hearth_forkstart(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc < 2 || argv == NULL || strcmp(argv[1], "forkstart") != 0)
		return;
	if (argc != 4) {
		fprintf(stderr, "usage: %s forkstart NAME LXCPATH\n", argv[0]);
		_exit(2);
	}
	const char *name = argv[2], *path = argv[3];
	struct lxc_container *c = lxc_container_new(name, path);
	if (c == NULL) {
		fprintf(stderr, "open LXC container %s in %s: liblxc could not (see the container's lxc.log)\n", name, path);
		_exit(1);
	}
	if (!c->is_defined(c)) {
		fprintf(stderr, "container %s is not defined in %s (no config file there)\n", name, path);
		_exit(1);
	}
	if (c->is_running(c)) {
		fprintf(stderr, "container %s is already running\n", name);
		_exit(1);
	}
	// Root writes the container's id maps itself. With newuidmap and newgidmap on PATH,
	// liblxc runs "sh -c newuidmap ..." and "sh -c newgidmap ..." instead: four execs and
	// ~5 ms on every start, for a check (that the range is root's in /etc/subuid) which
	// containerd-lite has made already: it allots ranges only from those files
	// (idmap.LoadPool). Nothing else liblxc does for a start looks PATH up, and init gets
	// an environment of its own.
	unsetenv("PATH");
	// Daemonized: the monitor outlives this process and the daemon. Every descriptor but
	// the standard ones is closed in it.
	if (!c->want_daemonize(c, true) || !c->want_close_all_fds(c, true)) {
		fprintf(stderr, "container %s: liblxc refused the start options\n", name);
		_exit(1);
	}
	if (!c->start(c, 0, NULL)) {
		fprintf(stderr, "container %s failed to start (see the container's lxc.log)\n", name);
		_exit(1);
	}
	// liblxc returns once the container is RUNNING. Its init's PID, on stdout, spares the
	// daemon asking the monitor for state and PID once more.
	pid_t pid = c->init_pid(c);
	if (pid <= 0) {
		fprintf(stderr, "container %s started, but its monitor tells no init PID (see the container's lxc.log)\n", name);
		_exit(1);
	}
	printf("%d\n", (int)pid);
	fflush(stdout);
	_exit(0);
}
*/
import "C"

import (
	"bytes"
	"slices"
)

// ForkStartArg is the hidden first argument with which the daemon re-executes itself to
// start a container: "SELF forkstart NAME LXCPATH", handled before the Go runtime starts.
// It prints the running container's init PID.
const ForkStartArg = "forkstart"

// expected are lines liblxc logs (at WARN) on every start because forkstart unsets PATH:
// they say nothing about why a start failed.
var expected = [][]byte{[]byte("newuidmap binary is missing"), []byte("newgidmap binary is missing")}

// DropExpected returns the lines of a container's LXC log without the ones every start
// writes, so that what is left explains a failed start.
func DropExpected(log []byte) []byte {
	var out []byte
	for line := range bytes.Lines(log) {
		if !slices.ContainsFunc(expected, func(e []byte) bool { return bytes.Contains(line, e) }) {
			out = append(out, line...)
		}
	}
	return out
}
