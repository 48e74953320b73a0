package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// sockIO reads and writes a TCP connection with raw system calls, waiting (for
// readiness, under the connection's deadlines) through the runtime's poller as
// net.Conn does. The calls never block (the socket is non-blocking), but on loopback a
// write does the receiver's TCP work too and takes ~10-30 µs: as ordinary system calls,
// the runtime's monitor would take the processor away from most of them and start
// another thread to run the other goroutines (a hand-off, a futex wake-up, and the
// monitor kept ticking every 20 µs). As raw ones, the goroutine keeps its processor.
type sockIO struct {
	rc      syscall.RawConn
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool

	rbuf []byte
	rn   int
	rerr syscall.Errno
	wbuf []byte
	wn   int
	werr syscall.Errno
}

// newSockIO returns nil if c is not a TCP connection (or another with a descriptor).
func newSockIO(c net.Conn) *sockIO {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &sockIO{rc: rc}
	s.readFn, s.writeFn = s.read, s.write
	return s
}

func (s *sockIO) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)))
		switch e {
		case 0:
			s.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until readable
		}
		s.rerr = e
		return true
	}
}

func (s *sockIO) write(fd uintptr) bool {
	for s.wn < len(s.wbuf) {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&s.wbuf[s.wn])), uintptr(len(s.wbuf)-s.wn))
		switch e {
		case 0:
			s.wn += int(n)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until writable
		}
		s.werr = e
		return true
	}
	return true
}

// Read is io.Reader's; one system call when data is there.
func (s *sockIO) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.rbuf, s.rn, s.rerr = b, 0, 0
	err := s.rc.Read(s.readFn)
	s.rbuf = nil
	switch {
	case err != nil:
		return 0, err // a deadline, or closed
	case s.rerr != 0:
		return 0, os.NewSyscallError("read", s.rerr)
	case s.rn == 0:
		return 0, io.EOF
	}
	return s.rn, nil
}

// Write is io.Writer's: all of b, in as few system calls as the socket takes.
func (s *sockIO) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.wbuf, s.wn, s.werr = b, 0, 0
	err := s.rc.Write(s.writeFn)
	s.wbuf = nil
	switch {
	case err != nil:
		return s.wn, err
	case s.werr != 0:
		return s.wn, os.NewSyscallError("write", s.werr)
	}
	return s.wn, nil
}
