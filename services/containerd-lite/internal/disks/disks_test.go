package disks

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"hearth.dev/services/containerd-lite/internal/diskimg"
	"hearth.dev/services/containerd-lite/internal/idmap"
)

// TestOpenFromTemplate: disks are made from a template kept host-only beside them, each
// its own file system, and the template is no package's disk.
func TestOpenFromTemplate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mounts")
	}
	dir := filepath.Join(t.TempDir(), "disks")
	d, err := New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Wait) // before the directory goes
	names := []string{"a", "b"}
	uuids := map[string]bool{}
	var spareIno uint64
	for i, n := range names {
		if i == 1 {
			// The first disk's copy left a spare being made: the second disk is it.
			d.Wait()
			spareIno = inode(t, filepath.Join(dir, templatesDir), ".spare")
		}
		t.Cleanup(func() {
			if err := d.Purge(n); err != nil {
				t.Error(err)
				_ = unix.Unmount(d.Dir(n), unix.MNT_DETACH)
			}
		})
		if i == 1 {
			// Made and left unmounted (a container's create); Open mounts it (its start).
			if err := d.Make(n, 64<<20); err != nil {
				t.Fatal(err)
			}
			if !d.Exists(n) {
				t.Fatalf("disk %s: Make made no image", n)
			}
			if _, _, err := diskimg.LoopDevice(d.Dir(n)); err == nil {
				t.Errorf("disk %s is mounted after Make", n)
			}
		}
		mnt, err := d.Open(n, 64<<20, idmap.Mapping{})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mnt, "data"), []byte(n), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("blkid", "-p", "-o", "value", "-s", "UUID", d.image(n)).CombinedOutput()
		if err != nil {
			t.Fatalf("blkid: %v: %s", err, out)
		}
		uuids[strings.TrimSpace(string(out))] = true
		if i == 1 {
			var st unix.Stat_t
			if err := unix.Stat(d.image(n), &st); err != nil || st.Ino != spareIno {
				t.Errorf("disk %s is inode %d (%v), want the spare made ahead, %d", n, st.Ino, err, spareIno)
			}
		}
	}
	d.Wait()
	if len(uuids) != len(names) {
		t.Errorf("%d disks share UUIDs: %v", len(names), uuids)
	}
	got, err := d.Names()
	if err != nil || !slices.Equal(got, names) {
		t.Errorf("Names = %v, %v; want %v", got, err, names)
	}
	fi, err := os.Stat(filepath.Join(dir, templatesDir))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("template directory: %v, %v; want mode 0700", fi, err)
	}
	if ents, err := os.ReadDir(filepath.Join(dir, templatesDir)); err != nil || len(ents) != 2 || ents[1].Name() != ents[0].Name()+".spare" {
		t.Errorf("template directory holds %v (%v), want one template and its spare", ents, err)
	}
	for _, n := range names {
		if b, err := os.ReadFile(filepath.Join(d.Dir(n), "data")); err != nil || string(b) != n {
			t.Errorf("disk %s holds %q, %v", n, b, err)
		}
	}
}

// inode returns the inode number of the one file in dir whose name ends with suffix.
func inode(t *testing.T, dir, suffix string) uint64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), suffix) {
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(dir, e.Name()), &st); err != nil {
				t.Fatal(err)
			}
			return st.Ino
		}
	}
	t.Fatalf("no file ending %s in %s: %v", suffix, dir, ents)
	return 0
}
