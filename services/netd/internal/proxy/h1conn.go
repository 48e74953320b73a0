package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// The HTTP/1.1 connections the proxy terminated TLS for are served here rather than
// by net/http: one goroutine per connection reads each request's head straight off
// the connection's buffer, forwards it and writes the response through a buffer that
// is pushed out only before a read that may wait (the next request when none is at
// hand, the backend's next bytes). A small answer, head and body, goes out in one TLS
// record, one write. HTTP/2 connections go to net/http's server.

// Connection states (conn.state), for Shutdown.
const (
	stateOther   int32 = iota // not (yet) an HTTP/1.1 connection served here
	stateActive               // reading or serving a request
	stateIdle                 // waiting for the next request
	stateClosing              // closed by Shutdown while idle
)

const (
	h1ReadBufferSize = 4 << 10
	// A TLS record's largest payload: a full buffer goes out as one record.
	h1WriteBufferSize = 16 << 10
	// lingerTime: how long a connection closed with an unread request body keeps
	// reading it, so that the client gets the response before a reset.
	lingerTime = 500 * time.Millisecond
)

// h1conn is an HTTP/1.1 connection and the request it serves.
type h1conn struct {
	p        *Proxy
	c        *conn
	tc       *tls.Conn
	rd       h1reader
	br       *bufio.Reader
	bw       *bufio.Writer // nil while idle: lent by h1WriterPool
	clientIP string        // for X-Forwarded-For

	// The current request, and what its forwarding needs.
	req h1request
	out outRequest
	// The route name of the last Host seen: most connections send one only.
	lastHost, lastName string

	// The response.
	chunked    bool // its body goes chunked
	closeAfter bool // the connection closes after it
	wroteHead  bool // its head (not a 1xx) has been written
	hijacked   bool // the connection switched protocols
	flushAtEnd bool // push the response out as soon as it ends
	linger     bool // close with lingerTime: the request body was not all read

	cw h1watch // for the client going away
}

// h1reader is what the connection's bufio.Reader reads: before reading the
// connection, it pushes out the responses written so far (but while another goroutine
// reads a request body, which may go on while the response is written).
type h1reader struct {
	h     *h1conn
	flush bool
}

func (r *h1reader) Read(b []byte) (int, error) {
	if h := r.h; r.flush && h.bw != nil && h.bw.Buffered() > 0 {
		if err := h.bw.Flush(); err != nil {
			return 0, err
		}
	}
	return r.h.tc.Read(b)
}

var (
	h1ReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1ReadBufferSize) }}
	h1WriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, h1WriteBufferSize) }}
)

// serveH1 serves the HTTP/1.1 requests of a terminated TLS connection until it ends,
// then closes it.
func (p *Proxy) serveH1(c *conn, tc *tls.Conn) {
	h := &h1conn{p: p, c: c, tc: tc}
	h.rd = h1reader{h: h, flush: true}
	h.br = h1ReaderPool.Get().(*bufio.Reader)
	h.br.Reset(&h.rd)
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		h.clientIP = a.IP.String()
	} else if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		h.clientIP = host
	}
	c.state.Store(stateActive)
	h.serve()
	h.close()
	h.br.Reset(nil)
	h1ReaderPool.Put(h.br)
	h.br = nil
}

func (h *h1conn) serve() {
	p := h.p
	for first := true; ; first = false {
		if !first && h.br.Buffered() == 0 && !h.waitIdle() {
			return
		}
		_ = h.c.Conn.SetReadDeadline(time.Now().Add(p.cfg.ReadHeaderTimeout))
		if !h.serveRequest() {
			return
		}
	}
}

// waitIdle waits for the next request, for up to IdleTimeout; false: the connection
// is to close (timeout, the client closed it, Shutdown).
func (h *h1conn) waitIdle() bool {
	if h.bw != nil {
		if h.bw.Flush() != nil {
			return false
		}
		h.releaseWriter()
	}
	if !h.c.state.CompareAndSwap(stateActive, stateIdle) || h.p.draining.Load() {
		return false
	}
	_ = h.c.Conn.SetReadDeadline(time.Now().Add(h.p.cfg.IdleTimeout))
	if _, err := h.br.Peek(1); err != nil {
		return false
	}
	return h.c.state.CompareAndSwap(stateIdle, stateActive)
}

func (h *h1conn) writer() *bufio.Writer {
	if h.bw == nil {
		h.bw = h1WriterPool.Get().(*bufio.Writer)
		h.bw.Reset(h.tc)
	}
	return h.bw
}

func (h *h1conn) releaseWriter() {
	h.bw.Reset(nil)
	h1WriterPool.Put(h.bw)
	h.bw = nil
}

