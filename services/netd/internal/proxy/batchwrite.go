package proxy

import (
	"io"
	"net"
	"runtime"
	"sync"
	"time"
)

// batchWriter writes an HTTP/2 connection's bytes from a goroutine of its own, so that
// the TLS records written while it writes go out together, in one system call.
// net/http's HTTP/2 server flushes a response's HEADERS frame on its own, and then its
// DATA (the handler waits for the first to be written before it writes the second),
// and each stream's answer on its own: written directly, that is two or three writes
// per response, each of which costs the receiver's TCP work on loopback. Write only
// queues the bytes (up to maxPending, then it waits); the writer yields once before it
// takes what is queued, letting the goroutines it woke add theirs.
type batchWriter struct {
	w io.Writer

	mu      sync.Mutex
	cond    sync.Cond // signalled when pending shrinks or the writer stops
	pending []byte
	busy    bool  // the writer has been kicked and has not seen pending empty since
	err     error // sticky: the writer failed, or the connection was closed
	stopped bool  // kick is closed: the writer ends
	kick    chan struct{}
}

const (
	// maxPending bounds what a connection holds that the client has not taken.
	maxPending = 256 << 10
	// keepBuffer: a buffer grown beyond it (by a burst) is dropped once written.
	keepBuffer = 64 << 10
	// closeFlushTime bounds how long closing a connection waits for its queued bytes
	// (its GOAWAY and close_notify) to go out.
	closeFlushTime = time.Second
)

func newBatchWriter(w io.Writer) *batchWriter {
	b := &batchWriter{w: w, kick: make(chan struct{}, 1)}
	b.cond.L = &b.mu
	go b.loop()
	return b
}

// Write queues p.
func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	for b.err == nil && len(b.pending) >= maxPending {
		b.cond.Wait()
	}
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	b.pending = append(b.pending, p...)
	start := !b.busy
	b.busy = true
	b.mu.Unlock()
	if start {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

func (b *batchWriter) loop() {
	var out []byte
	for range b.kick {
		runtime.Gosched()
		for {
			b.mu.Lock()
			if len(b.pending) == 0 || b.err != nil {
				b.busy = false
				b.cond.Broadcast()
				b.mu.Unlock()
				break
			}
			out, b.pending = b.pending, out[:0]
			b.cond.Broadcast()
			b.mu.Unlock()
			_, err := b.w.Write(out)
			if cap(out) > keepBuffer {
				out = nil
			}
			if err != nil {
				b.mu.Lock()
				if b.err == nil {
					b.err = err
				}
				b.pending = nil
				b.mu.Unlock()
			}
		}
	}
}

// close waits for what is queued to be written, until the deadline, then stops the
// writer: Writes fail from then on.
func (b *batchWriter) close(deadline time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.stopped = true
	if b.busy && b.err == nil {
		wake := time.AfterFunc(time.Until(deadline), func() {
			b.mu.Lock()
			b.cond.Broadcast()
			b.mu.Unlock()
		})
		for b.busy && b.err == nil && time.Now().Before(deadline) {
			b.cond.Wait()
		}
		wake.Stop()
	}
	if b.err == nil {
		b.err = net.ErrClosed
	}
	close(b.kick)
	b.cond.Broadcast()
}
