// Package reaper is guestd's one wait loop: every child, and every orphan the kernel hands
// to guestd as a subreaper, is reaped here, and the exits of the processes guestd started
// go to whoever started them. Nothing else in guestd may call wait (os/exec's Wait
// included), or exits would be lost between the two.
//
// Nor may anything else signal a process guestd started by its pid: once reaped, the pid
// is free and the kernel may give it to a new process. Signal and SignalGroup signal only
// while the process is unreaped (alive, or a zombie that still holds its pid and its
// process group id), because reaping and signalling happen under one lock.
package reaper

import (
	"errors"
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

// ErrReaped is returned when signalling a process that has already been reaped (or was
// never started by Spawn): its pid may belong to another process now.
var ErrReaped = errors.New("process already reaped")

// Reaper reaps children.
type Reaper struct {
	// mu covers waiters, and every wait and every signal: a pid in waiters is unreaped.
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

// Signal sends sig to the process pid started by Spawn, unless it has been reaped
// (ErrReaped). A zombie not yet reaped takes the signal harmlessly.
func (r *Reaper) Signal(pid int, sig syscall.Signal) error {
	return r.signal(pid, pid, sig)
}

// SignalGroup sends sig to the process group led by pid, a process started by Spawn with
// its own group, unless the leader has been reaped (ErrReaped): while the leader is
// unreaped, no other group can have its id.
func (r *Reaper) SignalGroup(pid int, sig syscall.Signal) error {
	return r.signal(pid, -pid, sig)
}

func (r *Reaper) signal(pid, target int, sig syscall.Signal) error {
	if pid <= 0 {
		return fmt.Errorf("signal pid %d: %w", pid, ErrReaped)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.waiters[pid]; !ok {
		return fmt.Errorf("signal pid %d: %w", pid, ErrReaped)
	}
	if err := syscall.Kill(target, sig); err != nil {
		return fmt.Errorf("signal pid %d: %w", pid, err)
	}
	return nil
}

func (r *Reaper) reap() {
	for {
		// Wait under the lock, so that no signal goes to a pid between its reaping and
		// its leaving waiters. WNOHANG: the lock is held only for the call.
		r.mu.Lock()
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			r.mu.Unlock()
			continue
		}
		if pid <= 0 || err != nil {
			r.mu.Unlock()
			return
		}
		ch, ok := r.waiters[pid]
		delete(r.waiters, pid)
		if !ok {
			r.orphans++
		}
		r.mu.Unlock()
		e := Exit{PID: pid, Code: ws.ExitStatus(), At: time.Now()}
		if ws.Signaled() {
			e.Code, e.Signal = -1, ws.Signal()
		}
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
