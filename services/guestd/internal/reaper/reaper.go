// Package reaper is guestd's one wait loop: every child, and every orphan the kernel hands
// to guestd as a subreaper, is reaped here, and the exits of the processes guestd started
// go to whoever started them. Nothing else in guestd may call wait (os/exec's Wait
// included), or exits would be lost between the two.
package reaper

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Exit is how a process ended.
type Exit struct {
	PID    int
	Code   int // exit status, or -1 when killed by a signal
	Signal syscall.Signal
	At     time.Time
}

func (e Exit) String() string {
	if e.Code < 0 {
		return fmt.Sprintf("killed by %v", e.Signal)
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// Success reports exit status 0.
func (e Exit) Success() bool { return e.Code == 0 }

// Reaper reaps children.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan Exit
	orphans int
}

// Start makes the process a child subreaper and starts the wait loop.
func Start() (*Reaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become a subreaper: %w", err)
	}
	r := &Reaper{waiters: map[int]chan Exit{}}
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, unix.SIGCHLD)
	go func() {
		// Also poll: SIGCHLD coalesces, and a signal sent before Notify is lost.
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-sigs:
			case <-tick.C:
			}
			r.reap()
		}
	}()
	return r, nil
}

// Spawn starts a process with fork(), registering its pid before any exit can be reaped.
func (r *Reaper) Spawn(argv0 string, argv []string, attr *syscall.ProcAttr) (int, <-chan Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(argv0, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan Exit, 1)
	r.waiters[pid] = ch
	return pid, ch, nil
}

func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		e := Exit{PID: pid, Code: ws.ExitStatus(), At: time.Now()}
		if ws.Signaled() {
			e.Code, e.Signal = -1, ws.Signal()
		}
		r.mu.Lock()
		ch, ok := r.waiters[pid]
		delete(r.waiters, pid)
		if !ok {
			r.orphans++
		}
		r.mu.Unlock()
		if ok {
			ch <- e
		}
	}
}

// Orphans counts reaped processes nobody waited for (a daemon's descendants).
func (r *Reaper) Orphans() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.orphans
}
