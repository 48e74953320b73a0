package idmap

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == HoldArg {
		os.Exit(Hold())
	}
	os.Exit(m.Run())
}

func TestOpenUsernsHasTheMapping(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to map other users' ids")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m := At(300000)
	fd, err := m.OpenUserns(self)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// The namespace outlives its holder while the descriptor is open.
	nsType, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil || nsType != unix.CLONE_NEWUSER {
		t.Fatalf("NS_GET_NSTYPE = %#x, %v; want a user namespace", nsType, err)
	}
	// The mapping itself shows in idmapped mounts made through it (hostfs's tests).
}

func BenchmarkOpenUserns(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	self, _ := os.Executable()
	for i := 0; i < b.N; i++ {
		fd, err := At(300000).OpenUserns(self)
		if err != nil {
			b.Fatal(err)
		}
		unix.Close(fd)
	}
}
