package backup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/errdefs"
)

// buildVolume fills root with every kind of entry a volume may hold. Ids are from a
// package's range (100000...), as on a host.
func buildVolume(t *testing.T, root string) {
	t.Helper()
	const u, g = 100000, 100000
	sizes := []int{0, 1, 17, 4095, 4096, 65537, 300_000, 9<<20 + 123}
	for i, size := range sizes {
		writeFile(t, filepath.Join(root, "data", "f"+string(rune('a'+i))), size, uint64(i), 0o644, u, g)
	}
	writeFile(t, filepath.Join(root, "a/b/c/d/deep"), 1000, 40, 0o600, u+999, g+999)
	writeFile(t, filepath.Join(root, "bin/setuid"), 200, 41, 0o4755, u, g)
	writeFile(t, filepath.Join(root, "bin/setgid"), 200, 42, 0o2711, u, g+5)
	writeFile(t, filepath.Join(root, "bin/hostroot"), 10, 43, 0o640, 0, 0)
	writeFile(t, filepath.Join(root, "links/one"), 5000, 44, 0o640, u+7, g+7)
	must(t, os.MkdirAll(filepath.Join(root, "a/x"), 0o755))
	must(t, os.Link(filepath.Join(root, "links/one"), filepath.Join(root, "links/two")))
	must(t, os.Link(filepath.Join(root, "links/one"), filepath.Join(root, "a/x/three")))
	for _, d := range []struct {
		p    string
		mode os.FileMode
		uid  int
	}{
		{"empty", 0o700, u + 1},
		{"tmp", 0o1777 | os.ModeSticky, u},
		{"shared", 0o2775 | os.ModeSetgid, u + 2},
	} {
		must(t, os.Mkdir(filepath.Join(root, d.p), 0o700))
		must(t, os.Chown(filepath.Join(root, d.p), d.uid, d.uid))
		must(t, os.Chmod(filepath.Join(root, d.p), d.mode))
	}
	for _, l := range [][2]string{
		{"a/rel", "../data/fa"},
		{"abs", "/etc/passwd"},
		{"dangling", "does/not/exist"},
		{"linkdir", "a"},
		{"a/b/up", "../../../../../../etc"},
	} {
		must(t, os.Symlink(l[1], filepath.Join(root, l[0])))
		must(t, os.Lchown(filepath.Join(root, l[0]), u+3, g+3))
	}
	must(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o640))
	must(t, os.Chown(filepath.Join(root, "fifo"), u+4, g+4))
	makeSocket(t, filepath.Join(root, "sock"))
	must(t, unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, os.Chown(root, u, g))
	must(t, os.Chmod(root, 0o750))
}

func TestRoundTrip(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	r, _ := openTestRepo(t, ctx)
	src := t.TempDir()
	vol := filepath.Join(src, "data")
	must(t, os.Mkdir(vol, 0o700))
	buildVolume(t, vol)
	small := filepath.Join(src, "small")
	must(t, os.Mkdir(small, 0o700))
	writeFile(t, filepath.Join(small, "only"), 3, 7, 0o600, 100000, 100000)
	want := scan(t, vol)

	meta := Meta{Manifest: []byte("id: hello\nversion: 1.2.3\n"), Version: "1.2.3", Labels: map[string]string{"idbase": "100000"}}
	var last Progress
	snap, err := r.Backup(ctx, "hello", meta, map[string]string{"data": vol, "small": small}, func(p Progress) { last = p })
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if !slices.Equal(snap.Volumes, []string{"data", "small"}) || snap.Version != "1.2.3" || snap.ID == "" {
		t.Errorf("snapshot = %+v", snap)
	}
	var kinds []string
	for _, s := range snap.Special {
		kinds = append(kinds, s.Path+":"+s.Kind)
	}
	if want := []string{"fifo:fifo", "null:char", "sock:socket"}; !slices.Equal(kinds, want) {
		t.Errorf("special entries = %v, want %v", kinds, want)
	}
	var total, targets, files, dirs int64
	for _, n := range want {
		switch n.Type {
		case "file":
			total += n.Size
			files++
		case "symlink":
			targets += int64(len(n.Target))
		case "dir":
			dirs++
		}
	}
	total += 3 // small/only
	if snap.Bytes != total || last.Bytes != total+targets || snap.Files != files+1 || snap.Dirs != dirs+1 {
		t.Errorf("snapshot: %d bytes, %d files, %d dirs, last progress %+v; want %d bytes (%d with symlinks), %d files, %d dirs",
			snap.Bytes, snap.Files, snap.Dirs, last, total, total+targets, files+1, dirs+1)
	}

	list, err := r.List(ctx, "hello")
	if err != nil || len(list) != 1 || list[0].ID != snap.ID || list[0].Version != "1.2.3" ||
		!slices.Equal(list[0].Volumes, snap.Volumes) || list[0].Bytes != snap.Bytes || list[0].Files != snap.Files {
		t.Fatalf("List = %+v, %v", list, err)
	}
	got, err := r.Verify(ctx, snap.ID)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !bytes.Equal(got.Manifest, meta.Manifest) || got.Version != meta.Version || got.Labels["idbase"] != "100000" {
		t.Errorf("Verify's meta = %+v", got)
	}

	out := filepath.Join(t.TempDir(), "out")
	must(t, os.Mkdir(out, 0o700))
	var rlast Progress
	got, err = r.Restore(ctx, snap.ID, map[string]string{"data": out}, func(p Progress) { rlast = p })
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !bytes.Equal(got.Manifest, meta.Manifest) || got.Version != meta.Version {
		t.Errorf("Restore's meta = %+v", got)
	}
	if rlast.Bytes != total-3-2*5000 { // links made, not written; "small" not restored
		t.Errorf("restore progress %+v, want %d bytes", rlast, total-3-2*5000)
	}
	compare(t, want, scan(t, vol)) // the source unchanged by the backup
	// Sockets and device nodes are recorded, not made again.
	delete(want, "sock")
	delete(want, "null")
	compare(t, want, scan(t, out))
}