// serveRequest reads and serves one request; false: the connection is to close.
func (h *h1conn) serveRequest() bool {
	p, rq := h.p, &h.req
	head, err := readHead(h.br, rq.head, p.cfg.MaxHeaderBytes)
	rq.head = head[:0]
	if err != nil {
		if errors.Is(err, errHeadTooLarge) {
			// The rest of the head may still be on its way: linger as for an unread
			// body, or the kernel's reset to it can lose the 431 (a flaky CI run).
			h.linger = true
			h.reply(431, "431 request header fields too large", true)
		} else if len(head) > 0 && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
			!errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, net.ErrClosed) {
			p.log.Debug("proxy: reading a request", "remote", h.clientIP, "error", err)
		}
		return false
	}
	rq.method = ""
	if err := rq.parse(head); err != nil {
		p.log.Debug("proxy: bad request", "remote", h.clientIP, "error", err)
		switch {
		case errors.Is(err, errVersion):
			h.reply(505, "505 HTTP version not supported", true)
		case errors.Is(err, errTransferEncoding):
			h.reply(501, "501 not implemented: unsupported Transfer-Encoding", true)
		default:
			h.reply(400, "400 bad request", true)
		}
		return false
	}
	h.chunked, h.closeAfter, h.wroteHead, h.linger = false, rq.close, false, false
	rq.body.reset(h.br, rq.mode, rq.length, p.cfg.MaxHeaderBytes)

	name := h.routeName(rq.host)
	route, ok := p.routes.get(name)
	switch {
	case !ok:
		return h.replyError(404, "404 not found: no service is bound to "+name)
	case rq.method == "CONNECT":
		return h.replyError(405, "405 method not allowed: this is a reverse proxy, not a tunnel")
	case route.Kind != KindHTTP:
		// A passthrough name: its own TLS, on a connection of its own.
		return h.replyError(421, "421 misdirected request: open a new connection to "+name)
	case rq.expect != nil && !foldEq(rq.expect, "100-continue"):
		h.closeAfter = true
		return h.replyError(417, "417 expectation failed")
	}

	hasBody := rq.mode != bodyNone
	inline := rq.mode == bodyLength && rq.length <= int64(h.br.Buffered())
	if hasBody && !inline {
		// The body is read by another goroutine while the response comes back:
		// what is written to the client is pushed out by this one.
		if rq.expect != nil && rq.minor > 0 {
			h.writer().WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		}
		if h.bw != nil && h.bw.Flush() != nil {
			return false
		}
		_ = h.c.Conn.SetReadDeadline(time.Time{})
	}
	h.out = outRequest{method: rq.method, hasBody: hasBody, length: rq.length, inline: inline}
	if rq.upgrade != nil {
		h.out.upgrade = string(rq.upgrade)
	}
	// The response goes out as soon as it ends, unless the next request is here
	// already (its response will go with it) or a goroutine reads the body.
	h.flushAtEnd = !hasBody && h.br.Buffered() == 0 || inline && int64(h.br.Buffered()) == rq.length
	// Reads of the connection while the request is forwarded (its body's, the
	// watch's for the client going away) do not flush what is written meanwhile.
	h.rd.flush = false
	err = p.forward(p.ctx, h, &h.out, route.Backend)
	h.rd.flush = true
	if h.hijacked {
		return false
	}
	if err != nil {
		if !errors.Is(err, errBackend) || h.wroteHead {
			// The response had started: all that can be done is to cut it short, so
			// that the client does not take it for whole.
			p.log.Debug("proxy: response cut short", "host", name, "backend", route.Backend, "error", err)
			return false
		}
		if h.cw.gone {
			return false // the client went away
		}
		p.log.Warn("proxy: backend error", "host", name, "backend", route.Backend, "method", rq.method, "error", err)
		return h.replyError(502, "502 bad gateway: the service for "+name+" is not answering")
	}
	if hasBody && !rq.body.done() {
		h.closeAfter, h.linger = true, true
	}
	return !h.closeAfter
}

// routeName returns the route name for a Host (hostOnly's), remembering the last.
func (h *h1conn) routeName(host []byte) string {
	if string(host) != h.lastHost {
		h.lastHost = string(host)
		h.lastName = hostOnly(h.lastHost)
	}
	return h.lastName
}

// replyError answers the current request with an error of the proxy's own, after
// which the connection stays open if the request's body is out of the way.
func (h *h1conn) replyError(code int, msg string) bool {
	if rq := &h.req; rq.mode != bodyNone && !rq.body.done() {
		if rq.mode == bodyLength && rq.body.remain <= int64(h.br.Buffered()) {
			_, _ = h.br.Discard(int(rq.body.remain))
		} else {
			h.closeAfter, h.linger = true, true
		}
	}
	h.reply(code, msg, h.closeAfter)
	return !h.closeAfter
}

// close ends the connection, pushing out what has been written first.
func (h *h1conn) close() {
	if h.bw != nil {
		if !h.hijacked {
			_ = h.bw.Flush()
		}
		h.releaseWriter()
	}
	if h.linger && !h.hijacked {
		// The client may still be sending the body: read it for a while, so that
		// the kernel does not answer it with a reset that could lose the response.
		_ = h.tc.CloseWrite()
		closeWrite(h.c.Conn)
		_ = h.c.Conn.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.Copy(io.Discard, h.c.Conn)
	}
	_ = h.tc.Close()
}
