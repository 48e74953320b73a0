// Command guestd-init is the PID 1 of every Hearth container: it creates the effects
// socket, runs the serving guestd (the guestd next to it, /sbin/guestd) and restarts it
// when it dies, reaps orphans, and stops everything on SIGTERM or SIGPWR.
//
//	guestd-init [ARGS...]   ARGS go to every serving guestd
//
// It is apart from guestd so that it links neither gRPC nor protobuf: it runs in every
// container for the container's life, and what it links and allocates at start is paid
// once per container (see BenchmarkDensity's init PSS).
package main

import (
	"os"
	"runtime"
	"runtime/debug"

	"hearth.dev/services/guestd/internal/initproc"
)

func main() {
	// init mostly waits: one P; its heap is a few KiB, so the GC's minimum goal bounds it.
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(50)
	os.Exit(initproc.Main(os.Args[1:]))
}
