package mounts

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:            "/plain",
		`/with\040space`:    "/with space",
		`/tab\011and\134bs`: "/tab\tand\\bs",
		`/trailing\`:        `/trailing\`,
		`/short\04`:         `/short\04`,
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestListSeesRoot(t *testing.T) {
	all, err := List()
	if err != nil {
		t.Fatal(err)
	}
	ok, err := IsMounted("/")
	if err != nil || !ok || len(all) == 0 {
		t.Fatalf("IsMounted(/) = %v, %v with %d mounts", ok, err, len(all))
	}
}

func TestMountAndUnmountAll(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	lower, upper, work, target := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "root")
	for _, d := range []string{lower, upper, work, target, filepath.Join(lower, "media")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "f"), []byte("lower"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Overlay(lower, upper, work, target); err != nil {
		t.Fatal(err)
	}
	if err := BindShared(filepath.Join(target, "media")); err != nil {
		t.Fatal(err)
	}
	// Writes land in the upper layer; the lower is untouched.
	if err := os.WriteFile(filepath.Join(target, "f"), []byte("upper"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(lower, "f")); string(b) != "lower" {
		t.Errorf("lower changed: %q", b)
	}
	under, err := Under(dir)
	if err != nil || len(under) != 2 || under[0] != filepath.Join(target, "media") {
		t.Fatalf("Under = %v, %v (want media first, then root)", under, err)
	}
	for _, p := range []string{target, filepath.Join(target, "media")} {
		if ok, err := IsMountPoint(p); err != nil || !ok {
			t.Fatalf("IsMountPoint(%s) = %v, %v, want true", p, ok, err)
		}
	}
	if ok, err := IsMountPoint(filepath.Join(target, "f")); err != nil || ok {
		t.Fatalf("IsMountPoint(file) = %v, %v, want false", ok, err)
	}
	// A symlink to a mount point is not followed: detaching it does nothing.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if ok, err := IsMountPoint(link); err != nil || ok {
		t.Fatalf("IsMountPoint(symlink) = %v, %v, want false", ok, err)
	}
	if err := Detach(link); err != nil {
		t.Fatal(err)
	}
	if under, _ := Under(dir); len(under) != 2 {
		t.Fatalf("Detach through a symlink unmounted something: %v left", under)
	}
	// Detaching the root takes the submount with it.
	if err := Detach(target); err != nil {
		t.Fatal(err)
	}
	if left, _ := Under(dir); len(left) != 0 {
		t.Fatalf("left mounted: %v", left)
	}
	if err := Detach(target); err != nil {
		t.Fatalf("Detach of what is not mounted: %v", err)
	}
	if err := Overlay("/a:b", upper, work, target); err == nil {
		t.Error("Overlay accepted a ':' in a path")
	}
}

// TestOverlayAtAgainOnItsLayers: a volatile overlay leaves a mark in its work directory
// that makes overlayfs refuse the layers; OverlayAt mounts them again all the same.
func TestOverlayAtAgainOnItsLayers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	lower, upper, work, target := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "root")
	for _, d := range []string{lower, upper, work, target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		fd, err := unix.Open(target, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = OverlayAt(lower, upper, work, fd)
		unix.Close(fd)
		if err != nil {
			t.Fatalf("mount %d: %v", i+1, err)
		}
		if _, err := os.Stat(filepath.Join(work, "work", "incompat", "volatile")); err != nil {
			t.Fatalf("mount %d left no volatile mark (%v): the test proves nothing", i+1, err)
		}
		if err := unix.Unmount(target, 0); err != nil {
			t.Fatal(err)
		}
	}
}
