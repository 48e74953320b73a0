package treecopy

import (
	"bytes"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// entry is what a tree holds at a path, as compared after a copy.
type entry struct {
	mode     fs.FileMode
	uid, gid uint32
	body     string
	link     string
}

func scan(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{mode: fi.Mode(), uid: st.Uid, gid: st.Gid}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.body = string(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			e.link, _ = os.Readlink(p)
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: owners of other users, device nodes")
	}
}

func TestCopyKeepsWhatEachEntryIs(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	src, host := filepath.Join(dir, "vol"), filepath.Join(dir, "host")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "a", "b"), 0o750))
	must(os.MkdirAll(host, 0o700))
	must(os.WriteFile(filepath.Join(host, "secret"), []byte("host secret"), 0o600))
	must(os.WriteFile(filepath.Join(src, "plain"), []byte("hello"), 0o644))
	must(os.WriteFile(filepath.Join(src, "empty"), nil, 0o600))
	must(os.WriteFile(filepath.Join(src, "a", "b", "big"), bytes.Repeat([]byte("x"), 3<<20), 0o640))
	must(os.WriteFile(filepath.Join(src, "setuid"), []byte("#!"), 0o4755))
	must(os.Link(filepath.Join(src, "plain"), filepath.Join(src, "a", "hardlink")))
	must(os.Symlink("../plain", filepath.Join(src, "a", "rel")))
	must(os.Symlink(filepath.Join(host, "secret"), filepath.Join(src, "to-host-file")))
	must(os.Symlink(host, filepath.Join(src, "to-host-dir")))
	must(os.Symlink("/nonexistent", filepath.Join(src, "dangling")))
	must(unix.Mkfifo(filepath.Join(src, "fifo"), 0o620))
	l, err := net.Listen("unix", filepath.Join(src, "sock"))
	must(err)
	defer l.Close()
	must(unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	for _, p := range []string{"", "plain", "a", "a/b/big", "fifo"} {
		must(os.Lchown(filepath.Join(src, p), 100999, 100998))
	}
	must(os.Lchown(filepath.Join(src, "to-host-file"), 100001, 100001))

	dst := filepath.Join(dir, "copy")
	st, err := Copy(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	want, got := scan(t, src), scan(t, dst)
	delete(want, "null") // device nodes are not copied
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("%s not copied", p)
		case g != w:
			t.Errorf("%s: copy is %+v, want %+v", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s in the copy only", p)
		}
	}
	if st.Skipped != 1 || st.Symlinks != 4 || st.Specials != 2 || st.Bytes != 3<<20+5+2 {
		t.Errorf("stats %+v", st)
	}
	// Hard links stay links; the host's file was neither read nor changed.
	var a, b syscall.Stat_t
	must(syscall.Stat(filepath.Join(dst, "plain"), &a))
	must(syscall.Stat(filepath.Join(dst, "a", "hardlink"), &b))
	if a.Ino != b.Ino {
		t.Error("a hard link became two files")
	}
	for _, e := range got {
		if strings.Contains(e.body, "host secret") {
			t.Error("the host's file was copied through a link")
		}
	}
	if _, err := Copy(src, dst); err == nil {
		t.Error("copy over an existing destination")
	}
}

// A directory swapped for a symlink to a host directory while the copy runs: nothing of
// the host directory ever lands in the copy.
func TestCopyWhileDirectoriesAreSwapped(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	src, host := filepath.Join(dir, "vol"), filepath.Join(dir, "host")
	os.MkdirAll(host, 0o700)
	os.WriteFile(filepath.Join(host, "canary"), []byte("host canary"), 0o600)
	for i := 0; i < 50; i++ {
		d := filepath.Join(src, "d", string(rune('a'+i%26))+strings.Repeat("x", i/26))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "f"), []byte("ok"), 0o644)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		real, aside, link := filepath.Join(src, "d"), filepath.Join(src, ".d"), filepath.Join(src, ".l")
		for !stop.Load() {
			os.Rename(real, aside)
			os.Remove(link)
			os.Symlink(host, link)
			os.Rename(link, real)
			os.Remove(real)
			os.Rename(aside, real)
		}
	}()
	for i := 0; i < 30; i++ {
		dst := filepath.Join(dir, "copy", string(rune('a'+i%26))+strings.Repeat("y", i/26))
		os.MkdirAll(filepath.Dir(dst), 0o700)
		if _, err := Copy(src, dst); err != nil {
			t.Logf("copy %d: %v", i, err)
		}
		for p, e := range scan(t, dst) {
			if strings.Contains(e.body, "host canary") {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("copy %d holds the host's file at %s", i, p)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
}
