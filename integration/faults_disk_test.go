package integration

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"hearth.dev/services/containerd-lite/imagetest"
)

// smallFS makes an ext4 file system of size MiB in a sparse image under dir (no blocks
// reserved for root: the daemons run as root), mounts it at dir/fs and returns that
// path; the mount and its loop device go when t ends, after what t registers later.
// Its inode tables and journal are written by mkfs, not by the kernel in the background
// after the mount (which would compete with what the test measures or does).
func smallFS(t testing.TB, dir string, size int) string {
	t.Helper()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "fs")
	f, err := os.Create(img)
	must(t, err)
	must(t, f.Truncate(int64(size)<<20))
	must(t, f.Close())
	if out, err := run(t, "mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=0,lazy_journal_init=0", img); err != nil {
		t.Fatalf("mkfs: %v\n%s", err, out)
	}
	must(t, os.Mkdir(mnt, 0o755))
	if out, err := run(t, "mount", "-o", "loop", img, mnt); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// The lab is gone by now; whatever it left mounted below goes first.
		m := mountsUnder(t, mnt)
		for i := len(m) - 1; i >= 0; i-- {
			if out, err := run(t, "umount", m[i]); err != nil {
				t.Errorf("umount %s: %v\n%s", m[i], err, out)
				run(t, "umount", "-l", m[i])
			}
		}
		if out, _ := run(t, "losetup", "-j", img); strings.TrimSpace(out) != "" {
			t.Errorf("the loop device stays after the unmount: %s", out)
		}
	})
	return mnt
}

// freeBytes is what a file system has free for root.
func freeBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	must(t, syscall.Statfs(path, &st))
	return int64(st.Bfree) * st.Bsize
}

// fill takes all but leave bytes of path's file system with one file, which it returns.
func fill(t *testing.T, path string, leave int64) string {
	t.Helper()
	filler := filepath.Join(path, "filler")
	f, err := os.OpenFile(filler, os.O_CREATE|os.O_RDWR, 0o600)
	must(t, err)
	defer f.Close()
	// In pieces, each one as large as what is left: the file's own extents take space too.
	off, _ := f.Seek(0, 2)
	for {
		n := freeBytes(t, path) - leave
		if n < 64<<10 {
			break
		}
		for n >= 64<<10 {
			if err := syscall.Fallocate(int(f.Fd()), 0, off, n); err == nil {
				break
			} else if err != syscall.ENOSPC {
				t.Fatalf("fallocate: %v", err)
			}
			n /= 2
		}
		if n < 64<<10 {
			break
		}
		off += n
	}
	return filler
}

// TestFaultsDiskFull: the state directory's file system (a small one of the test's own)
// full during an image import, a package install and a backup: each fails with an error
// that says the disk is full, nothing is corrupted (containerd-lite restarts cleanly,
// the running package still runs, the image store and the database agree), and the same
// commands work once there is space again.
func TestFaultsDiskFull(t *testing.T) {
	requireRoot(t)
	ex := examplePackages(t, "busybox")
	var mnt string
	l := newLabWith(t, func(l *lab) {
		mnt = smallFS(t, l.dir, 400)
		l.stateDir = filepath.Join(mnt, "state")
		l.args = []string{"--disk-reserve", "8Mi"}
	})
	if _, err := hearthctl(t, l.runDir, "keys", "trust", filepath.Join(ex, "dev.pub")); err != nil {
		t.Fatal(err)
	}
	if _, err := hearthctl(t, l.runDir, "install", filepath.Join(ex, "busybox-1.0.0.hpkg")); err != nil {
		t.Fatal(err)
	}
	if _, err := hearthctl(t, l.runDir, "exec", "busybox", "web", "--", "sh", "-c", "echo before the disk filled > /www/mine && dd if=/dev/urandom of=/www/noise bs=1M count=16 2>/dev/null"); err != nil {
		t.Fatal(err)
	}
	// An image of 8 MiB that does not compress, to import; a second package, to install;
	// a backup (of 16 MiB that do not compress either) to a repository on the same file
	// system.
	bb, err := imagetest.Busybox("/bin/busybox")
	must(t, err)
	noise := make([]byte, 8<<20)
	rand.Read(noise)
	imgDir := filepath.Join(tempDir(t), "big")
	must(t, imagetest.WriteOCILayout(imgDir, imagetest.Image(v1.Config{}, append(bb, imagetest.File{Name: "noise", Body: string(noise)}))))
	two := busyboxAs(t, l, ex, "bbtwo", "[lan]")
	repo, pass := filepath.Join(mnt, "backups"), filepath.Join(l.dir, "pass")
	must(t, os.WriteFile(pass, []byte("pw"), 0o600))
	cmds := []struct {
		name string
		args []string
	}{
		{"image import", []string{"image", "import", imgDir, "--name", "big:1"}},
		{"install", []string{"install", two}},
		{"backup", []string{"backup", "busybox", "--to", repo, "--passphrase-file", pass}},
	}

	before := l.hostState(t)
	// As full as it gets, then with 10 MiB left (enough to begin each command, not to
	// end it, and above containerd-lite's reserve).
	for _, leave := range []int64{0, 10 << 20} {
		filler := fill(t, mnt, leave)
		t.Logf("the state file system full: %d KiB left free", freeBytes(t, mnt)>>10)
		for _, c := range cmds {
			t0 := time.Now()
			_, err := hearthctl(t, l.runDir, c.args...)
			if err == nil {
				t.Errorf("%s on a full disk succeeded", c.name)
				continue
			}
			msg := strings.ReplaceAll(err.Error(), "\n", " ")
			t.Logf("%s on a full disk (%v): %s", c.name, time.Since(t0).Round(time.Millisecond), msg[strings.Index(msg, "hearthctl: "):])
			if !strings.Contains(msg, "ResourceExhausted") || (!strings.Contains(msg, "no space left") && !strings.Contains(msg, "below the reserve")) {
				t.Errorf("%s on a full disk: the error does not say the disk is full: %v", c.name, err)
			}
			if d := before.diff(l.hostState(t)); d != "" {
				t.Errorf("%s on a full disk changed the host:\n%s", c.name, d)
			}
		}
		if leave == 0 {
			// Nothing is corrupted: containerd-lite stops and starts on the full disk,
			// sees the same store, and the package runs on with its data.
			l.cld.stop(syscall.SIGTERM)
			t0 := time.Now()
			l.start(t)
			t.Logf("containerd-lite SERVING %v after its start on the full disk", time.Since(t0).Round(time.Millisecond))
			if d := before.diff(l.hostState(t)); d != "" {
				t.Errorf("after a restart on the full disk, the host is not as before:\n%s", d)
			}
			if got := strings.TrimSpace(l.page(t, "/www/mine")); got != "before the disk filled" {
				t.Errorf("busybox's data after the full disk: %q", got)
			}
			l.packageIs(t, "busybox", "1.0.0")
		}
		must(t, os.Remove(filler))
	}

	// Space again: the same commands work.
	for _, c := range cmds {
		if out, err := hearthctl(t, l.runDir, c.args...); err != nil {
			t.Errorf("%s once space is free: %v\n%s", c.name, err, out)
		}
	}
	if out, _ := hearthctl(t, l.runDir, "image", "ls"); !strings.Contains(out, "big:1") {
		t.Errorf("image ls after the import:\n%s", out)
	}
	l.waitDaemons(t, "bbtwo", "ready", time.Minute, settledJobs)
}
