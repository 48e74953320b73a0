package reaper

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExitsAndOrphans(t *testing.T) {
	r, err := Start()
	if err != nil {
		t.Fatal(err)
	}
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
