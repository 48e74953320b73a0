// Command guestd is Hearth's service manager inside each container: it answers the host on
// /media/hearth/rpc/guestd.sock. The container's init (PID 1) is guestd-init, which keeps
// a serving guestd running.
//
//	guestd init     become guestd-init (implied when guestd is PID 1: containers made
//	                before guestd-init existed start /sbin/guestd init)
//	guestd whoami   ask the host, through host.sock, which container this is
//	guestd host ... call the host's effects by hand (guestd host, for the list)
//	guestd [flags]  serve
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"

	"hearth.dev/services/guestd/internal/guestapi"
	"hearth.dev/services/guestd/internal/hostclient"
	"hearth.dev/services/guestd/internal/initproc"
)

func main() {
	// guestd lives in every container: keep it small. One P and a soft memory limit
	// cost little for a process that mostly waits. The limit leaves room above what the
	// runtime holds besides the heap (~6 MiB serving, with a live heap of ~1 MiB): at
	// 8 MiB the heap goal fell to the live heap and the GC ran on almost every effect call
	// (an effect's p50 doubled, see BenchmarkEffectRoundTrip).
	//
	// No collection but the limit's until the package's start is over: the start's
	// garbage is collected once, by the trim that follows it (memtrim, which then sets
	// the GC percent it keeps). With GOGC 50 from the start, a start collected several
	// times (~9% of guestd's CPU in a start, measured). guestd-init sets GOMAXPROCS and
	// GOGC in the environment, so that the runtime starts this way.
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(16 << 20)
	switch {
	case os.Getpid() == 1 || (len(os.Args) > 1 && os.Args[1] == "init"):
		os.Exit(becomeInit(os.Args[1:]))
	case len(os.Args) > 1 && os.Args[1] == "whoami":
		if err := hostclient.Whoami(os.Stdout, hostclient.Socket); err != nil {
			fmt.Fprintln(os.Stderr, "guestd whoami:", err)
			os.Exit(1)
		}
	case len(os.Args) > 1 && os.Args[1] == "host":
		if err := hostclient.Command(os.Stdout, hostclient.Socket, os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "guestd host:", err)
			os.Exit(1)
		}
	default:
		guestapi.Main()
	}
}

// becomeInit executes guestd-init, next to guestd, in its place (the same PID).
func becomeInit(args []string) int {
	if len(args) > 0 && args[0] == "init" {
		args = args[1:]
	}
	self, err := os.Executable()
	if err == nil {
		exe := filepath.Join(filepath.Dir(self), initproc.Name)
		err = fmt.Errorf("execute %s: %w", exe, syscall.Exec(exe, append([]string{initproc.Name}, args...), os.Environ()))
	}
	fmt.Fprintf(os.Stderr, "guestd: become the container's init: %v (guestd-init belongs next to guestd: rebuild the base rootfs)\n", err)
	return 1
}
