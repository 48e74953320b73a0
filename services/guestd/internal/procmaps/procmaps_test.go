package procmaps

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		line       string
		ok         bool
		start, end uintptr
		off        uint64
		perms      string
		path       string
		kernels    bool
	}{
		{"00400000-00800000 r-xp 00000000 08:01 42 /sbin/guestd", true, 0x400000, 0x800000, 0, "r-xp", "/sbin/guestd", false},
		{"c000000000-c000400000 rw-p 00000000 00:00 0", true, 0xc000000000, 0xc000400000, 0, "rw-p", "", false},
		{"01000000-01021000 rw-p 00000000 00:00 0          [heap]", true, 0x1000000, 0x1021000, 0, "rw-p", "[heap]", false},
		{"7ffd0000-7ffd2000 rw-p 00000000 00:00 0          [stack]", true, 0x7ffd0000, 0x7ffd2000, 0, "rw-p", "[stack]", true},
		{"00b00000-00c00000 r-xs 00000000 08:01 43 /lib/other with space", true, 0xb00000, 0xc00000, 0, "r-xs", "/lib/other with space", false},
		{"00da9000-00e17000 r--p 009a9000 fe:00 9980287 /sbin/guestd", true, 0xda9000, 0xe17000, 0x9a9000, "r--p", "/sbin/guestd", false},
		{"00400000-00800000 r-xp 0000zz00 08:01 42 /x", false, 0, 0, 0, "", "", false}, // a bad offset
		{"Rss:                1200 kB", false, 0, 0, 0, "", "", false},
		{"VmFlags: rd ex mr mw me", false, 0, 0, 0, "", "", false},
		{"00800000-00400000 r-xp 00000000 08:01 42 /x", false, 0, 0, 0, "", "", false}, // end before start
		{"zz-00400000 r-xp 00000000 08:01 42 /x", false, 0, 0, 0, "", "", false},
		{"00400000-00800000 r-x 00000000 08:01 42 /x", false, 0, 0, 0, "", "", false},
		{"00400000-00800000 r-xp 00000000", false, 0, 0, 0, "", "", false},
		{"", false, 0, 0, 0, "", "", false},
	} {
		h, ok := Parse([]byte(tc.line))
		if ok != tc.ok {
			t.Errorf("Parse(%q) ok = %v, want %v", tc.line, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if h.Start != tc.start || h.End != tc.end || h.Offset != tc.off || string(h.Perms[:]) != tc.perms || string(h.Path) != tc.path || h.Kernels() != tc.kernels {
			t.Errorf("Parse(%q) = %x-%x %s at %x %q kernel's %v; want %x-%x %s at %x %q %v", tc.line, h.Start, h.End, h.Perms[:], h.Offset, h.Path, h.Kernels(), tc.start, tc.end, tc.perms, tc.off, tc.path, tc.kernels)
		}
	}
}

// TestParseAllocates nothing: exetrim and pagemerge parse their own maps when idle.
func TestParseAllocatesNothing(t *testing.T) {
	line := []byte("00400000-00800000 r-xp 00000000 08:01 42 /sbin/guestd")
	field := []byte("Rss:                1200 kB")
	if n := testing.AllocsPerRun(100, func() { Parse(line); Parse(field) }); n != 0 {
		t.Errorf("Parse allocates %v times per call", n)
	}
}
