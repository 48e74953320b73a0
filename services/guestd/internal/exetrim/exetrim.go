// Package exetrim lets an idle process give back the pages of its own executable that it
// touched once (while it started) and no longer runs.
package exetrim

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"hearth.dev/services/guestd/internal/procmaps"
)

// Drop unmaps, from this process only, the resident pages of its executable's
// read-only mappings (its code and read-only data) that hold no private copy, and then
// gives back to the kernel those of the executable's cached read-only data pages that no
// process maps any more. The pages this process still uses come back on their next touch, a
// page or a Chunk each (advise, at the first Drop). It returns the KiB that were mapped.
//
// Why: a Go binary touches much of its code while it starts (package init, the start
// burst) and little of it afterwards, yet each page it touched stays mapped, and counts in
// its PSS, for its whole life. Unmapping alone is not enough: the kernel maps the cached
// neighbours of each page faulted in again (fault-around, 64 KiB by default, not settable
// per process), so a process that touches a few hundred pages maps megabytes while the
// whole file stays cached. So the read-only data that nobody maps is evicted (a fault there
// then reads and maps the one page: advise), and the code is split into mappings of a
// Chunk, past whose ends the kernel maps nothing.
//
// The code stays cached: the kernel reads ahead for a fault in executable memory whatever
// the advice, so evicted code came back by the megabyte within seconds (a Chunk at a time
// once split), and the next guestd to start (the next container's) then read its start's
// code from disk: 4-5 ms more from init to serving, measured. Cached and mapped by no
// one, it counts in no process's PSS, and the kernel reclaims it under memory pressure
// like any file's cache. Read-only data evicted and needed again is read from disk again,
// once, as after memory pressure.
//
// Only mappings of the executable that are not writable and hold no anonymous (copied)
// page are dropped: MADV_DONTNEED on a private mapping discards copies, so a page a
// loader wrote (relocations) would come back as the file's bytes. Pages with data not yet
// written back (a binary just written) are not evicted; the kernel starts writing them.
func Drop() (int64, error) {
	dropMu.Lock()
	defer dropMu.Unlock()
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
	if !advised {
		for _, m := range maps {
			if errno := advise(m); errno != 0 {
				return 0, fmt.Errorf("exetrim: madvise %#x-%#x: %w", m.start, m.end, errno)
			}
		}
		advised = true
	}
	var kib int64
	for _, m := range maps {
		kib += m.rss
	}
	// Twice: the code that runs between the unmapping and the eviction (this loop, the
	// system calls) faults its pages in again, with their cached neighbours; the second
	// round unmaps and evicts those neighbours, now that the code's own pages are the
	// only ones cached around them.
	for range 2 {
		for _, m := range maps {
			if errno := madvise(m.start, m.end, unix.MADV_DONTNEED); errno != 0 {
				return 0, fmt.Errorf("exetrim: madvise %#x-%#x: %w", m.start, m.end, errno)
			}
		}
		for _, m := range maps {
			if m.exec {
				continue
			}
			if _, _, errno := unix.RawSyscall6(unix.SYS_FADVISE64, uintptr(fd), uintptr(m.off), m.end-m.start, unix.FADV_DONTNEED, 0, 0); errno != 0 {
				return kib, fmt.Errorf("exetrim: evict the executable's unmapped pages: %w", errno)
			}
		}
	}
	return kib, nil
}

// Chunk is the most of the executable's code that one page fault maps (or reads from disk),
// once Drop has advised the code's mapping.
const Chunk = 8 << 10

var (
	dropMu  sync.Mutex
	advised bool // the executable's mappings are advised (advise), once per process
)

// advise makes a fault in mapping m map only the page it needs, or little more. A fault in
// read-only data reads the one page (random access: no read-around) and maps its cached
// neighbours (fault-around), which are then only pages touched since the last Drop. Code
// stays cached, so fault-around alone would map 64 KiB around each page touched: the code's
// mapping is split into mappings of Chunk bytes, by giving neighbouring chunks different
// advice (random access and normal: a mapping is one range of one advice, and the kernel
// merges neighbours of the same), and neither fault-around nor read-ahead cross a mapping's
// end. The kernel keeps ~220 bytes per mapping (its vm_area_struct and a share of a tree
// node), charged to the container: guestd's 4.6 MiB of code becomes ~580 mappings, ~125 KiB.
// Measured with one idle busybox service, the serving guestd's PSS went from 7.1 to 5.7 MiB
// (chunks of 4 KiB: ~0.15 MiB less for twice the mappings; of 16 KiB: ~0.35 MiB more);
// with 100, which share the code's pages anyway, each container's memory cgroup grew by the
// mappings' ~0.13 MiB.
func advise(m mapping) unix.Errno {
	if !m.exec {
		return madvise(m.start, m.end, unix.MADV_RANDOM)
	}
	advice := [2]int{unix.MADV_RANDOM, unix.MADV_NORMAL}
	for i, a := 0, m.start; a < m.end; i, a = i+1, a+Chunk {
		if errno := madvise(a, min(a+Chunk, m.end), advice[i%2]); errno != 0 {
			return errno
		}
	}
	return 0
}

// madvise advises on the addresses [start, end) without the runtime's system call
// bookkeeping, whose code would fault in pages (and their neighbours) between the unmapping
// and the eviction.
func madvise(start, end uintptr, advice int) unix.Errno {
	_, _, errno := unix.RawSyscall(unix.SYS_MADVISE, start, end-start, uintptr(advice))
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

// mapping is a range of droppable mappings: its addresses, its resident KiB, and whether it
// is code.
type mapping struct {
	start, end uintptr
	rss        int64
	exec       bool
	off        uint64
}

// droppable reads smaps and returns the mappings of file exe that are read-only and
// private with no anonymous page, neighbours of the same kind (code, or not) joined into one
// range (Drop splits the code's mapping), and the ranges with something resident.
func droppable(smaps io.Reader, exe string) ([]mapping, error) {
	var out []mapping
	var cur *mapping // the mapping whose fields are being read, if it qualifies so far
	var anon int64
	flush := func() {
		switch {
		case cur == nil || anon != 0:
		case len(out) > 0 && out[len(out)-1].end == cur.start && out[len(out)-1].exec == cur.exec:
			out[len(out)-1].end = cur.end
			out[len(out)-1].rss += cur.rss
		default:
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
		cur = &mapping{start: h.Start, end: h.End, exec: h.Executable(), off: h.Offset}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(out, func(m mapping) bool { return m.rss == 0 }), nil
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