// A volume's planted links: a symlink to a host file and a hard link to one (same file
// system). The symlink is stored as its text; the hard link's content is the file's
// (which the package could read anyway: it is its file too), and nothing the restore
// makes is the host file.
func TestPlantedLinks(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	r, _ := openTestRepo(t, ctx)
	base := t.TempDir()
	host := filepath.Join(base, "host")
	must(t, os.Mkdir(host, 0o700))
	secret := filepath.Join(host, "secret")
	must(t, os.WriteFile(secret, []byte("HOST-SECRET-CANARY"), 0o600))
	vol := filepath.Join(base, "vol")
	must(t, os.Mkdir(vol, 0o755))
	must(t, os.Symlink(secret, filepath.Join(vol, "sym-abs")))
	must(t, os.Symlink("../host/secret", filepath.Join(vol, "sym-rel")))
	must(t, os.Symlink("../host", filepath.Join(vol, "sym-dir")))
	must(t, os.Link(secret, filepath.Join(vol, "hard")))

	snap, err := r.Backup(ctx, "p", Meta{}, map[string]string{"v": vol}, nil)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if snap.Files != 1 {
		t.Errorf("%d files stored, want 1 (the hard link)", snap.Files)
	}
	out := filepath.Join(base, "out")
	must(t, os.Mkdir(out, 0o700))
	if _, err := r.Restore(ctx, snap.ID, map[string]string{"v": out}, nil); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	for name, target := range map[string]string{"sym-abs": secret, "sym-rel": "../host/secret", "sym-dir": "../host"} {
		got, err := os.Readlink(filepath.Join(out, name))
		if err != nil || got != target {
			t.Errorf("restored %s: %q, %v; want a symlink to %q", name, got, err, target)
		}
	}
	var hs, ss unix.Stat_t
	must(t, unix.Lstat(filepath.Join(out, "hard"), &hs))
	must(t, unix.Stat(secret, &ss))
	if hs.Ino == ss.Ino || hs.Nlink != 1 || hs.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("restored hard link: ino %d nlink %d mode %#o (host file ino %d): want a file of its own",
			hs.Ino, hs.Nlink, hs.Mode, ss.Ino)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "hard")); string(b) != "HOST-SECRET-CANARY" {
		t.Errorf("restored hard link holds %q", b)
	}
	if ents, _ := os.ReadDir(host); len(ents) != 1 || ss.Nlink != 2 {
		t.Errorf("the host directory changed: %v, nlink %d", ents, ss.Nlink)
	}
}

