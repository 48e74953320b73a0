package lxcrt

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestForkStartRefuses runs this test binary, which links the package, as
// "forkstart ...": the constructor must answer before any Go code runs (a test binary
// would otherwise run its tests and exit 0).
func TestForkStartRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no arguments", nil, 2, "usage:"},
		{"one argument", []string{"c1"}, 2, "usage:"},
		{"too many", []string{"c1", dir, "x"}, 2, "usage:"},
		{"not defined", []string{"c1", dir}, 1, "container c1 is not defined in "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], append([]string{ForkStartArg}, tc.args...)...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tc.code {
				t.Fatalf("exit: %v, want code %d\n%s", err, tc.code, out)
			}
			if !strings.Contains(string(out), tc.want) || strings.Contains(string(out), "PASS") {
				t.Errorf("output %q, want %q (and no test run)", out, tc.want)
			}
		})
	}
}

func TestDropExpected(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", ""},
		{"only expected", "lxc c 1 WARN conf - newuidmap binary is missing\nlxc c 2 WARN conf - newgidmap binary is missing\n", ""},
		{"error kept", "lxc c 1 WARN conf - newuidmap binary is missing\nlxc c 2 ERROR start - Failed to exec \"/sbin/guestd-init\"\n", "lxc c 2 ERROR start - Failed to exec \"/sbin/guestd-init\"\n"},
		{"no final newline", "lxc c 3 ERROR conf - no space", "lxc c 3 ERROR conf - no space"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(DropExpected([]byte(tc.in))); got != tc.want {
				t.Errorf("DropExpected(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
