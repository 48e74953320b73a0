// Package leakcheck is for tests: it records what the process holds (goroutines, open
// descriptors, child processes) and waits, for a bounded time, until the counts are back.
package leakcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"hearth.dev/services/guestd/internal/selfstat"
)

// Counts is what the process holds at one moment.
type Counts struct {
	Goroutines int
	FDs        int
	Children   int
}

func (c Counts) String() string {
	return fmt.Sprintf("%d goroutines, %d descriptors, %d children", c.Goroutines, c.FDs, c.Children)
}

// Take counts now.
func Take(t testing.TB) Counts {
	t.Helper()
	fds, err := selfstat.OpenFDs()
	if err != nil {
		t.Fatal(err)
	}
	children, err := selfstat.Children()
	if err != nil {
		t.Fatal(err)
	}
	return Counts{Goroutines: selfstat.Goroutines(), FDs: fds, Children: children}
}

func (c Counts) within(base Counts) bool {
	return c.Goroutines <= base.Goroutines && c.FDs <= base.FDs && c.Children <= base.Children
}

// Settle polls until no count is above base, for at most wait, and fails t (with the
// goroutines' stacks and the open descriptors) when one stays above. It returns the last
// counts.
func Settle(t testing.TB, base Counts, wait time.Duration) Counts {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		now := Take(t)
		if now.within(base) {
			return now
		}
		if time.Now().After(deadline) {
			t.Errorf("after %v: %v, started with %v\n%s", wait, now, base, dump())
			return now
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dump describes the goroutines and descriptors, shortened.
func dump() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	s := b.String()
	if len(s) > 8000 {
		s = s[:8000] + "\n..."
	}
	fds, _ := filepath.Glob("/proc/self/fd/*")
	var targets []string
	for _, fd := range fds {
		l, _ := os.Readlink(fd)
		targets = append(targets, filepath.Base(fd)+"="+l)
	}
	if len(targets) > 60 {
		targets = append(targets[:60], "...")
	}
	return s + "\ndescriptors: " + strings.Join(targets, " ")
}
