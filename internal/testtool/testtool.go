// Package testtool lets tests ask for the programs they drive (tor, avahi, systemd's
// tools). Without root a missing program skips the test, saying what installs it; as root
// (as CI runs, after deploy/install-deps.sh) it fails it: a skipped test there proves
// nothing.
package testtool

import (
	"os"
	"os/exec"
	"testing"
)

// Need ends the test unless every program named is on PATH: a skip without root, a
// failure as root. It returns their paths in order.
func Need(t testing.TB, programs ...string) []string {
	t.Helper()
	paths := make([]string, len(programs))
	for i, p := range programs {
		path, err := exec.LookPath(p)
		if err != nil {
			Missing(t, "%s is not on PATH (deploy/install-deps.sh installs it): %v", p, err)
		}
		paths[i] = path
	}
	return paths
}

// Missing ends the test for something it needs that is not there: a skip without root, a
// failure as root.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Geteuid() == 0 {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
