package packages

import (
	"strings"
	"testing"

	"hearth.dev/internal/manifest"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
)

func TestOffered(t *testing.T) {
	for _, tc := range []struct {
		when  string
		state lxcrt.State
		ok    bool
		why   string
	}{
		{"", lxcrt.Running, true, ""},
		{"any", lxcrt.Stopped, true, ""},
		{"any", lxcrt.Stopping, false, "the package is stopping: wait for it to settle"},
		{"running", lxcrt.Running, true, ""},
		{"running", lxcrt.Stopped, false, "offered only while the package runs, and it is stopped: start it first"},
		{"stopped", lxcrt.Stopped, true, ""},
		{"stopped", lxcrt.Running, false, "offered only while the package is stopped, and it is running: stop it first"},
		{"stopped", lxcrt.Starting, false, "and it is starting"},
	} {
		t.Run(tc.when+"/"+string(tc.state), func(t *testing.T) {
			ok, why := offered(&manifest.Action{When: tc.when}, tc.state)
			if ok != tc.ok || (tc.why == "" && why != "") || !strings.Contains(why, tc.why) {
				t.Errorf("offered = %v %q, want %v %q", ok, why, tc.ok, tc.why)
			}
		})
	}
}