// Restore into a target an attacker prepared: a non-empty target is refused; and should
// a symlink appear where the snapshot has a directory (planted while the restore runs),
// nothing is written through it.
func TestRestoreRefusesPlantedTarget(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	r, _ := openTestRepo(t, ctx)
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	writeFile(t, filepath.Join(vol, "data/inner/file"), 100, 1, 0o644, 100000, 100000)
	writeFile(t, filepath.Join(vol, "data/top"), 100, 2, 0o644, 100000, 100000)
	// Links and a FIFO too, made after the tree by the restore.
	must(t, os.Link(filepath.Join(vol, "data/top"), filepath.Join(vol, "data/inner/hard")))
	must(t, os.Symlink("../../outside", filepath.Join(vol, "data/inner/sym")))
	must(t, unix.Mkfifo(filepath.Join(vol, "data/inner/fifo"), 0o600))
	snap, err := r.Backup(ctx, "p", Meta{}, map[string]string{"v": vol}, nil)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	outside := filepath.Join(base, "outside")
	must(t, os.Mkdir(outside, 0o700))

	for _, tc := range []struct {
		name  string
		plant func(target string)
	}{
		{"symlink to a host dir where a dir is", func(target string) {
			must(t, os.Symlink(outside, filepath.Join(target, "data")))
		}},
		{"relative symlink where a dir is", func(target string) {
			rel, err := filepath.Rel(target, outside)
			must(t, err)
			must(t, os.Symlink(rel, filepath.Join(target, "data")))
		}},
		{"dir with a symlink where a nested dir is", func(target string) {
			must(t, os.Mkdir(filepath.Join(target, "data"), 0o700))
			must(t, os.Symlink(outside, filepath.Join(target, "data", "inner")))
		}},
		{"file where a file is", func(target string) {
			writeFile(t, filepath.Join(target, "data/top"), 1, 3, 0o644, 0, 0)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "target")
			must(t, os.Mkdir(target, 0o700))
			tc.plant(target)
			_, err := r.Restore(ctx, snap.ID, map[string]string{"v": target}, nil)
			if !errors.Is(err, errNotEmpty) || !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Errorf("Restore into a prepared target: %v, want %v", err, errNotEmpty)
			}
			// The same planted target under the restore's own writer (as if planted
			// after the emptiness check): it fails, and writes nothing outside.
			s, err := r.openSnapshot(ctx, r.rep, snap.ID)
			must(t, err)
			src, mtime, err := s.volume(ctx, r.rep, "v")
			must(t, err)
			fd, err := unix.Open(target, unix.O_RDONLY|unix.O_DIRECTORY, 0)
			must(t, err)
			defer unix.Close(fd)
			err = r.restoreVolume(ctx, src, mtime, fd, "v", s.idx.Volumes["v"], &reporter{})
			if err == nil {
				t.Errorf("restore through a planted entry succeeded")
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("restore wrote outside its target: %v", ents)
			}
		})
	}
}

// A directory of the volume swapped for a symlink to a host directory, again and again,
// while backups run: whatever each backup stores, the host's canary is never in it.
func TestSwapDuringBackup(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	r, _ := openTestRepo(t, ctx)
	base := t.TempDir()
	// The host directory holds the same names as the volume's directory, so that a
	// reader following the swapped-in symlink would find the canary under them.
	host := filepath.Join(base, "host")
	must(t, os.MkdirAll(filepath.Join(host, "sub"), 0o755))
	vol := filepath.Join(base, "vol")
	for i := range 200 {
		name := fmt.Sprintf("f%03d", i)
		writeFile(t, filepath.Join(vol, "d", name), 2000, uint64(i), 0o644, 0, 0)
		must(t, os.WriteFile(filepath.Join(host, name), []byte("HOST-CANARY-7f3a"), 0o644))
	}
	writeFile(t, filepath.Join(vol, "d/sub/inner"), 100, 1, 0o644, 0, 0)
	must(t, os.WriteFile(filepath.Join(host, "sub/inner"), []byte("HOST-CANARY-7f3a"), 0o644))
	d, aside := filepath.Join(vol, "d"), filepath.Join(vol, "d.real")

	stop := make(chan struct{})
	done := make(chan int)
	go func() { // the package's root, swapping d for a symlink and back
		swaps := 0
		for {
			select {
			case <-stop:
				os.Remove(d)
				os.Rename(aside, d)
				done <- swaps
				return
			default:
			}
			if os.Rename(d, aside) == nil {
				os.Symlink(host, d)
				os.Remove(d)
				os.Rename(aside, d)
				swaps++
			}
		}
	}()
	var ids []string
	failed := 0
	for range 15 {
		snap, err := r.Backup(ctx, "p", Meta{}, map[string]string{"v": vol}, nil)
		if err != nil {
			if !errors.Is(err, errdefs.ErrAborted) {
				close(stop)
				<-done
				t.Fatalf("Backup failed with %v, want ErrAborted or success", err)
			}
			failed++
			continue
		}
		ids = append(ids, snap.ID)
	}
	close(stop)
	swaps := <-done
	t.Logf("%d swaps, %d backups stored, %d aborted", swaps, len(ids), failed)
	if swaps == 0 {
		t.Fatal("no swap happened during the backups")
	}
	for _, id := range ids {
		out := filepath.Join(t.TempDir(), "out")
		must(t, os.Mkdir(out, 0o700))
		if _, err := r.Restore(ctx, id, map[string]string{"v": out}, nil); err != nil {
			t.Fatalf("Restore %s: %v", id, err)
		}
		filepath.WalkDir(out, func(p string, de os.DirEntry, err error) error {
			must(t, err)
			if de.Type().IsRegular() {
				if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("HOST-CANARY")) {
					t.Errorf("snapshot %s holds the host's canary at %s", id, p)
				}
			}
			return nil
		})
	}
}

