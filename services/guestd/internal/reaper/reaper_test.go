package reaper

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// One reaper for the package's tests: two wait loops in one process would take each
// other's exits.
var shared = sync.OnceValues(Start)

func reaper(t *testing.T) *Reaper {
	t.Helper()
	r, err := shared()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestExitsAndOrphans(t *testing.T) {
	r := reaper(t)
	attr := &syscall.ProcAttr{Files: []uintptr{0, 1, 2}}
	for _, tc := range []struct {
		script string
		code   int
		sig    syscall.Signal
	}{
		{"exit 0", 0, 0},
		{"exit 3", 3, 0},
		{"kill -9 $$", -1, syscall.SIGKILL},
	} {
		_, ch, err := r.Spawn("/bin/sh", []string{"sh", "-c", tc.script}, attr)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-ch:
			if e.Code != tc.code || e.Signal != tc.sig {
				t.Errorf("%q: %v, want code %d signal %v", tc.script, e, tc.code, tc.sig)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q: no exit", tc.script)
		}
	}
	// A grandchild orphaned by its parent comes to us (subreaper) and is reaped: no zombie.
	_, ch, err := r.Spawn("/bin/sh", []string{"sh", "-c", "sleep 0.2 & echo $! > " + t.TempDir() + "/pid"}, attr)
	if err != nil {
		t.Fatal(err)
	}
	<-ch
	deadline := time.Now().Add(5 * time.Second)
	for r.Orphans() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if r.Orphans() == 0 {
		t.Fatal("the orphaned grandchild was not reaped")
	}
	// No zombie children of ours remain.
	ents, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[0] == "Z" && f[1] == me {
			t.Errorf("zombie child %s", e.Name())
		}
	}
}

// Signals reach a process and its group while it is unreaped, and never a pid the reaper
// has collected (or a process it did not start).
func TestSignalOnlyUnreaped(t *testing.T) {
	r := reaper(t)
	group := &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Setpgid: true}}
	wait := func(t *testing.T, ch <-chan Exit) Exit {
		t.Helper()
		select {
		case e := <-ch:
			return e
		case <-time.After(5 * time.Second):
			t.Fatal("no exit")
			return Exit{}
		}
	}
	for _, tc := range []struct {
		name   string
		signal func(r *Reaper, pid int, sig syscall.Signal) error
	}{
		{"process", (*Reaper).Signal},
		{"group", (*Reaper).SignalGroup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A shell whose child shares its group: the group signal reaches both.
			dir := t.TempDir()
			pid, ch, err := r.Spawn("/bin/sh", []string{"sh", "-c", "sleep 100 & echo $! > " + dir + "/child; wait"}, group)
			if err != nil {
				t.Fatal(err)
			}
			var child int
			for deadline := time.Now().Add(5 * time.Second); child == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				b, _ := os.ReadFile(dir + "/child")
				child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
			if child == 0 {
				t.Fatal("the shell did not start its child")
			}
			if err := tc.signal(r, pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if e := wait(t, ch); e.Signal != syscall.SIGKILL {
				t.Errorf("exit %v, want killed by SIGKILL", e)
			}
			// The child was in the group: signalled with it, or left alone with the leader.
			alive := func() bool { return syscall.Kill(child, 0) == nil && !zombie(child) }
			childAlive := alive()
			for deadline := time.Now().Add(5 * time.Second); tc.name == "group" && childAlive && time.Now().Before(deadline); childAlive = alive() {
				time.Sleep(5 * time.Millisecond) // SIGKILL is sent; the child dies when next scheduled
			}
			if tc.name == "group" && childAlive {
				t.Errorf("the group signal missed the leader's child %d", child)
			}
			if tc.name == "process" {
				if !childAlive {
					t.Errorf("the process signal reached the leader's child %d", child)
				}
				syscall.Kill(child, syscall.SIGKILL) // not ours: an orphan the reaper collects
			}
			// Reaped: the pid may be another process's by now, so nothing is sent.
			if err := tc.signal(r, pid, 0); !errors.Is(err, ErrReaped) {
				t.Errorf("signal after the exit: %v, want ErrReaped", err)
			}
		})
	}
	// Processes the reaper did not start are never signalled: not even our own.
	for _, pid := range []int{os.Getpid(), 1, 0, -1} {
		if err := r.Signal(pid, 0); !errors.Is(err, ErrReaped) {
			t.Errorf("Signal(%d): %v, want ErrReaped", pid, err)
		}
		if err := r.SignalGroup(pid, 0); !errors.Is(err, ErrReaped) {
			t.Errorf("SignalGroup(%d): %v, want ErrReaped", pid, err)
		}
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}
