// Package initproc is guestd as a container's PID 1: it starts the serving guestd, restarts
// it with a backoff when it dies, reaps every orphan, and on SIGTERM or SIGPWR (LXC's halt
// signal) stops the serving guestd, then everything else, and exits.
package initproc

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Environment passed from init to the serving guestd.
const (
	BootTimeEnv = "HEARTH_GUESTD_BOOT_TIME"
	RestartsEnv = "HEARTH_GUESTD_RESTARTS"
)

// StopTimeout is how long the serving guestd has to stop the package before everything is
// killed. The host's own stop timeout, which kills the whole container, is usually shorter.
const StopTimeout = 10 * time.Minute

// Main runs init. args are passed to every serving guestd; a leading "init" is dropped.
func Main(args []string) int {
	if len(args) > 0 && args[0] == "init" {
		args = args[1:]
	}
	// As PID 1 with no other subreaper, orphans reach us; elsewhere ask for them.
	if os.Getpid() != 1 {
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	in := &initProc{exe: self, args: args, boot: time.Now()}
	return in.run()
}

type initProc struct {
	exe      string
	args     []string
	boot     time.Time
	child    int
	restarts int
}

func (in *initProc) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s guestd-init: %s\n", time.Now().Format(time.RFC3339), fmt.Sprintf(format, a...))
}

func (in *initProc) start() error {
	env := append(os.Environ(),
		BootTimeEnv+"="+strconv.FormatInt(in.boot.UnixNano(), 10),
		RestartsEnv+"="+strconv.Itoa(in.restarts))
	p, err := os.StartProcess(in.exe, append([]string{"guestd"}, in.args...), &os.ProcAttr{
		Env:   env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		return err
	}
	in.child = p.Pid
	// Release: init reaps with wait4(-1), not through os.Process.
	_ = p.Release()
	return nil
}

func (in *initProc) run() int {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGPWR)
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
			if sig != unix.SIGCHLD {
				in.logf("%v: stopping", sig)
				return in.shutdown()
			}
			for _, ex := range reap() {
				if ex.pid != in.child {
					continue
				}
				in.child = 0
				in.logf("guestd (pid %d) exited: %s; restarting in %v", ex.pid, ex.status, backoff)
				restartAt = time.After(backoff)
				if time.Since(started) > 30*time.Second {
					backoff = 100 * time.Millisecond
				} else {
					backoff = min(backoff*2, 5*time.Second)
				}
			}
		}
	}
}

// shutdown stops the serving guestd, then every remaining process, then returns.
func (in *initProc) shutdown() int {
	if in.child > 0 {
		_ = unix.Kill(in.child, unix.SIGTERM)
		deadline := time.Now().Add(StopTimeout)
		for in.child > 0 && time.Now().Before(deadline) {
			for _, ex := range reap() {
				if ex.pid == in.child {
					in.child = 0
				}
			}
			time.Sleep(10 * time.Millisecond)
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

type exit struct {
	pid    int
	status string
}

// reap collects every exited child without blocking.
func reap() []exit {
	var out []exit
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return out
		}
		out = append(out, exit{pid: pid, status: describe(ws)})
	}
}

func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("killed by %v", ws.Signal())
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}
