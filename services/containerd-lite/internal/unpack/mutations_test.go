package unpack

import (
	"archive/tar"
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func fds() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"="+l)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// TestRandomMutations applies thousands of randomly corrupted layers: whatever each does,
// no descriptor leaks and nothing appears outside the root. (go test -fuzz FuzzApply does
// the same with coverage guidance; on some machines its engine stalls, so this runs always.)
func TestRandomMutations(t *testing.T) {
	needRoot(t)
	seeds := [][]byte{
		layer(t, entry{name: "a/b", typ: tar.TypeReg, body: "x"}),
		layer(t, entry{name: "l", typ: tar.TypeSymlink, link: "../o"}, entry{name: "l/x", typ: tar.TypeReg, body: "x"}),
		layer(t, entry{name: "s", typ: tar.TypeSymlink, link: "/"}, entry{name: "s/o/x", typ: tar.TypeReg, body: "x"}),
		layer(t, entry{name: "h", typ: tar.TypeLink, link: "../o/secret"}),
		layer(t, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/.wh..wh..opq", typ: tar.TypeReg}, entry{name: ".wh.d", typ: tar.TypeReg}),
	}
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 3000; i++ {
		data := append([]byte(nil), seeds[r.Intn(len(seeds))]...)
		for k := 0; k < 1+r.Intn(4); k++ {
			data[r.Intn(len(data))] = byte(r.Intn(256))
		}
		dir := scratch(t)
		root, outside := filepath.Join(dir, "root"), filepath.Join(dir, "o")
		os.Mkdir(root, 0o755)
		os.Mkdir(outside, 0o755)
		before := fds()
		u, _ := New(root, Limits{MaxBytes: 1 << 20, MaxEntries: 1000})
		err := u.Apply(bytes.NewReader(data))
		u.Close()
		after := fds()
		if before != after {
			t.Fatalf("iteration %d (err %v): descriptors changed\nbefore %s\nafter  %s\ninput %q", i, err, before, after, data)
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("iteration %d wrote outside the root: %v\ninput %q", i, ents, data)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 2 {
			t.Fatalf("iteration %d wrote beside the root: %v\ninput %q", i, ents, data)
		}
		os.RemoveAll(dir)
	}
}
