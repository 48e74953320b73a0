package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const testPassword = "correct horse battery staple"

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: volumes hold files of other owners, FIFOs and device nodes")
	}
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// openTestRepo opens (creating) a repository in a new temporary directory.
func openTestRepo(t testing.TB, ctx context.Context) (*Repo, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := Open(ctx, dir, testPassword, Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r, dir
}

// node is what the tests compare of one entry of a tree.
type node struct {
	Type   string // "dir", "file", "symlink", "fifo", "socket", "char", "block"
	Mode   uint32 // permission, setuid, setgid, sticky
	UID    uint32
	GID    uint32
	Size   int64
	Sum    string // sha256 of a file's content
	Target string // a symlink's target
	MTime  int64  // nanoseconds; not compared for symlinks' parents' sake (see compare)
	Group  string // for files with several links: the first path of the group
}

func (n node) String() string {
	return fmt.Sprintf("%s mode=%#o owner=%d:%d size=%d sum=%.12s target=%q mtime=%d group=%q",
		n.Type, n.Mode, n.UID, n.GID, n.Size, n.Sum, n.Target, n.MTime, n.Group)
}

// scan reads a tree (by path: only the tests' own trees) into path -> node.
func scan(t testing.TB, root string) map[string]node {
	t.Helper()
	out := map[string]node{}
	byIno := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			rel = ""
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n := node{Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, MTime: st.Mtim.Nano()}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			n.Type = "dir"
		case unix.S_IFREG:
			n.Type, n.Size = "file", st.Size
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			n.Sum = hex.EncodeToString(sum[:])
			if st.Nlink > 1 {
				byIno[st.Ino] = append(byIno[st.Ino], rel)
			}
		case unix.S_IFLNK:
			n.Type = "symlink"
			n.Mode = 0 // a symlink's mode means nothing on Linux
			n.Target, err = os.Readlink(p)
			if err != nil {
				return err
			}
		case unix.S_IFIFO:
			n.Type = "fifo"
		case unix.S_IFSOCK:
			n.Type = "socket"
		case unix.S_IFCHR:
			n.Type = "char"
		case unix.S_IFBLK:
			n.Type = "block"
		}
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", root, err)
	}
	for _, paths := range byIno {
		if len(paths) < 2 {
			continue
		}
		sort.Strings(paths)
		for _, p := range paths {
			n := out[p]
			n.Group = paths[0]
			out[p] = n
		}
	}
	return out
}

// compare reports every difference between two scans (want: the source, got: restored).
func compare(t testing.TB, want, got map[string]node) {
	t.Helper()
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	bad := 0
	for _, p := range paths {
		w, wok := want[p]
		g, gok := got[p]
		switch {
		case !wok:
			t.Errorf("restored %q, not in the source: %v", p, g)
		case !gok:
			t.Errorf("%q (%v) missing from the restored tree", p, w)
		case w != g:
			t.Errorf("%q differs:\n  source   %v\n  restored %v", p, w, g)
		default:
			continue
		}
		if bad++; bad > 20 {
			t.Fatal("too many differences")
		}
	}
}

// writeFile writes a file of size bytes from a seeded generator (half of them
// compressible text), with mode and owner.
func writeFile(t testing.TB, p string, size int, seed uint64, mode os.FileMode, uid, gid int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, io.LimitReader(newGen(seed), int64(size))); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// gen yields deterministic data: for an even seed compressible text, for an odd one
// random bytes.
type gen struct {
	r    *rand.ChaCha8
	text bool
	buf  []byte
}

func newGen(seed uint64) *gen {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return &gen{r: rand.NewChaCha8(s), text: seed%2 == 0}
}

var words = strings.Fields("the quick brown fox jumps over the lazy dog while postgres writes " +
	"its write ahead log and the app serves pages to people at home 0 1 2 3 4 5 6 7 8 9")

func (g *gen) Read(p []byte) (int, error) {
	if !g.text {
		return g.r.Read(p)
	}
	n := 0
	for n < len(p) {
		if len(g.buf) == 0 {
			w := words[g.r.Uint64()%uint64(len(words))]
			g.buf = append(g.buf[:0], w...)
			g.buf = append(g.buf, ' ')
			if g.r.Uint64()%12 == 0 {
				g.buf[len(g.buf)-1] = '\n'
			}
		}
		c := copy(p[n:], g.buf)
		g.buf = g.buf[c:]
		n += c
	}
	return n, nil
}

// makeSocket leaves a socket file at p (its listener closed; the file stays).
func makeSocket(t testing.TB, p string) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// dirSize is the total size of the files below dir (the repository's bytes on disk,
// as files).
func dirSize(t testing.TB, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// repoFiles lists the repository's files (relative paths) whose name starts with prefix
// (after the shard directories), largest first.
func repoFiles(t testing.TB, dir, prefix string) []string {
	t.Helper()
	type f struct {
		rel  string
		size int64
	}
	var fs_ []f
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(p, ".f") {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, prefix) {
			info, _ := d.Info()
			fs_ = append(fs_, f{rel, info.Size()})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(fs_, func(i, j int) bool { return fs_[i].size > fs_[j].size })
	out := make([]string, len(fs_))
	for i, x := range fs_ {
		out[i] = x.rel
	}
	return out
}
