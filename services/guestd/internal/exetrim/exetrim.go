// Package exetrim lets an idle process give back the pages of its own executable that it
// touched once (while it started) and no longer runs.
package exetrim

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Drop unmaps, from this process only, the resident pages of its executable's
// read-only mappings (its code and read-only data) that hold no private copy; the
// pages stay in the page cache, and those the process still uses come back on their next
// touch, each a minor fault. It returns the KiB that were mapped.
//
// Why: a Go binary touches much of its code while it starts (package init, the start
// burst) and little of it afterwards, yet each page it touched, and the neighbours the
// kernel maps around each fault, stay mapped, and count in its PSS, for its whole life.
// guestd is idle most of its life in every container.
//
// Only mappings of the executable that are not writable and hold no anonymous (copied)
// page are dropped: MADV_DONTNEED on a private mapping discards copies, so a page a
// loader wrote (relocations) would come back as the file's bytes.
func Drop() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("exetrim: %w", err)
	}
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("exetrim: %w", err)
	}
	var kib int64
	for _, m := range droppable(data, exe) {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return kib, fmt.Errorf("exetrim: madvise %#x-%#x: %w", m.start, m.end, errno)
		}
		kib += m.rss
	}
	return kib, nil
}

// mapping is one droppable mapping: its address range and its resident KiB.
type mapping struct {
	start, end uintptr
	rss        int64
}

// droppable reads smaps and returns the mappings of file exe that are read-only and
// private with no anonymous page and something resident.
func droppable(smaps []byte, exe string) []mapping {
	var out []mapping
	var cur *mapping // the mapping whose fields are being read, if it qualifies so far
	var anon int64
	flush := func() {
		if cur != nil && anon == 0 && cur.rss > 0 {
			out = append(out, *cur)
		}
		cur, anon = nil, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") { // a mapping's header: range perms offset dev inode [path]
			flush()
			if len(f) < 6 || strings.Join(f[5:], " ") != exe || len(f[1]) != 4 || f[1][1] != '-' || f[1][3] != 'p' {
				continue
			}
			lo, hi, ok := strings.Cut(f[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if !ok || err1 != nil || err2 != nil || end <= start {
				continue
			}
			cur = &mapping{start: uintptr(start), end: uintptr(end)}
			continue
		}
		if cur == nil || len(f) < 2 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			cur.rss = n
		case "Anonymous:":
			anon = n
		}
	}
	flush()
	return out
}
