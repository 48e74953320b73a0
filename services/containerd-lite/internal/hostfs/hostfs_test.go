package hostfs

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/containerd-lite/internal/idmap"
	"hearth.dev/services/containerd-lite/internal/mounts"
)

func TestMain(m *testing.M) {
	// OpenUserns runs this binary to hold a user namespace open.
	if len(os.Args) > 1 && os.Args[1] == idmap.HoldArg {
		os.Exit(idmap.Hold())
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts, ownership by other users")
	}
}

// newTree makes a container's trees in a fresh directory; its range starts at base.
func newTree(t *testing.T, base uint32) Tree {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	tr := Tree{Dir: filepath.Join(dir, "c"), Data: data, IDs: idmap.At(base)}
	if err := tr.Create(); err != nil {
		t.Fatal(err)
	}
	if err := tr.MakeData(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, m := range mustUnder(t, dir) {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	})
	return tr
}

func mustUnder(t *testing.T, dir string) []string {
	t.Helper()
	m, err := mounts.Under(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// listenAs serves a Unix socket at path owned by uid, answering "ok" to every connection.
func listenAs(t *testing.T, path string, uid int) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.Lchown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
}

func TestDialGuestRefusesWhatTheContainerPlants(t *testing.T) {
	needRoot(t)
	const base = 300000
	tr := newTree(t, base)
	sock := filepath.Join(tr.RPCDir(), "guestd.sock")
	elsewhere := filepath.Join(t.TempDir(), "other.sock")
	listenAs(t, elsewhere, base) // even a socket the container's root owns, if reached by a link
	for _, tc := range []struct {
		name  string
		plant func() error
		kind  error
		msg   string
	}{
		{"nothing", func() error { return nil }, errdefs.ErrUnavailable, "no socket yet"},
		{"symlink to another socket", func() error { return os.Symlink(elsewhere, sock) }, errdefs.ErrFailedPrecondition, "symbolic link"},
		{"regular file", func() error { return os.WriteFile(sock, nil, 0o600) }, errdefs.ErrFailedPrecondition, "not a socket"},
		{"fifo", func() error { return unix.Mkfifo(sock, 0o600) }, errdefs.ErrFailedPrecondition, "not a socket"},
		{"directory", func() error { return os.Mkdir(sock, 0o700) }, errdefs.ErrFailedPrecondition, "not a socket"},
		{"socket of another range", func() error { listenAs(t, sock, base+idmap.Size); return nil }, errdefs.ErrFailedPrecondition, "not the container's root"},
		{"socket of the host's root", func() error { listenAs(t, sock, 0); return nil }, errdefs.ErrFailedPrecondition, "not the container's root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.RemoveAll(sock)
			if err := tc.plant(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			c, err := tr.DialGuest(ctx)
			if err == nil {
				c.Close()
				t.Fatal("DialGuest connected")
			}
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("DialGuest = %v, want %v naming %q", err, tc.kind, tc.msg)
			}
		})
	}
	t.Run("the container's own socket", func(t *testing.T) {
		os.RemoveAll(sock)
		listenAs(t, sock, base)
		c, err := tr.DialGuest(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		b := make([]byte, 2)
		if _, err := c.Read(b); err != nil || string(b) != "ok" {
			t.Fatalf("read %q %v", b, err)
		}
	})
}

func TestClearSocketsRemovesOnlyWhatIsInTheDirectory(t *testing.T) {
	needRoot(t)
	tr := newTree(t, 300000)
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim.sock")
	listenAs(t, victim, 0)
	listenAs(t, filepath.Join(tr.RPCDir(), "guestd.sock"), 300000)
	if err := os.Symlink(victim, filepath.Join(tr.RPCDir(), "link.sock")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tr.RPCDir(), "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tr.ClearSockets(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(tr.RPCDir(), "guestd.sock")); !os.IsNotExist(err) {
		t.Errorf("guestd.sock stays: %v", err)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("the socket a planted link points at is gone: %v", err)
	}
	for _, n := range []string{"link.sock", "keep"} {
		if _, err := os.Lstat(filepath.Join(tr.RPCDir(), n)); err != nil {
			t.Errorf("%s (not a socket) was removed: %v", n, err)
		}
	}
}

// An image and an overlay of it; a volume bound through a path whose parent the container
// replaced by a symlink to "/" lands inside the overlay, never on the host; destroying the
// overlay leaves nothing mounted and removes nothing outside its layer.
func TestOverlayBindsStayInsideAndDestroyLeavesNothing(t *testing.T) {
	needRoot(t)
	const base = 300000
	tr := newTree(t, base)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	userns, err := idmap.At(base).OpenUserns(self)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(userns)
	img := t.TempDir()
	if err := os.MkdirAll(filepath.Join(img, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(img, "etc", "f"), []byte("image"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tr.MountImage("app", img, userns); err != nil {
		t.Fatal(err)
	}
	if !tr.ImageMounted("app") {
		t.Fatal("image not mounted")
	}
	// Inside, the image's root-owned files belong to the container's root.
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(tr.ImageMountPoint("app"), "etc", "f"), &st); err != nil || st.Uid != base {
		t.Fatalf("image file owner %d (%v), want %d", st.Uid, err, base)
	}
	if err := tr.MountOverlay("sub", "app"); err != nil {
		t.Fatal(err)
	}
	if err := tr.MountOverlay("sub", "app"); err != nil {
		t.Fatalf("mounting an overlay again: %v", err)
	}
	root := tr.OverlayMountPoint("sub")
	// The container (its root owns the upper layer) plants /var -> / in its overlay.
	if err := os.Symlink("/", filepath.Join(root, "var")); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.MakeVolume("data"); err != nil {
		t.Fatal(err)
	}
	hostProbe := "/hearth-test-must-not-exist"
	if err := tr.BindVolume("sub", "data", hostProbe+"/x", false); err != nil {
		t.Fatal(err)
	}
	if err := tr.BindVolume("sub", "data", "/var"+hostProbe+"/y", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(hostProbe); !os.IsNotExist(err) {
		os.RemoveAll(hostProbe)
		t.Fatalf("a bind path through a planted symlink reached the host: %v", err)
	}
	for _, p := range []string{hostProbe + "/x", hostProbe + "/y"} {
		if ok, err := mounts.IsMountPoint(filepath.Join(root, p)); err != nil || !ok {
			t.Errorf("%s in the overlay is not the volume's mount: %v %v", p, ok, err)
		}
	}
	// Binding again where a volume is bound already changes nothing.
	if err := tr.BindVolume("sub", "data", hostProbe+"/x", false); err != nil {
		t.Fatal(err)
	}
	if n := len(mustUnder(t, root)); n != 3 {
		t.Fatalf("%d mounts under the overlay, want 3 (overlay, two binds)", n)
	}
	if err := tr.Remove(); err == nil {
		t.Fatal("Remove went ahead with mounts below the container's directory")
	}
	// A power cut: the overlay's mount goes, its layer stays. Mounted again, it starts
	// from a fresh layer.
	if err := os.WriteFile(filepath.Join(root, "stale"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, m := range mustUnder(t, root) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.MountOverlay("sub", "app"); err != nil {
		t.Fatalf("mounting an overlay whose last run ended unmounted: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "stale")); !os.IsNotExist(err) {
		t.Errorf("the overlay kept its last run's layer: %v", err)
	}
	if err := tr.DestroyOverlay("sub"); err != nil {
		t.Fatal(err)
	}
	if m := mustUnder(t, filepath.Join(tr.MediaDir(), "subcontainers")); len(m) != 0 {
		t.Fatalf("left mounted after destroy: %v", m)
	}
	if _, err := os.Lstat(filepath.Join(tr.Data, "overlays", "sub")); !os.IsNotExist(err) {
		t.Errorf("the overlay's layer stays: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tr.VolumePath("data"))); err != nil {
		t.Errorf("the volume went with the overlay: %v", err)
	}
	if err := tr.DestroyOverlay("sub"); err != nil {
		t.Fatalf("destroying a destroyed overlay: %v", err)
	}
	if err := tr.Unmount(); err != nil {
		t.Fatal(err)
	}
	if m := mustUnder(t, tr.Dir); len(m) != 0 {
		t.Fatalf("left mounted after Unmount: %v", m)
	}
	if err := tr.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(img); err != nil {
		t.Fatalf("the image went with the container: %v", err)
	}
}

// TestMakeData: the data's directories are made with their owners and modes; made again
// (each start), those there stay as the container left them, and one that is not a
// directory is refused by name.
func TestMakeData(t *testing.T) {
	needRoot(t)
	tr := newTree(t, 300000)
	root := tr.IDs.RootUID()
	for _, c := range []struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}{
		{filepath.Join(tr.Data, "layer"), 0o700, 0, 0},
		{tr.upper(), 0o755, root, root},
		{tr.work(), 0o700, 0, 0},
		{filepath.Join(tr.Data, "overlays"), 0o700, 0, 0},
		{filepath.Join(tr.Data, "volumes"), 0o700, 0, 0},
	} {
		fi, err := os.Lstat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() || fi.Mode().Perm() != c.mode || int(st.Uid) != c.uid || int(st.Gid) != c.gid {
			t.Errorf("%s: %v owned by %d:%d, want a directory %v owned by %d:%d", c.path, fi.Mode(), st.Uid, st.Gid, c.mode, c.uid, c.gid)
		}
	}
	// The container's root changed its root directory: the next start keeps that.
	if err := os.Chmod(tr.upper(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tr.upper(), root+5, root+5); err != nil {
		t.Fatal(err)
	}
	if err := tr.MakeData(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(tr.upper())
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o700 || int(st.Uid) != root+5 {
		t.Errorf("the writable layer's root is %v owned by %d after MakeData again, want 0700 owned by %d", fi.Mode(), st.Uid, root+5)
	}
	over := filepath.Join(tr.Data, "overlays")
	if err := os.Remove(over); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(over, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tr.MakeData(); err == nil || !strings.Contains(err.Error(), over) {
		t.Errorf("MakeData with a file at %s: %v, want an error naming it", over, err)
	}
}
