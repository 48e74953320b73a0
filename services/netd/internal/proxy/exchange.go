package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
)

// errBackend marks a failure to reach the backend or to get its response's head: the
// client gets 502.
var errBackend = errors.New("backend")

// downstream is the client's side of a backend exchange: a request on an HTTP/1.1
// connection the proxy serves itself (h1conn), or one of net/http's HTTP/2 server
// (h2request).
type downstream interface {
	// writeRequestHead writes the request line and header fields for the backend: the
	// client's but the hop-by-hop ones and its forwarding claims, then the proxy's
	// X-Forwarded-For, -Host and -Proto, and the body's framing.
	writeRequestHead(bw *bufio.Writer, hasBody, chunked bool)
	// sendBody copies the request's body to bw (chunked: with its trailers), flushing
	// what comes as it comes.
	sendBody(bw *bufio.Writer, chunked bool) error
	// abortBody makes a sendBody that waits for the client return.
	abortBody()
	// watch: from now until unwatch, a client that goes away abandons bc. unwatch
	// reports whether it went.
	watch(bc *backendConn)
	unwatch() (gone bool)
	// beforeBackendRead pushes out what the client has been written, before the
	// exchange reads the backend (and may wait).
	beforeBackendRead()
	// earlyHints passes on a 103.
	earlyHints(rh *respHead) error
	// responseHead starts the response; writeBody and endBody follow.
	responseHead(rh *respHead) error
	writeBody(b []byte) error
	endBody(rh *respHead, trailers []field) error
	// switchProtocols answers a 101 and then passes bytes both ways (WebSocket) until
	// either side ends; it abandons bc.
	switchProtocols(bc *backendConn, rh *respHead, upgrade string) error
}

// outRequest is what an exchange needs to know of the client's request.
type outRequest struct {
	method  string
	hasBody bool
	length  int64 // of the body; -1: unknown (chunked to the backend)
	// inline: the whole body is at hand already: it goes with the head, from the
	// exchange's goroutine.
	inline bool
	// upgrade: the protocol the client asked to switch to (Connection: upgrade).
	upgrade string
}

// replayable: like http.Transport, a request that has not reached a reused
// connection's backend (which may have closed it while idle) is tried again on a new
// one if it has no body and is idempotent.
func (r *outRequest) replayable() bool {
	switch r.method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return !r.hasBody
	}
	return false
}

// forward sends a request to backend over a pooled HTTP/1.1 connection and streams the
// answer back to d, from this goroutine (a streamed request body goes from another
// one while the response is read: a backend may answer before it has it all). An
// error wrapping errBackend: the client has been sent nothing (it gets 502); another
// error: the response was cut short.
func (p *Proxy) forward(ctx context.Context, d downstream, rq *outRequest, backend string) error {
	for {
		bc, reused, err := p.backends.get(ctx, backend)
		if err != nil {
			return fmt.Errorf("%w: %w", errBackend, err)
		}
		retry, err := p.exchange(d, rq, bc)
		if err == nil {
			return nil
		}
		if retry && reused && rq.replayable() {
			continue
		}
		return err
	}
}

// exchange does one request and response on bc, and gives bc back to the pool or
// closes it. retry: the backend closed the connection before answering anything.
func (p *Proxy) exchange(d downstream, rq *outRequest, bc *backendConn) (retry bool, err error) {
	chunked := rq.hasBody && rq.length < 0
	d.writeRequestHead(bc.bw, rq.hasBody, chunked)
	var bodyDone chan error
	switch {
	case !rq.hasBody:
		if err := bc.bw.Flush(); err != nil {
			bc.abandon()
			return true, fmt.Errorf("%w: sending the request: %w", errBackend, err)
		}
	case rq.inline:
		if err := d.sendBody(bc.bw, false); err != nil {
			bc.abandon()
			return false, fmt.Errorf("%w: sending the request: %w", errBackend, err)
		}
	default:
		bodyDone = make(chan error, 1)
		go func() {
			err := d.sendBody(bc.bw, chunked)
			if errors.Is(err, errClientBody) {
				bc.abandon() // the response cannot reach the client either
			}
			bodyDone <- err
		}()
	}
	bc.rd.before = d
	d.watch(bc)
	// joinBody waits for the body's goroutine, ending it first if it is not done.
	joinBody := func() error {
		select {
		case err := <-bodyDone:
			return err
		default:
		}
		bc.abandon()
		d.abortBody()
		if err := <-bodyDone; err != nil {
			return err
		}
		return errors.New("the backend answered before it had the whole request body")
	}

	buffered := bc.br.Buffered()
	rh, empty, err := p.readResponseHead(d, bc, rq.method)
	if err != nil {
		gone := d.unwatch()
		bc.rd.before = nil
		bc.abandon()
		if bodyDone != nil {
			_ = joinBody()
		}
		if gone {
			return false, fmt.Errorf("%w: the client went away: %w", errBackend, err)
		}
		// Not a byte came back: the backend had closed the connection.
		retry = buffered == 0 && empty && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
		return retry, fmt.Errorf("%w: reading the response: %w", errBackend, err)
	}
	if rh.code == 101 {
		d.unwatch()
		bc.rd.before = nil
		if bodyDone != nil {
			_ = joinBody()
		}
		return false, d.switchProtocols(bc, rh, rq.upgrade)
	}

	var readErr, writeErr error
	if writeErr = d.responseHead(rh); writeErr == nil {
		body := &bc.body
		body.reset(bc.br, rh.mode, rh.length, p.cfg.MaxHeaderBytes*4)
		for {
			b, err := body.next()
			if len(b) > 0 {
				if writeErr = d.writeBody(b); writeErr != nil {
					break
				}
				body.consume(len(b))
			}
			if err == io.EOF {
				writeErr = d.endBody(rh, body.trailers)
				break
			}
			if err != nil {
				readErr = err
				break
			}
		}
	}
	gone := d.unwatch()
	bc.rd.before = nil
	// Bytes after the response (a body the backend sent where none belongs) would
	// be taken for the next one's.
	reusable := readErr == nil && writeErr == nil && !gone && !rh.closes && bc.br.Buffered() == 0
	if bodyDone != nil {
		if err := joinBody(); err != nil {
			reusable = false
		}
	}
	if reusable {
		p.backends.put(bc)
	} else {
		bc.close()
	}
	switch {
	case readErr != nil:
		return false, fmt.Errorf("reading the response body: %w", readErr)
	case writeErr != nil:
		return false, fmt.Errorf("writing the response: %w", writeErr)
	}
	return false, nil
}

// readResponseHead reads the backend's response head, passing 103 Early Hints on to
// the client and skipping other informational responses (but 101). empty: not a byte
// came.
func (p *Proxy) readResponseHead(d downstream, bc *backendConn, method string) (rh *respHead, empty bool, err error) {
	rh = &bc.resp
	for first := true; ; first = false {
		head, err := readHead(bc.br, bc.head, p.cfg.MaxHeaderBytes*4)
		bc.head = head[:0]
		if err != nil {
			return nil, first && len(head) == 0, err
		}
		if err := parseResponse(head, method, rh); err != nil {
			return nil, false, err
		}
		if rh.code >= 200 || rh.code == 101 {
			return rh, false, nil
		}
		if rh.code == 103 {
			if err := d.earlyHints(rh); err != nil {
				return nil, false, err
			}
		}
	}
}

// errClientBody marks a failure to read the client's request body: the client went
// away (or sent a malformed body), and the exchange is abandoned.
var errClientBody = errors.New("reading the request body")
