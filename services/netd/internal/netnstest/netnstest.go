// Package netnstest helps tests run code inside a network namespace they made.
package netnstest

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// InNetns runs f on an OS thread that has entered the network namespace at path; sockets
// f opens stay in that namespace. The thread is never unlocked, so it ends with f's
// goroutine and no other goroutine runs in the namespace.
func InNetns(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
