package pagemerge

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const sampleMaps = `00400000-00800000 r-xp 00000000 08:01 42 /sbin/guestd
00a00000-00a10000 rw-p 00600000 08:01 42 /sbin/guestd
00a10000-00a20000 rw-p 00000000 00:00 0
00b00000-00b10000 rw-s 00000000 00:05 7 /dev/zero (deleted)
00c00000-00c10000 ---p 00000000 00:00 0
01000000-01021000 rw-p 00000000 00:00 0                                  [heap]
c000000000-c000400000 rw-p 00000000 00:00 0
7ffd0000-7ffd2000 rw-p 00000000 00:00 0                                  [stack]
7fff0000-7fff2000 r-xp 00000000 00:00 0                                  [vdso]
`

// TestWritable: private writable mappings only (data, bss, heaps, anonymous), not the
// stack, not shared or inaccessible ones.
func TestWritable(t *testing.T) {
	got, err := writable(strings.NewReader(sampleMaps))
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]uintptr{{0xa00000, 0xa10000}, {0xa10000, 0xa20000}, {0x1000000, 0x1021000}, {0xc000000000, 0xc000400000}}
	if len(got) != len(want) {
		t.Fatalf("writable = %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("range %d = %x, want %x", i, got[i], want[i])
		}
	}
}

// TestOffer marks this process's own mappings: afterwards the Go heap's mapping carries
// the kernel's "mg" (mergeable) flag in smaps, and the process goes on.
func TestOffer(t *testing.T) {
	keep := make([]byte, 1<<20) // a heap mapping exists
	n, err := Offer()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("Offer marked nothing")
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	marked, writableSeen := 0, 0
	var cur string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fs := strings.Fields(line); len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			cur = fs[1]
			if len(fs) >= 6 && strings.HasPrefix(fs[5], "[") && fs[5] != "[heap]" {
				cur = "" // the stack and the kernel's own
			}
			continue
		}
		if rest, ok := strings.CutPrefix(line, "VmFlags:"); ok && len(cur) == 4 && cur[1] == 'w' && cur[3] == 'p' {
			writableSeen++
			if strings.Contains(" "+rest+" ", " mg ") {
				marked++
			}
		}
	}
	if writableSeen == 0 || marked < writableSeen-2 {
		// New mappings may have appeared since Offer (a thread's stack, the heap growing).
		t.Errorf("%d of %d private writable mappings are mergeable, want all (or all but a couple made since)", marked, writableSeen)
	}
	runtime.KeepAlive(keep)
}

// TestRunning reads the kernel's switch: an offer is made while KSM runs (1), not while
// it is stopped (0) or unmerging (2); a switch that cannot be read counts as running.
func TestRunning(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		want          bool
	}{
		{"running", "1\n", true},
		{"stopped", "0\n", false},
		{"unmerging", "2\n", false},
		{"unreadable", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if tc.content != "" {
				if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			old := ksmRun
			ksmRun = path
			t.Cleanup(func() { ksmRun = old })
			if got := Running(); got != tc.want {
				t.Errorf("Running() with %q = %v, want %v", tc.content, got, tc.want)
			}
		})
	}
}
