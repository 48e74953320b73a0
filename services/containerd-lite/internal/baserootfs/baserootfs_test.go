package baserootfs

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"hearth.dev/services/containerd-lite/internal/idmap"
)

func makeBase(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "base")
	for _, d := range append([]string{"bin", "sbin", "etc"}, Required...) {
		if d == "sbin/guestd" || d == "sbin/guestd-init" || d == "bin/sh" {
			continue
		}
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"sbin/guestd", "sbin/guestd-init"} {
		if err := os.WriteFile(filepath.Join(src, f), []byte("#!"+filepath.Base(f)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "bin/busybox"), []byte("busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "bin/busybox"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(src, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	return src
}

func TestInstallShiftsOwnersOnce(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown into the containers' id range")
	}
	src := makeBase(t)
	dst := t.TempDir()
	got, err := Install(src, dst, idmap.At(100000))
	if err != nil {
		t.Fatal(err)
	}
	for rel, mode := range map[string]os.FileMode{
		".":           os.ModeDir | 0o755,
		"sbin/guestd": 0o755,
		"bin/busybox": os.ModeSetuid | 0o755,
		"bin/sh":      os.ModeSymlink | 0o777,
	} {
		fi, err := os.Lstat(filepath.Join(got, rel))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 100000 || st.Gid != 100000 {
			t.Errorf("%s owned by %d:%d, want 100000:100000", rel, st.Uid, st.Gid)
		}
		if fi.Mode() != mode {
			t.Errorf("%s mode %v, want %v", rel, fi.Mode(), mode)
		}
	}
	if target, _ := os.Readlink(filepath.Join(got, "bin/sh")); target != "busybox" {
		t.Errorf("bin/sh -> %q", target)
	}
	// Installing the same tree again finds it; a changed tree gets a new directory.
	again, err := Install(src, dst, idmap.At(100000))
	if err != nil || again != got {
		t.Fatalf("second Install = %q, %v; want %q", again, err, got)
	}
	if err := os.WriteFile(filepath.Join(src, "sbin/guestd"), []byte("#!guestd v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	third, err := Install(src, dst, idmap.At(100000))
	if err != nil || third == got {
		t.Fatalf("Install of a changed tree = %q, %v; want a new directory", third, err)
	}
}

func TestInstallRefusesIncompleteBase(t *testing.T) {
	src := makeBase(t)
	if err := os.Remove(filepath.Join(src, "sbin/guestd")); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	_, err := Install(src, dst, idmap.At(100000))
	if err == nil || !strings.Contains(err.Error(), "lacks /sbin/guestd") {
		t.Fatalf("Install: %v", err)
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 0 {
		t.Errorf("refused install left %v", ents)
	}
}
