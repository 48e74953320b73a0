// Package exetrim lets an idle process give back the pages of its own executable that it
// touched once (while it started) and no longer runs.
package exetrim

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"hearth.dev/services/guestd/internal/procmaps"
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
	// Read as a stream: the whole file is tens of KiB, garbage in an idle process.
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("exetrim: %w", err)
	}
	maps, err := droppable(f, exe)
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("exetrim: read smaps: %w", err)
	}
	var kib int64
	for _, m := range maps {
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
func droppable(smaps io.Reader, exe string) ([]mapping, error) {
	var out []mapping
	var cur *mapping // the mapping whose fields are being read, if it qualifies so far
	var anon int64
	flush := func() {
		if cur != nil && anon == 0 && cur.rss > 0 {
			out = append(out, *cur)
		}
		cur, anon = nil, 0
	}
	exeB := []byte(exe)
	sc := bufio.NewScanner(smaps)
	for sc.Scan() {
		line := sc.Bytes()
		if n, ok := field(line, "Rss:"); ok && cur != nil {
			cur.rss = n
			continue
		}
		if n, ok := field(line, "Anonymous:"); ok && cur != nil {
			anon = n
			continue
		}
		h, ok := procmaps.Parse(line)
		if !ok {
			continue // another field of the mapping
		}
		flush()
		if !bytes.Equal(h.Path, exeB) || h.Writable() || !h.Private() {
			continue
		}
		cur = &mapping{start: h.Start, end: h.End}
	}
	flush()
	return out, sc.Err()
}

// field parses a smaps line "NAME   N kB": its N, and whether the line is NAME's.
func field(line []byte, name string) (int64, bool) {
	rest, ok := bytes.CutPrefix(line, []byte(name))
	if !ok {
		return 0, false
	}
	rest = bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte("kB")))
	n, err := strconv.ParseInt(string(rest), 10, 64)
	return n, err == nil
}
