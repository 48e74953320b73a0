package peercred

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestReadOwnCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan Cred, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		cred, err := Read(c)
		if err != nil {
			t.Error(err)
		}
		done <- cred
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := <-done
	if got.PID != int32(os.Getpid()) || got.UID != uint32(os.Getuid()) || got.GID != uint32(os.Getgid()) {
		t.Errorf("Read = %+v, want pid %d uid %d gid %d", got, os.Getpid(), os.Getuid(), os.Getgid())
	}
	groups, _ := os.Getgroups()
	for _, g := range groups {
		if !got.InGroup(uint32(g)) {
			t.Errorf("supplementary group %d missing from %v", g, got.Groups)
		}
	}
}

func TestReadRefusesTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
			defer c.Close()
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := Read(c); err == nil {
		t.Fatal("Read on TCP succeeded")
	}
}

func TestPolicies(t *testing.T) {
	root := Cred{PID: 1, UID: 0, GID: 0}
	member := Cred{PID: 2, UID: 1000, GID: 1000, Groups: []uint32{1000, 42}}
	primary := Cred{PID: 3, UID: 1001, GID: 42}
	stranger := Cred{PID: 4, UID: 1002, GID: 1002, Groups: []uint32{7}}
	guest := Cred{PID: 5, UID: 100000, GID: 100000}
	for _, tc := range []struct {
		name   string
		policy Policy
		cred   Cred
		allow  bool
	}{
		{"root, no group", RootOrGroup(-1), root, true},
		{"member, no group", RootOrGroup(-1), member, false},
		{"root, group", RootOrGroup(42), root, true},
		{"supplementary member", RootOrGroup(42), member, true},
		{"primary member", RootOrGroup(42), primary, true},
		{"stranger", RootOrGroup(42), stranger, false},
		{"container root on a daemon socket", RootOrGroup(42), guest, false},
		{"container root on its host socket", UIDs(0, 100000), guest, true},
		{"stranger on a host socket", UIDs(0, 100000), stranger, false},
		{"any: second allows", Any(UIDs(1), RootOrGroup(-1)), root, true},
		{"any: none allows", Any(UIDs(1), UIDs(2)), stranger, false},
		{"any: empty", Any(), root, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.policy(tc.cred)
			if tc.allow && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.allow && !errors.Is(err, ErrDenied) {
				t.Fatalf("got %v, want ErrDenied", err)
			}
		})
	}
}
