package unixsock

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenModesAndCleanup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "d.sock")
	l, err := Listen(path, Options{UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != DirMode {
		t.Errorf("dir mode %o, want %o", got, DirMode)
	}
	fi, err = os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != SockMode {
		t.Errorf("socket mode %v, want socket %o", fi.Mode(), SockMode)
	}
	if l.Addr().String() != path {
		t.Errorf("Addr %q, want %q", l.Addr(), path)
	}
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
	// A second listener must not take over a live socket.
	if _, err := Listen(path, Options{UID: -1, GID: -1}); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Listen on live socket: %v, want ErrInUse", err)
	}
	l.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("leftovers in %s: %v", dir, ents)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	// A socket file nobody listens on: bind, then close without unlinking.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	l, err := Listen(path, Options{UID: -1, GID: -1})
	if err != nil {
		t.Fatalf("Listen over stale socket: %v", err)
	}
	l.Close()
}

func TestListenRefuses(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"too long", filepath.Join(dir, strings.Repeat("x", 120)+".sock"), "Unix sockets allow 107"},
		{"not a socket", regular, "is not a socket"},
		{"parent is a file", filepath.Join(regular, "x.sock"), "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Listen(tc.path, Options{UID: -1, GID: -1})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Listen(%s): %v, want error containing %q", tc.path, err, tc.want)
			}
		})
	}
	if b, _ := os.ReadFile(regular); string(b) != "keep me" {
		t.Errorf("regular file changed: %q", b)
	}
}
