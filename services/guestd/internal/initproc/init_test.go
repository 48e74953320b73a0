package initproc

import (
	"os"
	"testing"
)

// TestRefusesOutsideAContainer: run as anything but PID 1 (by hand on a host), init
// refuses at once, before it makes a socket or starts anything.
func TestRefusesOutsideAContainer(t *testing.T) {
	for _, args := range [][]string{nil, {"--version"}, {"init"}} {
		if code := Main(args); code != 2 {
			t.Errorf("Main(%q) as PID %d = %d, want 2", args, os.Getpid(), code)
		}
	}
}
