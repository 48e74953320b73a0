// Package initproc is guestd's init, a container's PID 1 (the command guestd-init): it
// creates the effects socket, starts the serving guestd, restarts it with a backoff when it
// dies, reaps every orphan, and on SIGTERM or SIGPWR (LXC's halt signal) stops the serving
// guestd, then everything else, and exits. It links neither gRPC nor protobuf (a test
// checks): it runs in every container, and whatever it links and initializes is paid once
// per container.
package initproc

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"hearth.dev/services/guestd/internal/effectsock"
	"hearth.dev/services/guestd/internal/reaper"
)

// Environment passed from init to the serving guestd.
const (
	BootTimeEnv = "HEARTH_GUESTD_BOOT_TIME"
	RestartsEnv = "HEARTH_GUESTD_RESTARTS"
)

// Serving is the serving guestd's file name: init runs the one next to its own executable.
const Serving = "guestd"

// StopTimeout is how long the serving guestd has to stop the package before everything is
// killed. The host's own stop timeout, which kills the whole container, is usually shorter.
const StopTimeout = 10 * time.Minute

// Main runs init. args are passed to every serving guestd; a leading "init" is dropped.
func Main(args []string) int {
	if os.Getpid() != 1 {
		// Run by hand on a host, init would take the effects socket's path there and
		// reap and stop what is not its own.
		fmt.Fprintf(os.Stderr, "guestd-init is the first process (PID 1) of a Hearth container and runs nowhere else; containerd-lite starts it (this is PID %d)\n", os.Getpid())
		return 2
	}
	if len(args) > 0 && args[0] == "init" {
		args = args[1:]
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "guestd-init: find its own executable: %v\n", err)
		return 1
	}
	in := &initProc{exe: filepath.Join(filepath.Dir(self), Serving), args: args, boot: time.Now()}
	return in.run()
}

type initProc struct {
	effects  *os.File     // the effects socket's listener, or nil
	listener net.Listener // effects comes from it; kept from the collector
	exe      string
	args     []string
	boot     time.Time
	reaper   *reaper.Reaper
	child    int
	exited   <-chan reaper.Exit
	restarts int
}

func (in *initProc) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s guestd-init: %s\n", time.Now().Format(time.RFC3339), fmt.Sprintf(format, a...))
}

func (in *initProc) start() error {
	env := append(os.Environ(),
		BootTimeEnv+"="+strconv.FormatInt(in.boot.UnixNano(), 10),
		RestartsEnv+"="+strconv.Itoa(in.restarts))
	files := []uintptr{0, 1, 2}
	if in.effects != nil {
		files = append(files, in.effects.Fd())
		env = append(env, effectsock.FDEnv+"=3")
	}
	pid, exited, err := in.reaper.Spawn(in.exe, append([]string{Serving}, in.args...), &syscall.ProcAttr{
		Env:   env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		return err
	}
	in.child, in.exited = pid, exited
	return nil
}

func (in *initProc) run() int {
	// The reaper collects every orphan; the serving guestd's exit comes on in.exited.
	r, err := reaper.Start()
	if err != nil {
		in.logf("%v", err)
		return 1
	}
	in.reaper = r
	if in.listener, err = effectsock.Listen(effectsock.Path); err != nil {
		in.logf("the effects socket: %v; the serving guestd makes its own", err)
	} else if in.effects, err = in.listener.(interface{ File() (*os.File, error) }).File(); err != nil {
		in.logf("the effects socket: %v; the serving guestd makes its own", err)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGPWR)
	backoff := 100 * time.Millisecond
	var restartAt <-chan time.Time
	if err := in.start(); err != nil {
		in.logf("start guestd: %v", err)
		return 1
	}
	started := time.Now()
	for {
		select {
		case <-restartAt:
			restartAt = nil
			in.restarts++
			if err := in.start(); err != nil {
				in.logf("restart guestd: %v", err)
				restartAt = time.After(backoff)
				continue
			}
			started = time.Now()
		case sig := <-sigs:
			in.logf("%v: stopping", sig)
			return in.shutdown()
		case e := <-in.exited:
			in.child, in.exited = 0, nil
			in.logf("guestd (pid %d) exited: %v; restarting in %v", e.PID, e, backoff)
			restartAt = time.After(backoff)
			if time.Since(started) > 30*time.Second {
				backoff = 100 * time.Millisecond
			} else {
				backoff = min(backoff*2, 5*time.Second)
			}
		}
	}
}

// shutdown stops the serving guestd (which stops the package), then every remaining
// process, then returns.
func (in *initProc) shutdown() int {
	if in.child > 0 {
		_ = in.reaper.Signal(in.child, unix.SIGTERM) // not if reaped, its exit still unread
		select {
		case <-in.exited:
		case <-time.After(StopTimeout):
			in.logf("guestd did not stop within %v", StopTimeout)
		}
	}
	// Whatever is left: processes that ignored the stop. kill(-1) spares init itself.
	_ = unix.Kill(-1, unix.SIGKILL)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if _, err := unix.Wait4(-1, nil, unix.WNOHANG, nil); err == unix.ECHILD {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}
