// Package pagemerge offers a process's private memory to the kernel's same-page merging
// (KSM): pages whose bytes equal a page of another process that offered them too are kept
// once, copy-on-write, while they stay equal.
//
// Why: guestd runs in every container, and each serving guestd builds the same runtime
// state and the same heap (protobuf descriptors, gRPC's tables, its own tables) at the
// same addresses (a Go heap starts at a fixed address). At a hundred services those
// copies are most of guestd's memory. The kernel merges only what a process offers
// (MADV_MERGEABLE), and only while KSM runs (/sys/kernel/mm/ksm/run, the host's choice).
package pagemerge

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"hearth.dev/services/guestd/internal/procmaps"
)

// ksmRun is the kernel's switch for same-page merging: "1" while it runs.
var ksmRun = "/sys/kernel/mm/ksm/run"

// Running reports whether the kernel merges pages now: only then is an offer worth its
// cost (a read of the process's maps, a madvise per mapping). Unknown (the switch cannot
// be read) counts as running.
func Running() bool {
	v, err := os.ReadFile(ksmRun)
	return err != nil || strings.TrimSpace(string(v)) == "1"
}

// Offer marks every private writable mapping of this process mergeable, and returns how
// many it marked. Mappings made later are not marked: call it again after the process
// grew (marking a marked mapping again is harmless).
func Offer() (int, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("pagemerge: %w", err)
	}
	ranges, err := writable(f)
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("pagemerge: read maps: %w", err)
	}
	n := 0
	for _, r := range ranges {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_MERGEABLE); errno != 0 {
			return n, fmt.Errorf("pagemerge: madvise %#x-%#x: %w", r[0], r[1], errno)
		}
		n++
	}
	return n, nil
}

// writable reads /proc/PID/maps and returns the ranges of the private writable mappings,
// but the stack's and the kernel's own ([vsyscall], [vvar], [vdso]).
func writable(maps io.Reader) ([][2]uintptr, error) {
	var out [][2]uintptr
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		h, ok := procmaps.Parse(sc.Bytes())
		if !ok || !h.Writable() || !h.Private() || h.Kernels() {
			continue
		}
		out = append(out, [2]uintptr{h.Start, h.End})
	}
	return out, sc.Err()
}
