package idmap

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCache: a mapping's namespace is opened once and handed out as duplicates; the
// least recently used is closed past Max.
func TestCache(t *testing.T) {
	opened := map[Mapping]int{}
	// Each "namespace" is a pipe's read end: once the cache closed it and every
	// duplicate, a write to the other end fails (EPIPE). kept: the write ends.
	var kept []*os.File
	c := &Cache{Max: 2, Open: func(m Mapping) (int, error) {
		opened[m]++
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return -1, err
		}
		w := os.NewFile(uintptr(p[1]), "w")
		t.Cleanup(func() { w.Close() })
		kept = append(kept, w)
		return p[0], nil
	}}
	open := func(w *os.File) bool { _, err := w.Write([]byte{0}); return err == nil }
	get := func(m Mapping) int {
		t.Helper()
		fd, err := c.Get(m)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	getClose := func(m Mapping) {
		t.Helper()
		fd, err := c.Get(m)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
	}
	a, b, x := At(100000), At(165536), At(231072)
	fa1, fa2 := get(a), get(a)
	if opened[a] != 1 || fa1 == fa2 {
		t.Fatalf("two Gets of one mapping: opened %d times, descriptors %d and %d; want one open and two duplicates", opened[a], fa1, fa2)
	}
	getClose(b) // the caller's duplicate of b is closed: only the cache holds b
	get(a)      // a is now the most recently used: b goes first
	get(x)
	if open(kept[1]) || !open(kept[0]) {
		t.Fatalf("past Max: b's namespace open %v, a's %v; want b closed and a kept", open(kept[1]), open(kept[0]))
	}
	getClose(b)
	if opened[b] != 2 {
		t.Fatalf("b opened %d times after its eviction; want 2", opened[b])
	}
	if _, err := (&Cache{Max: 1, Open: func(Mapping) (int, error) { return -1, fmt.Errorf("no") }}).Get(a); err == nil {
		t.Fatal("an Open error was not returned")
	}
}
