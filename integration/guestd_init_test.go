package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGuestdInit: a container's PID 1 is guestd-init (C, no Go runtime), and the serving
// guestd its child; a container defined before guestd-init existed ("/sbin/guestd init"
// in its LXC configuration) gets guestd-init too, guestd executing it in its place.
func TestGuestdInit(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	for _, tc := range []struct {
		name, oldInit string
	}{
		{"ginit", ""},
		{"ginitold", "/sbin/guestd init"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := hearthctl(t, l.runDir, "container", "create", tc.name); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { hearthctl(t, l.runDir, "container", "rm", "--force", tc.name) })
			if tc.oldInit != "" {
				cfg := filepath.Join(l.lxcPath(), tc.name, "config")
				data, err := os.ReadFile(cfg)
				if err != nil {
					t.Fatal(err)
				}
				old := strings.Replace(string(data), "lxc.init.cmd = /sbin/guestd-init\n", "lxc.init.cmd = "+tc.oldInit+"\n", 1)
				if old == string(data) {
					t.Fatalf("no guestd-init init command in %s:\n%s", cfg, data)
				}
				if err := os.WriteFile(cfg, []byte(old), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := hearthctl(t, l.runDir, "container", "start", tc.name); err != nil {
				t.Fatal(err)
			}
			info := l.inspect(t, tc.name)
			if info.GetGuest() == nil {
				t.Fatalf("guestd does not answer: %s", info.GetGuestError())
			}
			pid := int(info.GetContainer().GetInitPid())
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || filepath.Base(exe) != "guestd-init" {
				t.Errorf("init (PID %d) runs %q (%v), want guestd-init", pid, exe, err)
			}
			// The serving guestd is init's child, and runs guestd.
			w := &guestWatch{l: l, name: tc.name}
			serving := w.servingPID(t)
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", serving))
			if err != nil || !strings.Contains(string(st), fmt.Sprintf("\nPPid:\t%d\n", pid)) {
				t.Errorf("serving guestd (PID %d) is not init's (PID %d) child:\n%s", serving, pid, st)
			}
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", serving)); err != nil || filepath.Base(exe) != "guestd" {
				t.Errorf("serving guestd (PID %d) runs %q (%v), want guestd", serving, exe, err)
			}
			// What init maps: guestd-init, not guestd.
			maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
			if err != nil || strings.Contains(string(maps), "/sbin/guestd\n") {
				t.Errorf("init maps guestd (%v):\n%s", err, maps)
			}
		})
	}
}
