package budget

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"
)

// Listener wraps l: each connection it accepts takes one of MaxConns or, past them, one
// of ExcessConns; beyond both it is closed at once and Accept goes on to the next. The
// slot is given back, once, when the connection closes. Accept never reads from or
// waits on a client.
func (b *Budget) Listener(l net.Listener) net.Listener { return &listener{Listener: l, b: b} }

type listener struct {
	net.Listener
	b *Budget
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := l.b.take(nc); c != nil {
			return c, nil
		}
		nc.Close()
	}
}

// take gives nc a slot, or returns nil when there is none.
func (b *Budget) take(nc net.Conn) *conn {
	l := b.limits
	b.mu.Lock()
	var excess bool
	switch {
	case b.conns < l.MaxConns:
		b.conns++
	case b.excess < l.ExcessConns:
		b.excess++
		excess = true
	default:
		b.mu.Unlock()
		b.counts.dropped.Add(1)
		b.warnf("connections", "closed a connection at accept: the client holds %d connections and %d more",
			l.MaxConns, l.ExcessConns)
		return nil
	}
	b.mu.Unlock()
	c := &conn{Conn: nc, b: b, excess: excess}
	c.guard.init(l)
	if excess {
		b.warnf("connections", "accepted an excess connection: the client holds %d connections", l.MaxConns)
		// Closing again when the client already went is harmless: the slot is given once.
		time.AfterFunc(l.ExcessLinger, func() { c.Close() })
	}
	return c
}

func (b *Budget) release(excess bool) {
	b.mu.Lock()
	if excess {
		b.excess--
	} else {
		b.conns--
	}
	b.mu.Unlock()
}

// conn is an accepted connection holding a slot of its budget.
type conn struct {
	net.Conn
	b      *Budget
	excess bool
	once   sync.Once

	// wmu is held while writing: Read waits for it, so a client that does not read its
	// answers stops being read, and what the server queues for it stays bounded.
	wmu   sync.Mutex
	guard guard // used by the reading goroutine only
}

func (c *conn) Read(p []byte) (int, error) {
	c.wmu.Lock() // wait for a write in progress
	c.wmu.Unlock()
	n, err := c.Conn.Read(p)
	if n > 0 {
		if gerr := c.guard.scan(p[:n]); gerr != nil {
			c.b.counts.frames.Add(1)
			c.b.warnf("frames", "closed a connection: %v", gerr)
			c.Close()
			return 0, gerr
		}
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.b.limits.WriteTimeout)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			c.b.counts.writes.Add(1)
			c.b.warnf("writes", "closed a connection whose client read nothing for %s", c.b.limits.WriteTimeout)
		}
		// gRPC's writer stops at an I/O error and leaves closing to its reader, which
		// would read on, and queue answers nobody writes, for as long as the client sends.
		c.Close()
	}
	return n, err
}

// Close closes the connection and gives its slot back, the first time.
func (c *conn) Close() error {
	c.once.Do(func() { c.b.release(c.excess) })
	return c.Conn.Close()
}

// RemoteAddr carries the connection itself, so that interceptors find it in the
// call's peer.
func (c *conn) RemoteAddr() net.Addr {
	a := c.Conn.RemoteAddr()
	if a == nil {
		a = &net.UnixAddr{Net: "unix"}
	}
	return addr{Addr: a, c: c}
}

// SyscallConn gives the socket underneath, for reading peer credentials.
func (c *conn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T has no file descriptor", c.Conn)
	}
	return sc.SyscallConn()
}

type addr struct {
	net.Addr
	c *conn
}

// Credentials wraps a server's transport credentials so that their handshake sees the
// socket under a budget's connection, and the server keeps the budget's connection.
// inner must hand back the connection it was given, as peercred's credentials do.
func Credentials(inner credentials.TransportCredentials) credentials.TransportCredentials {
	return creds{inner}
}

type creds struct {
	credentials.TransportCredentials
}

func (t creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, ok := raw.(*conn)
	if !ok {
		return t.TransportCredentials.ServerHandshake(raw)
	}
	nc, info, err := t.TransportCredentials.ServerHandshake(c.Conn)
	if err != nil {
		return nil, nil, err
	}
	if nc != c.Conn {
		return nil, nil, fmt.Errorf("budget: credentials %s replaced the connection; the budget cannot follow it", t.Info().SecurityProtocol)
	}
	return c, info, nil
}

func (t creds) Clone() credentials.TransportCredentials { return creds{t.TransportCredentials.Clone()} }
