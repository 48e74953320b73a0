package diskimg

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/containerd-lite/internal/mounts"
)

const mib = 1 << 20

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mounts")
	}
}

// newImage creates an image of size bytes owned by uid:gid in a temporary directory and a
// mount point beside it, and undoes every mount and loop device it leads to at the end.
func newImage(t testing.TB, size int64, uid, gid int) (path, target string) {
	t.Helper()
	return newImageWith(t, Create, size, uid, gid)
}

// createFunc is Create or a Templates' Create.
type createFunc func(path string, size int64, uid, gid int) error

// makers are the two ways of making an image, for the tests that both must pass.
func makers(t testing.TB) []struct {
	name   string
	create createFunc
} {
	return []struct {
		name   string
		create createFunc
	}{{"mkfs", Create}, {"template", newTemplates(t, 0).Create}}
}

// newImageWith is newImage, made with create.
func newImageWith(t testing.TB, create createFunc, size int64, uid, gid int) (path, target string) {
	t.Helper()
	dir := t.TempDir()
	path, target = filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanup(t, path, target) })
	if err := create(path, size, uid, gid); err != nil {
		t.Fatal(err)
	}
	return path, target
}

// cleanup unmounts target (lazily if it must) and detaches any loop device still on path.
func cleanup(t testing.TB, path, target string) {
	for range 8 {
		if ok, _ := mounts.IsMounted(target); !ok {
			break
		}
		if err := unix.Unmount(target, 0); err != nil {
			_ = unix.Unmount(target, unix.MNT_DETACH)
		}
	}
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return
	}
	dev, _ := findLoop(&st)
	if dev == "" {
		return
	}
	if fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		if err := unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0); err != nil {
			t.Errorf("cleanup: detach %s: %v", dev, err)
		}
		unix.Close(fd)
	}
}

