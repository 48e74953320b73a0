package diskimg

import (
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLoopsIn: the loop devices of a /proc/partitions text, and nothing else: not its
// header, other disks, a loop device's partitions, or a malformed line.
func TestLoopsIn(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"none", "major minor  #blocks  name\n\n 254        0  268435456 vda\n", nil},
		{"some", "major minor  #blocks  name\n\n 254 0 268435456 vda\n   7 0 65536 loop0\n 254 1 1024 vda1\n   7 12 8388608 loop12\n", []string{"loop0", "loop12"}},
		{"partition of a loop device", "   7 0 65536 loop0\n 259 0 1024 loop0p1\n", []string{"loop0"}},
		{"not a loop device", "   7 0 65536 loopy\n  7 1 65536 loop\n", nil},
		{"malformed", "7 0 loop3\n\n7 0 65536 loop4 extra\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := loopsIn([]byte(tc.text)); !slices.Equal(got, tc.want) {
				t.Errorf("loopsIn = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestFindLoop: an image mounted is found on its loop device, through /proc/partitions
// and through /sys/block alike; once unmounted and detached, on none.
func TestFindLoop(t *testing.T) {
	needRoot(t)
	path, target := newImage(t, 64<<20, 0, 0)
	dev, err := Mount(path, target)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	both := func(want string) {
		t.Helper()
		for _, from := range []string{"/proc/partitions", filepath.Join(t.TempDir(), "none")} {
			old := partitions
			partitions = from
			got, err := findLoop(&st)
			partitions = old
			if err != nil || got != want {
				t.Errorf("findLoop with %s = %q (%v), want %q", from, got, err, want)
			}
		}
	}
	both(dev)
	if err := Unmount(target); err != nil {
		t.Fatal(err)
	}
	waitDetached(t, dev)
	both("")
}