// A FIFO is never opened (it would block), and neither is a device node.
func TestSpecialsNeverOpened(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	r, _ := openTestRepo(t, ctx)
	vol := t.TempDir()
	must(t, unix.Mkfifo(filepath.Join(vol, "fifo"), 0o600))
	// A device whose open would fail loudly if tried: a block device with no driver.
	must(t, unix.Mknod(filepath.Join(vol, "blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(250, 250))))
	snap, err := r.Backup(ctx, "p", Meta{}, map[string]string{"v": vol}, nil)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if len(snap.Special) != 2 || snap.Special[0].Kind != "block" || snap.Special[0].Rdev != unix.Mkdev(250, 250) {
		t.Errorf("special = %+v", snap.Special)
	}
}

// Entries swapped at the worst moment (a hook runs just before the backup opens an
// entry): the backup either stores what the volume held or fails with ErrAborted, and
// the host's canary, under the same names as the volume's files, is never stored.
func TestSwapAtOpen(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	r, _ := openTestRepo(t, ctx)
	base := t.TempDir()
	host := filepath.Join(base, "host")
	names := []string{"f0", "f1", "f2", "sub/inner"}
	for _, n := range names {
		p := filepath.Join(host, n)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte("HOST-CANARY-7f3a"), 0o644))
	}
	for _, tc := range []struct {
		name    string
		op, at  string
		swap    func(vol string)
		aborted bool
	}{
		{"dir swapped for a symlink before it is opened", "dir", "d", func(vol string) {
			must(t, os.Rename(filepath.Join(vol, "d"), filepath.Join(vol, "d.real")))
			must(t, os.Symlink(host, filepath.Join(vol, "d")))
		}, true},
		{"dir swapped for a symlink while its files are read", "file", "d/f0", func(vol string) {
			must(t, os.Rename(filepath.Join(vol, "d"), filepath.Join(vol, "d.real")))
			must(t, os.Symlink(host, filepath.Join(vol, "d")))
		}, false},
		{"nested dir swapped for a relative symlink", "dir", "d/sub", func(vol string) {
			must(t, os.Rename(filepath.Join(vol, "d/sub"), filepath.Join(vol, "d/sub.real")))
			must(t, os.Symlink("../../host/sub", filepath.Join(vol, "d/sub")))
		}, true},
		{"file swapped for a symlink to a host file", "file", "d/f1", func(vol string) {
			must(t, os.Remove(filepath.Join(vol, "d/f1")))
			must(t, os.Symlink(filepath.Join(host, "f1"), filepath.Join(vol, "d/f1")))
		}, true},
		{"file swapped for a hard link to a host file", "file", "d/f1", func(vol string) {
			must(t, os.Remove(filepath.Join(vol, "d/f1")))
			must(t, os.Link(filepath.Join(host, "f1"), filepath.Join(vol, "d/f1")))
		}, true},
		{"file swapped for a FIFO (opening it would block)", "file", "d/f2", func(vol string) {
			must(t, os.Remove(filepath.Join(vol, "d/f2")))
			must(t, unix.Mkfifo(filepath.Join(vol, "d/f2"), 0o644))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vol := filepath.Join(t.TempDir(), "vol")
			for _, n := range names {
				writeFile(t, filepath.Join(vol, "d", n), 3000, 5, 0o644, 0, 0)
			}
			var swapped atomic.Bool
			testHook = func(op, rel string) {
				if op == tc.op && rel == tc.at && swapped.CompareAndSwap(false, true) {
					tc.swap(vol)
				}
			}
			defer func() { testHook = nil }()
			snap, err := r.Backup(ctx, "p", Meta{}, map[string]string{"v": vol}, nil)
			testHook = nil
			if !swapped.Load() {
				t.Fatal("the hook never swapped")
			}
			if tc.aborted {
				if !errors.Is(err, errdefs.ErrAborted) || !errors.Is(err, errChanged) {
					t.Fatalf("Backup: %v, want ErrAborted", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Backup: %v", err)
			}
			out := filepath.Join(t.TempDir(), "out")
			must(t, os.Mkdir(out, 0o700))
			if _, err := r.Restore(ctx, snap.ID, map[string]string{"v": out}, nil); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			n := 0
			filepath.WalkDir(out, func(p string, de os.DirEntry, err error) error {
				must(t, err)
				if de.Type().IsRegular() {
					n++
					if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("HOST-CANARY")) {
						t.Errorf("the snapshot holds the host's canary at %s", p)
					}
				}
				return nil
			})
			if n != len(names) {
				t.Errorf("restored %d files, want %d", n, len(names))
			}
		})
	}
}
