package exetrim

import (
	"os"
	"runtime"
	"strings"
	"testing"
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
	before := resident()
	if before < 256 {
		t.Fatalf("the test binary has %d KiB of text resident: too little to test with", before)
	}
	dropped, err := Drop()
	if err != nil {
		t.Fatal(err)
	}
	after := resident()
	t.Logf("resident text: %d KiB before, %d KiB dropped, %d KiB after", before, dropped, after)
	if dropped < before/2 || after > before/2 {
		t.Errorf("resident text %d KiB before, %d after (%d reported dropped): want at most half left", before, after, dropped)
	}
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
