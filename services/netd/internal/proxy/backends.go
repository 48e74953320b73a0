package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// backends pools keep-alive HTTP/1.1 connections to the backends: a stack per address,
// the most recently used on top, each dropped once idle for idleTimeout. A request
// takes a connection and uses it from its own goroutine (no reader or writer goroutine
// per connection, as http.Transport has): one less hand-off each way per request.
type backends struct {
	dialer      net.Dialer
	maxIdle     int
	idleTimeout time.Duration
	// probeAfter: a connection idle this long is checked before it is reused (many
	// servers close idle connections after a few seconds; a request with a body sent
	// on one could not be sent again).
	probeAfter time.Duration

	mu     sync.Mutex
	idle   map[string][]*backendConn
	closed bool
}

type backendConn struct {
	net.Conn
	addr   string
	rd     backendReader // what br reads
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time

	// Kept from one exchange to the next: the response head's buffer, its parse, and
	// the body's reader.
	head []byte
	resp respHead
	body bodyReader
}

// backendReader reads the connection, letting the exchange push out what it has
// written to its client before each read (which may wait).
type backendReader struct {
	c      net.Conn
	io     *sockIO // c's, nil if none
	before downstream
}

func (r *backendReader) Read(b []byte) (int, error) {
	if r.before != nil {
		r.before.beforeBackendRead()
	}
	if r.io != nil {
		return r.io.Read(b)
	}
	return r.c.Read(b)
}

var (
	readerPool sync.Pool // *bufio.Reader of 32 KiB
	writerPool sync.Pool // *bufio.Writer of 8 KiB
)

func newBackends(dialTimeout time.Duration, maxIdle int, idleTimeout time.Duration) *backends {
	return &backends{
		dialer:      net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
		maxIdle:     maxIdle,
		idleTimeout: idleTimeout,
		probeAfter:  time.Second,
		idle:        map[string][]*backendConn{},
	}
}

// get returns an idle connection to addr (reused: true) or a new one.
func (b *backends) get(ctx context.Context, addr string) (bc *backendConn, reused bool, err error) {
	now := time.Now()
	b.mu.Lock()
	for stack := b.idle[addr]; len(stack) > 0; stack = b.idle[addr] {
		bc = stack[len(stack)-1]
		stack[len(stack)-1] = nil
		b.idle[addr] = stack[:len(stack)-1]
		idle := now.Sub(bc.idleAt)
		if idle >= b.idleTimeout {
			bc.close()
			continue
		}
		b.mu.Unlock()
		if idle < b.probeAfter || bc.alive() {
			return bc, true, nil
		}
		bc.close()
		b.mu.Lock()
	}
	b.mu.Unlock()
	c, err := b.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	sio := newSockIO(c)
	bc = &backendConn{Conn: c, addr: addr, rd: backendReader{c: c, io: sio}}
	var w io.Writer = c
	if sio != nil {
		w = sio
	}
	if r, ok := readerPool.Get().(*bufio.Reader); ok {
		r.Reset(&bc.rd)
		bc.br = r
	} else {
		bc.br = bufio.NewReaderSize(&bc.rd, 32<<10)
	}
	if pw, ok := writerPool.Get().(*bufio.Writer); ok {
		pw.Reset(w)
		bc.bw = pw
	} else {
		bc.bw = bufio.NewWriterSize(w, 8<<10)
	}
	return bc, false, nil
}

// put gives back a connection whose exchange ended cleanly; it also drops the
// connections of that address idle for too long.
func (b *backends) put(bc *backendConn) {
	now := time.Now()
	bc.idleAt = now
	b.mu.Lock()
	defer b.mu.Unlock()
	stack := b.idle[bc.addr]
	for len(stack) > 0 && now.Sub(stack[0].idleAt) >= b.idleTimeout {
		stack[0].close()
		stack = stack[1:]
	}
	if b.closed || len(stack) >= b.maxIdle {
		b.idle[bc.addr] = stack
		bc.close()
		return
	}
	b.idle[bc.addr] = append(stack, bc)
}

// closeIdle closes every idle connection; with stop, the pool keeps none from now on.
func (b *backends) closeIdle(stop bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for addr, stack := range b.idle {
		for _, bc := range stack {
			bc.close()
		}
		delete(b.idle, addr)
	}
	if stop {
		b.closed = true
	}
}

// alive reports whether an idle connection is still open: the backend has neither
// closed it nor sent anything unasked (a peek that does not wait).
func (bc *backendConn) alive() bool {
	if bc.br.Buffered() > 0 {
		return false
	}
	sc, ok := bc.Conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = rerr == syscall.EAGAIN
		return true // an answer either way: do not wait for the descriptor
	})
	return err == nil && alive
}

// abandon closes the connection and leaves its buffers to the garbage collector: a
// goroutine may still be using them.
func (bc *backendConn) abandon() { bc.Conn.Close() }

// close closes the connection and recycles its buffers; nothing else may use them.
func (bc *backendConn) close() {
	bc.Conn.Close()
	if bc.br != nil {
		bc.br.Reset(nil)
		readerPool.Put(bc.br)
		bc.br = nil
	}
	if bc.bw != nil {
		bc.bw.Reset(nil)
		writerPool.Put(bc.bw)
		bc.bw = nil
	}
}
