package exetrim

import (
	"bytes"
	"encoding/binary"
	"os"
	"runtime"
	"slices"
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

// splitSmaps is code split into chunks (advise), one with a private copy (a debugger's
// breakpoint), then read-only data.
const splitSmaps = `00400000-00404000 r-xp 00000000 08:01 42 /sbin/guestd
Rss:                   8 kB
Anonymous:             0 kB
00404000-00408000 r-xp 00004000 08:01 42 /sbin/guestd
Rss:                   0 kB
Anonymous:             0 kB
00408000-0040c000 r-xp 00008000 08:01 42 /sbin/guestd
Rss:                  16 kB
Anonymous:             0 kB
0040c000-00410000 r-xp 0000c000 08:01 42 /sbin/guestd
Rss:                   4 kB
Anonymous:             4 kB
00410000-00414000 r-xp 00010000 08:01 42 /sbin/guestd
Rss:                   0 kB
Anonymous:             0 kB
00414000-00418000 r-xp 00014000 08:01 42 /sbin/guestd
Rss:                   4 kB
Anonymous:             0 kB
00418000-00500000 r--p 00018000 08:01 42 /sbin/guestd
Rss:                  40 kB
Anonymous:             0 kB
`

// TestDroppable: only the executable's read-only private mappings with something resident
// and no private copy; neighbouring chunks of code are one range; a chunk with a private
// copy is left out and splits the range; code and data are not joined.
func TestDroppable(t *testing.T) {
	for _, c := range []struct {
		name, smaps, exe string
		want             []mapping
	}{
		{"whole mappings", sampleSmaps, "/sbin/guestd", []mapping{
			{start: 0x400000, end: 0x800000, rss: 1200, exec: true},
			{start: 0x800000, end: 0xa00000, rss: 300, off: 0x400000},
		}},
		{"a path with spaces", sampleSmaps, "/lib/other with space", []mapping{
			{start: 0xb00000, end: 0xc00000, rss: 100, exec: true},
		}},
		{"split code", splitSmaps, "/sbin/guestd", []mapping{
			{start: 0x400000, end: 0x40c000, rss: 24, exec: true},
			{start: 0x410000, end: 0x418000, rss: 4, exec: true, off: 0x10000},
			{start: 0x418000, end: 0x500000, rss: 40, off: 0x18000},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := droppable(strings.NewReader(c.smaps), c.exe)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("droppable = %+v, want %+v", got, c.want)
			}
		})
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
	if err := fsyncExe(); err != nil {
		t.Fatal(err)
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

// TestDropCodeFault: once Drop has run, a fault in code this process no longer maps maps at
// most a Chunk. The code stays cached; without advise's split, the kernel maps up to 64 KiB
// of it around the page (fault-around).
func TestDropCodeFault(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Drop(); err != nil {
		t.Fatal(err)
	}
	start, end := codeRange(t, exe)
	// The longest run of code pages Drop left unmapped: its first page is read (not run)
	// through /proc/self/mem, a fault like any other in the mapping.
	page := uintptr(os.Getpagesize())
	in := mapped(t, start, end)
	best, bestLen := 0, 0
	for i := 0; i < len(in); {
		j := i
		for j < len(in) && !in[j] {
			j++
		}
		if j-i > bestLen {
			best, bestLen = i, j-i
		}
		i = j + 1
	}
	if bestLen < 32 {
		t.Fatalf("the longest run of code that Drop left unmapped is %d pages: want 32 or more", bestLen)
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	at := start + uintptr(best)*page
	if _, err := mem.ReadAt(make([]byte, 1), int64(at)); err != nil {
		t.Fatal(err)
	}
	var got uintptr
	for _, m := range mapped(t, at, at+uintptr(bestLen)*page) {
		if m {
			got += page
		}
	}
	t.Logf("one fault at the start of %d KiB of unmapped code mapped %d KiB of it", uintptr(bestLen)*page>>10, got>>10)
	if got == 0 || got > Chunk {
		t.Errorf("one fault at the start of %d KiB of unmapped code mapped %d KiB of it: want 1 page to %d KiB", uintptr(bestLen)*page>>10, got>>10, Chunk>>10)
	}
}

// mapped reports, page by page, whether this process maps the pages of [start, end)
// (/proc/self/pagemap's present bit).
func mapped(t *testing.T, start, end uintptr) []bool {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := uintptr(os.Getpagesize())
	buf := make([]byte, (end-start)/page*8)
	if _, err := f.ReadAt(buf, int64(start/page*8)); err != nil {
		t.Fatal(err)
	}
	out := make([]bool, len(buf)/8)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(buf[i*8:])&(1<<63) != 0
	}
	return out
}

// codeRange returns the addresses of the executable's code (its mappings that are
// executable, which Drop splits).
func codeRange(t *testing.T, exe string) (start, end uintptr) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		h, ok := procmaps.Parse(line)
		if !ok || string(h.Path) != exe || !h.Executable() {
			continue
		}
		if start == 0 {
			start = h.Start
		} else if h.Start != end {
			t.Fatalf("the code of %s is not one range in\n%s", exe, b)
		}
		end = h.End
	}
	if start == 0 {
		t.Fatalf("no code mapping of %s in\n%s", exe, b)
	}
	return start, end
}

// fsyncExe writes the executable back, as an installed binary is: pages not yet written
// are never evicted.
func fsyncExe() error {
	fd, err := unix.Open("/proc/self/exe", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsync(fd)
}

// cached returns the KiB of the executable's bytes in r (offsets) that are in the page
// cache.
func cached(t *testing.T, r [2]int64) int64 {
	t.Helper()
	var n int64
	for _, c := range residency(t, r[0], r[1]-r[0]) {
		if c {
			n++
		}
	}
	return n * int64(os.Getpagesize()) >> 10
}

// residency reports, page by page, whether the executable's bytes from off (n bytes) are
// in the page cache: mincore of a new mapping of them, which touches none of its pages.
func residency(t *testing.T, off, n int64) []bool {
	t.Helper()
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), off, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out
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
