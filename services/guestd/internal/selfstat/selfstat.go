// Package selfstat counts what the running process holds: goroutines, open descriptors
// and child processes. guestd reports the first two to the host; tests use all three to
// show that work leaves nothing behind.
package selfstat

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
)

// Goroutines is the number of goroutines that exist now.
func Goroutines() int { return runtime.NumGoroutine() }

// OpenFDs is the number of descriptors the process has open (not counting the one this
// call opens to list them).
func OpenFDs() (int, error) {
	names, err := list("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	return len(names) - 1, nil
}

func list(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// Children is the number of the process's child processes, zombies included.
func Children() (int, error) {
	names, err := list("/proc")
	if err != nil {
		return 0, err
	}
	me := strconv.Itoa(os.Getpid())
	n := 0
	for _, name := range names {
		if _, err := strconv.Atoi(name); err != nil {
			continue
		}
		if ppid(name) == me {
			n++
		}
	}
	return n, nil
}

// ppid reads the parent pid from /proc/<pid>/stat ("" when the process is gone).
func ppid(pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return ""
	}
	// The command name, in parentheses, may hold spaces: the fields after it are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return ""
	}
	return string(f[1]) // state, then ppid
}
