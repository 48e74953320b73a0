package exetrim

import (
	"bytes"
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"hearth.dev/services/guestd/internal/procmaps"
)

const sampleSmaps = `00400000-00800000 r-xp 00000000 08:01 42 /sbin/guestd
Rss:                1200 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
00800000-00a00000 r--p 00400000 08:01 42 /sbin/guestd
Rss:                 300 kB
Anonymous:             0 kB
00a00000-00a10000 rw-p 00600000 08:01 42 /sbin/guestd
Rss:                  64 kB
Anonymous:            64 kB
00a10000-00a20000 r--p 00610000 08:01 42 /sbin/guestd
Rss:                  16 kB
Anonymous:             8 kB
00a20000-00a30000 r--p 00620000 08:01 42 /sbin/guestd
Rss:                   0 kB
Anonymous:             0 kB
00b00000-00c00000 r-xp 00000000 08:01 43 /lib/other with space
Rss:                 100 kB
Anonymous:             0 kB
7fff0000-7fff2000 r-xp 00000000 00:00 0 [vdso]
Rss:                   8 kB
Anonymous:             0 kB
`

// TestDroppable: only the executable's read-only private mappings with something resident
// and no private copy.
func TestDroppable(t *testing.T) {
	got, err := droppable(strings.NewReader(sampleSmaps), "/sbin/guestd")
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{{0x400000, 0x800000, 1200}, {0x800000, 0xa00000, 300}}
	if len(got) != len(want) {
		t.Fatalf("droppable = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got, _ := droppable(strings.NewReader(sampleSmaps), "/lib/other with space"); len(got) != 1 || got[0].rss != 100 {
		t.Errorf("a path with spaces: %+v", got)
	}
}

// TestDrop drops the test binary's own code pages: its resident text shrinks to what
// runs afterwards, and the process goes on.
func TestDrop(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	resident := func() int64 {
		f, err := os.Open("/proc/self/smaps")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		maps, err := droppable(f, exe)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, m := range maps {
			n += m.rss
		}
		return n
	}
	// Written back, as an installed binary is: pages not yet written are never evicted.
	if fd, err := unix.Open("/proc/self/exe", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		t.Fatal(err)
	} else {
		err := unix.Fsync(fd)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
	}
	rodata := rodataRange(t, exe)
	cachedBefore := cached(t, rodata)
	before := resident()
	if before < 256 {
		t.Fatalf("the test binary has %d KiB of text resident: too little to test with", before)
	}
	dropped, err := Drop()
	if err != nil {
		t.Fatal(err)
	}
	cachedAfter := cached(t, rodata)
	after := resident()
	t.Logf("resident text: %d KiB before, %d KiB dropped, %d KiB after; its read-only data cached: %d KiB before, %d KiB after",
		before, dropped, after, cachedBefore, cachedAfter)
	if dropped < before/2 || after > before/2 {
		t.Errorf("resident text %d KiB before, %d after (%d reported dropped): want at most half left", before, after, dropped)
	}
	// Read-only data, not code: the kernel evicts whole folios, and the code that runs
	// between the unmapping and the eviction keeps its folios mapped.
	if cachedAfter > cachedBefore/4 {
		t.Errorf("the executable's read-only data has %d KiB cached after Drop (%d before): want at most a quarter left", cachedAfter, cachedBefore)
	}
}

// cached returns the KiB of the executable's bytes in r (offsets) that are in the page
// cache (mincore of a new mapping of them, which touches none of its pages).
func cached(t *testing.T, r [2]int64) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), r[0], int(r[1]-r[0]), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	var n int64
	for _, v := range vec {
		n += int64(v & 1)
	}
	return n * int64(os.Getpagesize()) >> 10
}

// rodataRange returns the file offsets of the executable's read-only data mapping.
func rodataRange(t *testing.T, exe string) [2]int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		h, ok := procmaps.Parse(line)
		if ok && string(h.Path) == exe && string(h.Perms[:]) == "r--p" {
			return [2]int64{int64(h.Offset), int64(h.Offset) + int64(h.End-h.Start)}
		}
	}
	t.Fatalf("no read-only data mapping of %s in\n%s", exe, b)
	return [2]int64{}
}

// TestDropGarbage: Drop runs in an idle process right after a collection, so what it
// allocates stays until the next one; smaps is read as a stream.
func TestDropGarbage(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := Drop(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	smaps, _ := os.ReadFile("/proc/self/smaps")
	got := after.TotalAlloc - before.TotalAlloc
	t.Logf("Drop allocated %d bytes; smaps is %d bytes", got, len(smaps))
	if got > 16<<10 {
		t.Errorf("Drop allocated %d bytes (smaps is %d): want at most 16 KiB", got, len(smaps))
	}
}
