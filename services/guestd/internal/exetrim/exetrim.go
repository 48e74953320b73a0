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
	"sync"

	"golang.org/x/sys/unix"

	"hearth.dev/services/guestd/internal/procmaps"
)

// Drop unmaps, from this process only, the resident pages of its executable's
// read-only mappings (its code and read-only data) that hold no private copy, and then
// gives back to the kernel those of the executable's cached pages that no process maps
// any more. The pages this process still uses come back on their next touch, one page each
// (the mappings are marked random access, so a fault reads no neighbours ahead); those that
// another process still maps stay cached. It returns the KiB that were mapped.
//
// Why: a Go binary touches much of its code while it starts (package init, the start
// burst) and little of it afterwards, yet each page it touched stays mapped, and counts in
// its PSS, for its whole life. Unmapping alone is not enough: the kernel maps the cached
// neighbours of each page faulted in again (fault-around, 64 KiB by default, not settable
// per process), so a process that touches a few hundred pages maps megabytes while the
// whole file stays cached. Evicting what nobody maps leaves only touched pages cached. A page
// evicted and needed again later is read from disk again, once, as after memory pressure.
// guestd is idle most of its life in every container.
//
// Only mappings of the executable that are not writable and hold no anonymous (copied)
// page are dropped: MADV_DONTNEED on a private mapping discards copies, so a page a
// loader wrote (relocations) would come back as the file's bytes. Pages with data not yet
// written back (a binary just written) are not evicted; the kernel starts writing them.
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
	fd, err := exeFD()
	if err != nil {
		return 0, err
	}
	var kib int64
	for _, m := range maps {
		kib += m.rss
		if errno := madvise(m, unix.MADV_RANDOM); errno != 0 {
			return 0, fmt.Errorf("exetrim: madvise random %#x-%#x: %w", m.start, m.end, errno)
		}
	}
	// Twice: the code that runs between the unmapping and the eviction (this loop, the
	// system calls) faults its pages in again, with their cached neighbours; the second
	// round unmaps and evicts those neighbours, now that the code's own pages are the
	// only ones cached around them.
	for range 2 {
		for _, m := range maps {
			if errno := madvise(m, unix.MADV_DONTNEED); errno != 0 {
				return 0, fmt.Errorf("exetrim: madvise %#x-%#x: %w", m.start, m.end, errno)
			}
		}
		if _, _, errno := unix.RawSyscall6(unix.SYS_FADVISE64, uintptr(fd), 0, 0, unix.FADV_DONTNEED, 0, 0); errno != 0 {
			return kib, fmt.Errorf("exetrim: evict the executable's unmapped pages: %w", errno)
		}
	}
	return kib, nil
}

// madvise advises on mapping m without the runtime's system call bookkeeping, whose code
// would fault in pages (and their neighbours) between the unmapping and the eviction.
func madvise(m mapping, advice int) unix.Errno {
	_, _, errno := unix.RawSyscall(unix.SYS_MADVISE, m.start, m.end-m.start, uintptr(advice))
	return errno
}

// exeFile is the executable, open for Drop's evictions: opened once, at the first Drop.
var exeFile struct {
	once sync.Once
	fd   int
	err  error
}

// exeFD returns a descriptor of the executable (kept open: a path lookup per trim is
// garbage and a walk of /proc).
func exeFD() (int, error) {
	exeFile.once.Do(func() {
		exeFile.fd, exeFile.err = unix.Open("/proc/self/exe", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if exeFile.err != nil {
			exeFile.err = fmt.Errorf("exetrim: open the executable: %w", exeFile.err)
		}
	})
	return exeFile.fd, exeFile.err
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
