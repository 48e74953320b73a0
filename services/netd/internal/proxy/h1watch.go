package proxy

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// A client that goes away while its backend thinks ends the exchange (the backend
// connection is closed). net/http finds out with a read in the background during each
// request, a goroutine and a system call per request; here a request that is answered
// within watchAfter costs only a timer's reset, and only then does a goroutine wait for
// the connection to become readable: an end of stream (or a reset) is the client
// gone; bytes (a pipelined request) end the watch.
const watchAfter = 20 * time.Millisecond

// h1watch is an h1conn's watch for its client going away.
type h1watch struct {
	timer *time.Timer // runs start
	on    bool        // between watch and unwatch (the connection's goroutine's)

	mu       sync.Mutex
	h        *h1conn
	bc       *backendConn // the exchange's, while armed
	armed    bool
	running  bool // a goroutine waits on the connection
	stopping bool // unwatch waits for it on stopped
	stopped  chan struct{}
	gone     bool // the client went away (this exchange)
}

// watch is downstream's: from now until unwatch, the client going away abandons bc.
// Requests with a body streamed by another goroutine are not watched (that goroutine
// reads the connection, and finds out).
func (h *h1conn) watch(bc *backendConn) {
	w := &h.cw
	if w.on = !h.out.hasBody || h.out.inline; !w.on {
		return
	}
	w.mu.Lock()
	w.h, w.bc, w.armed, w.gone = h, bc, true, false
	w.mu.Unlock()
	if w.timer == nil {
		w.stopped = make(chan struct{}, 1)
		w.timer = time.AfterFunc(watchAfter, w.start)
	} else {
		w.timer.Reset(watchAfter)
	}
}

// unwatch is downstream's: it ends the watch and reports whether the client went away.
func (h *h1conn) unwatch() bool {
	w := &h.cw
	if !w.on {
		return false
	}
	w.on = false
	w.timer.Stop()
	w.mu.Lock()
	w.armed, w.bc = false, nil
	running := w.running
	w.stopping = running
	gone := w.gone
	w.mu.Unlock()
	if running {
		// Wake it: a read deadline in the past ends its wait. The next read sets
		// its own deadline.
		_ = h.c.Conn.SetReadDeadline(time.Unix(1, 0))
		<-w.stopped
		w.mu.Lock()
		gone = w.gone
		w.mu.Unlock()
	}
	return gone
}

// start runs when an exchange has lasted watchAfter: it waits for the connection to
// be readable (or unwatch).
func (w *h1watch) start() {
	w.mu.Lock()
	if !w.armed || w.running {
		w.mu.Unlock()
		return
	}
	w.running = true
	h := w.h
	// The request's header deadline must not end the watch.
	_ = h.c.Conn.SetReadDeadline(time.Time{})
	w.mu.Unlock()

	gone := clientGone(h)

	w.mu.Lock()
	w.running = false
	if gone && w.armed {
		w.gone = true
		w.bc.abandon()
	}
	if w.stopping {
		w.stopping = false
		w.stopped <- struct{}{}
	}
	w.mu.Unlock()
}

// clientGone waits until the connection is readable and reports whether the client
// closed or reset it (or the proxy closed it); false: a request came (pipelined), or
// the wait was ended by a read deadline. The wait is on the socket; only when bytes
// come are they read, through TLS (a close_notify is an encrypted record too), into
// the connection's reader, where the next request is read from. The connection's
// goroutine neither reads it nor flushes its writer through it meanwhile.
func clientGone(h *h1conn) bool {
	sc, ok := h.c.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	eof := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
			return false // wait for the descriptor
		case rerr != nil || n == 0:
			eof = true
		}
		return true
	})
	switch {
	case err != nil:
		return !errors.Is(err, os.ErrDeadlineExceeded)
	case eof:
		return true
	}
	_, err = h.br.Peek(1)
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}