// waitDetached waits (boundedly) until the loop device dev is attached to nothing.
func waitDetached(t *testing.T, dev string) {
	t.Helper()
	backing := filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := os.Stat(backing)
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(backing)
			t.Fatalf("%s is still attached to %s 5 s after the unmount", dev, bytes.TrimSpace(b))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustMount(t *testing.T, path, target string) string {
	t.Helper()
	dev, err := Mount(path, target)
	if err != nil {
		t.Fatal(err)
	}
	return dev
}

// fill writes 1 MiB chunks to f until the file system is full, and returns what it wrote.
// More than limit bytes without ENOSPC fails the test.
func fill(t *testing.T, f *os.File, limit int64) int64 {
	t.Helper()
	chunk := bytes.Repeat([]byte{0xa5}, mib)
	var n int64
	for n <= limit {
		w, err := f.Write(chunk)
		n += int64(w)
		if errors.Is(err, unix.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatalf("write after %d bytes: %v", n, err)
		}
	}
	t.Fatalf("wrote %d bytes without ENOSPC: the limit does not hold", n)
	return n
}

func hostFree(t *testing.T, dir string) int64 {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	return int64(fs.Bavail) * fs.Bsize
}

func TestFillStopsAtSize(t *testing.T) {
	needRoot(t)
	for _, m := range makers(t) {
		t.Run(m.name, func(t *testing.T) { testFillStopsAtSize(t, m.create) })
	}
}

func testFillStopsAtSize(t *testing.T, create createFunc) {
	const size = 64 * mib
	path, target := newImageWith(t, create, size, 101000, 102000)
	before := hostFree(t, filepath.Dir(path))
	mustMount(t, path, target)

	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 101000 || st.Gid != 102000 {
		t.Errorf("root directory owned by %d:%d, want 101000:102000", st.Uid, st.Gid)
	}
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o600 || st.Size != size {
		t.Errorf("image mode %o size %d, want 600 and %d", st.Mode&0o7777, st.Size, size)
	}
	if st.Blocks*512 > 2*mib {
		t.Errorf("a new image takes %d KiB on the host: it should be sparse", st.Blocks/2)
	}

	f, err := os.Create(filepath.Join(target, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	written := fill(t, f, size)
	if written < size*85/100 || written > size {
		t.Errorf("wrote %d MiB into a %d MiB image before ENOSPC, want 85-100%%", written/mib, size/mib)
	}
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	used, total, err := Usage(target)
	if err != nil {
		t.Fatal(err)
	}
	if total > size || total < size*85/100 || used < total*95/100 {
		t.Errorf("Usage = %d used of %d, want nearly all of about %d", used, total, size)
	}
	t.Logf("wrote %.1f MiB before ENOSPC; df: %.1f of %.1f MiB", float64(written)/mib, float64(used)/mib, float64(total)/mib)

	// On the host, the image takes at most its size, and the host loses no more.
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > size {
		t.Errorf("the full image takes %d bytes on the host, more than its %d", st.Blocks*512, size)
	}
	// Others may write to this disk meanwhile: allow them 256 MiB.
	if drop := before - hostFree(t, filepath.Dir(path)); drop > size+256*mib {
		t.Errorf("the host's free space dropped by %d MiB for a %d MiB image", drop/mib, size/mib)
	}
}

func TestMountIdempotentUnmountFrees(t *testing.T) {
	needRoot(t)
	path, target := newImage(t, 32*mib, 0, 0)
	dev := mustMount(t, path, target)
	if err := os.WriteFile(filepath.Join(target, "kept"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if again := mustMount(t, path, target); again != dev {
		t.Errorf("second Mount gave %s, first %s", again, dev)
	}
	all, err := mounts.List()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range all {
		if m.Target == target {
			n++
			if m.FSType != "ext4" || m.Source != dev {
				t.Errorf("mount at target: %+v, want ext4 from %s", m, dev)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d mounts at the target after two Mounts, want 1", n)
	}
	gotDev, backing, err := LoopDevice(target)
	if err != nil || gotDev != dev || backing != path {
		t.Errorf("LoopDevice = %s, %s, %v; want %s, %s", gotDev, backing, err, dev, path)
	}

	// The same image at a second target would be a second mount of one file system.
	other := filepath.Join(filepath.Dir(target), "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Mount(path, other); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Mount at a second target: %v, want ErrFailedPrecondition", err)
	}

	if err := Unmount(target); err != nil {
		t.Fatal(err)
	}
	waitDetached(t, dev)
	if err := Unmount(target); err != nil {
		t.Errorf("Unmount of what is not mounted: %v", err)
	}
	if _, _, err := Usage(target); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Usage after Unmount: %v, want ErrNotFound", err)
	}

	mustMount(t, path, target)
	if b, err := os.ReadFile(filepath.Join(target, "kept")); err != nil || string(b) != "data" {
		t.Errorf("after a remount: %q, %v; want the data written before", b, err)
	}
}

func TestLazilyDetached(t *testing.T) {
	needRoot(t)
	for _, holdOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("file held open %v", holdOpen), func(t *testing.T) {
			path, target := newImage(t, 32*mib, 0, 0)
			dev := mustMount(t, path, target)
			f, err := os.Create(filepath.Join(target, "held"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if !holdOpen {
				f.Close()
			}
			// As a crash-time cleanup does: detach the mount, whatever uses it.
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			if holdOpen {
				// The file system lives on through the open file, on its device.
				if _, err := f.WriteString("after detach"); err != nil {
					t.Fatal(err)
				}
			} else {
				waitDetached(t, dev)
			}

			again := mustMount(t, path, target)
			if holdOpen && again != dev {
				t.Errorf("remounted on %s while the file system is alive on %s: two file systems on one image", again, dev)
			}
			if holdOpen {
				if b, err := os.ReadFile(filepath.Join(target, "held")); err != nil || string(b) != "after detach" {
					t.Errorf("through the new mount: %q, %v; want what the held file wrote", b, err)
				}
				f.Close()
			} else if _, err := os.Stat(filepath.Join(target, "held")); err != nil {
				t.Error(err)
			}
			if err := Unmount(target); err != nil {
				t.Fatal(err)
			}
			waitDetached(t, again)
		})
	}
}

func TestGrowOnline(t *testing.T) {
	needRoot(t)
	if ok, err := hasCapSysResource(); err != nil || !ok {
		t.Skip("online ext4 growth needs CAP_SYS_RESOURCE, which this process lacks (TestGrowOnlineWithoutCapability covers the refusal)")
	}
	path, target := newImage(t, 64*mib, 0, 0)
	mustMount(t, path, target)
	f, err := os.Create(filepath.Join(target, "growing"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first := fill(t, f, 64*mib)

	start := time.Now()
	if err := Grow(path, target, 128*mib); err != nil {
		t.Fatal(err)
	}
	t.Logf("Grow 64 -> 128 MiB mounted: %v", time.Since(start))
	// The same open file keeps writing into the new space.
	more := fill(t, f, 128*mib)
	if more < 56*mib {
		t.Errorf("after Grow the open file took %d MiB more before ENOSPC, want about 64", more/mib)
	}
	used, size, err := Usage(target)
	if err != nil {
		t.Fatal(err)
	}
	if size < 120*mib || size > 128*mib || used < (first+more)*95/100 {
		t.Errorf("Usage after Grow = %d of %d, want about %d of 128 MiB", used, size, first+more)
	}
	// Growing to the size it has is a no-op.
	if err := Grow(path, target, 128*mib); err != nil {
		t.Errorf("Grow to the same size: %v", err)
	}
}

func TestGrowOnlineWithoutCapability(t *testing.T) {
	needRoot(t)
	if ok, err := hasCapSysResource(); err != nil || ok {
		t.Skip("this process holds CAP_SYS_RESOURCE (TestGrowOnline covers growth)")
	}
	path, target := newImage(t, 32*mib, 0, 0)
	mustMount(t, path, target)
	if err := Grow(path, target, 64*mib); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Fatalf("Grow without CAP_SYS_RESOURCE: %v, want ErrPermissionDenied", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Size != 32*mib {
		t.Errorf("a refused Grow changed the image: size %d, %v", st.Size, err)
	}
}

func TestGrowOffline(t *testing.T) {
	needRoot(t)
	for _, m := range makers(t) {
		t.Run(m.name, func(t *testing.T) { testGrowOffline(t, m.create) })
	}
}

func testGrowOffline(t *testing.T, create createFunc) {
	path, target := newImageWith(t, create, 32*mib, 0, 0)
	mustMount(t, path, target)
	if err := os.WriteFile(filepath.Join(target, "kept"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, before, err := Usage(target)
	if err != nil {
		t.Fatal(err)
	}
	if err := GrowOffline(path, 96*mib); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("GrowOffline while mounted: %v, want ErrFailedPrecondition", err)
	}
	if err := Unmount(target); err != nil {
		t.Fatal(err)
	}
	if err := GrowOffline(path, 96*mib); err != nil {
		t.Fatal(err)
	}
	if err := GrowOffline(path, 96*mib); err != nil {
		t.Errorf("GrowOffline to the same size: %v", err)
	}
	mustMount(t, path, target)
	_, after, err := Usage(target)
	if err != nil {
		t.Fatal(err)
	}
	if after < before+60*mib || after > 96*mib {
		t.Errorf("size %d MiB after growing from %d MiB to 96 MiB", after/mib, before/mib)
	}
	if b, err := os.ReadFile(filepath.Join(target, "kept")); err != nil || string(b) != "data" {
		t.Errorf("after growth: %q, %v; want the data written before", b, err)
	}
	f, err := os.Create(filepath.Join(target, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := fill(t, f, 96*mib); n < 80*mib {
		t.Errorf("grown image took %d MiB, want more than 80", n/mib)
	}
}

func TestBadInputs(t *testing.T) {
	needRoot(t)
	path, target := newImage(t, 32*mib, 0, 0)
	dir := filepath.Dir(path)
	link := filepath.Join(dir, "link.img")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	notExt4 := filepath.Join(dir, "zeroes.img")
	if err := os.WriteFile(notExt4, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(notExt4, 32*mib); err != nil {
		t.Fatal(err)
	}
	tmpfs := filepath.Join(dir, "tmpfs")
	if err := os.Mkdir(tmpfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", tmpfs, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(tmpfs, unix.MNT_DETACH) })
	missing := filepath.Join(dir, "missing")
	tpls := newTemplates(t, 0)

	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"create below the minimum", func() error { return Create(filepath.Join(dir, "small.img"), MinSize-1, 0, 0) }, errdefs.ErrInvalidArgument},
		{"create a negative size", func() error { return Create(filepath.Join(dir, "neg.img"), -1, 0, 0) }, errdefs.ErrInvalidArgument},
		{"create a negative owner", func() error { return Create(filepath.Join(dir, "own.img"), MinSize, -1, 0) }, errdefs.ErrInvalidArgument},
		{"create over an image", func() error { return Create(path, MinSize, 0, 0) }, errdefs.ErrAlreadyExists},
		{"create over a symlink", func() error { return Create(link, MinSize, 0, 0) }, errdefs.ErrAlreadyExists},
		{"create in a missing directory", func() error { return Create(filepath.Join(missing, "x.img"), MinSize, 0, 0) }, errdefs.ErrNotFound},
		{"copy below the minimum", func() error { return tpls.Create(filepath.Join(dir, "small.img"), MinSize-1, 0, 0) }, errdefs.ErrInvalidArgument},
		{"copy a negative owner", func() error { return tpls.Create(filepath.Join(dir, "own.img"), MinSize, 0, -1) }, errdefs.ErrInvalidArgument},
		{"copy over an image", func() error { return tpls.Create(path, MinSize, 0, 0) }, errdefs.ErrAlreadyExists},
		{"copy over a symlink", func() error { return tpls.Create(link, MinSize, 0, 0) }, errdefs.ErrAlreadyExists},
		{"copy into a missing directory", func() error { return tpls.Create(filepath.Join(missing, "x.img"), MinSize, 0, 0) }, errdefs.ErrNotFound},
		{"mount a symlink", func() error { _, err := Mount(link, target); return err }, errdefs.ErrInvalidArgument},
		{"mount a missing image", func() error { _, err := Mount(missing, target); return err }, errdefs.ErrNotFound},
		{"mount a directory", func() error { _, err := Mount(dir, target); return err }, errdefs.ErrInvalidArgument},
		{"mount on a missing target", func() error { _, err := Mount(path, missing); return err }, errdefs.ErrNotFound},
		{"mount on a file", func() error { _, err := Mount(path, notExt4); return err }, errdefs.ErrInvalidArgument},
		{"mount over a tmpfs", func() error { _, err := Mount(path, tmpfs); return err }, errdefs.ErrFailedPrecondition},
		{"mount what is not ext4", func() error { _, err := Mount(notExt4, target); return err }, errdefs.ErrInvalidArgument},
		{"shrink", func() error { return Grow(path, target, 16*mib) }, errdefs.ErrInvalidArgument},
		{"shrink offline", func() error { return GrowOffline(path, 16*mib) }, errdefs.ErrInvalidArgument},
		{"grow what is not mounted", func() error { return Grow(path, target, 64*mib) }, errdefs.ErrFailedPrecondition},
		{"grow a symlink", func() error { return GrowOffline(link, 64*mib) }, errdefs.ErrInvalidArgument},
		{"unmount a tmpfs", func() error { return Unmount(tmpfs) }, errdefs.ErrFailedPrecondition},
		{"unmount what is not mounted", func() error { return Unmount(target) }, nil},
		{"unmount a missing target", func() error { return Unmount(missing) }, nil},
		{"usage of what is not mounted", func() error { _, _, err := Usage(target); return err }, errdefs.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}

	// None of that left a loop device on an image or a mount behind.
	for _, p := range []string{path, notExt4} {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if dev, err := findLoop(&st); err != nil || dev != "" {
			t.Errorf("%s is left on loop device %q (%v)", p, dev, err)
		}
	}
	if ok, _ := mounts.IsMounted(target); ok {
		t.Error("a refused call left a mount at the target")
	}
	// Nor a file: no temporary of a refused Create.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"disk.img", "link.img", "mnt", "tmpfs", "zeroes.img"}; !slices.Equal(names, want) {
		t.Errorf("directory holds %v, want %v", names, want)
	}
	// A refused copy is refused before a template is made for it.
	if _, err := os.Stat(tpls.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused copies made the template directory (%v)", err)
	}
}

func TestCreateNeedsNoRootToRefuse(t *testing.T) {
	dir := t.TempDir()
	if err := Create(filepath.Join(dir, "x.img"), 1*mib, 0, 0); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Create 1 MiB: %v, want ErrInvalidArgument", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused Create left %d files", len(entries))
	}
}

// Several images mounted at once race for free loop devices (LOOP_CTL_GET_FREE names the
// same one to all); each must end on its own.
func TestConcurrentMounts(t *testing.T) {
	needRoot(t)
	const n = 4
	paths, targets := make([]string, n), make([]string, n)
	for i := range n {
		paths[i], targets[i] = newImage(t, 16*mib, 0, 0)
	}
	devs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { devs[i], errs[i] = Mount(paths[i], targets[i]) })
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("image %d: %v", i, errs[i])
		}
		if seen[devs[i]] {
			t.Errorf("two images on %s", devs[i])
		}
		seen[devs[i]] = true
	}
}

// TestRemountAtOnce: a disk mounted again right after its unmount (a container stopped
// and started at once, or an idle start for an action then the real start) mounts and
// reads every time, also while the last mount is still going away from another mount
// namespace's view (a lazy detach with a file held open on it for a moment).
func TestRemountAtOnce(t *testing.T) {
	needRoot(t)
	path, target := newImage(t, 32*mib, 0, 0)
	const rounds = 150
	for i := range rounds {
		mustMount(t, path, target)
		name := filepath.Join(target, fmt.Sprintf("f%d", i))
		if err := os.WriteFile(name, []byte("x"), 0o600); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if i%2 == 0 {
			if err := Unmount(target); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			continue
		}
		// A file open on the file system keeps it alive past a lazy detach, and is let go
		// of while the next mount is being made.
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
		go func() { time.Sleep(time.Duration(i%5) * 100 * time.Microsecond); f.Close() }()
	}
	mustMount(t, path, target)
	entries, err := os.ReadDir(target)
	if err != nil || len(entries) < rounds {
		t.Fatalf("after %d remounts: %d files, %v", rounds, len(entries), err)
	}
}

// TestGrowOfflineRightAfterUnmount: growing an image offline right after its package
// stopped waits for its loop device, which detaches itself only once the last mount (here
// a lazily detached one, kept a moment by an open file) has let go.
func TestGrowOfflineRightAfterUnmount(t *testing.T) {
	needRoot(t)
	path, target := newImage(t, 32*mib, 0, 0)
	mustMount(t, path, target)
	f, err := os.Create(filepath.Join(target, "held"))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(200 * time.Millisecond); f.Close() }()
	if err := GrowOffline(path, 48*mib); err != nil {
		t.Fatal(err)
	}
	dev := mustMount(t, path, target)
	if _, size, err := Usage(target); err != nil || size < 40*mib {
		t.Fatalf("after growing: size %d, %v (on %s)", size, err, dev)
	}
}
