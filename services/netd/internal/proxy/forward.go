package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// hopHeaders are the headers of one connection, never forwarded (RFC 9110 7.6.1),
// besides those named in Connection.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// forwardingHeaders are the client's claims about earlier hops: dropped, the proxy
// sets its own.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// bufPool lends the 32 KiB buffers that bodies are copied through.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// errBackend marks a failure to reach the backend or to get its response's head: the
// client gets 502.
var errBackend = errors.New("backend")

// forward sends r to backend over a pooled HTTP/1.1 connection and streams the answer
// back to w, from this goroutine: the request's body, if any, is sent by another one
// while the response is read (a backend may answer before it has the whole body).
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, backend string) {
	upgrade := ""
	if r.ProtoMajor == 1 && hasToken(r.Header["Connection"], "upgrade") {
		upgrade = r.Header.Get("Upgrade")
	}
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	// Like http.Transport: a request that has not reached a reused connection's
	// backend (which may have closed it while idle) is tried again on a new one, if
	// it has no body and is idempotent.
	replayable := !hasBody && (r.Method == http.MethodGet || r.Method == http.MethodHead ||
		r.Method == http.MethodOptions || r.Method == http.MethodTrace)
	for {
		bc, reused, err := p.backends.get(r.Context(), backend)
		if err != nil {
			p.backendError(w, r, backend, err)
			return
		}
		retry, err := p.exchange(w, r, bc, upgrade, hasBody)
		if err == nil {
			return
		}
		if retry && reused && replayable {
			continue
		}
		if errors.Is(err, errBackend) {
			p.backendError(w, r, backend, err)
			return
		}
		// The response had started: all that can be done is to cut it short, so that
		// the client does not take it for whole.
		p.log.Debug("proxy: response cut short", "host", r.Host, "backend", backend, "error", err)
		panic(http.ErrAbortHandler)
	}
}

// exchange does one request and response on bc, and gives bc back to the pool or
// closes it. retry: the backend closed the connection before answering anything.
func (p *Proxy) exchange(w http.ResponseWriter, r *http.Request, bc *backendConn, upgrade string, hasBody bool) (retry bool, err error) {
	chunked := hasBody && r.ContentLength < 0
	writeHead(bc.bw, r, upgrade, hasBody, chunked)
	var bodyDone chan error
	if hasBody {
		bodyDone = make(chan error, 1)
		go func() { bodyDone <- writeBody(bc.bw, r, chunked) }()
	} else if err := bc.bw.Flush(); err != nil {
		bc.abandon()
		return true, fmt.Errorf("%w: sending the request: %w", errBackend, err)
	}
	// A client that goes away while the backend thinks ends the exchange.
	stop := context.AfterFunc(r.Context(), bc.abandon)
	// The head's size is capped (as the client's is), its body's is not.
	buffered, count := bc.br.Buffered(), bc.lr.count
	bc.lr.remain = int64(p.cfg.MaxHeaderBytes)*4 + int64(buffered)
	resp, err := readResponse(w, bc.br, r)
	bc.lr.remain = noLimit
	if err != nil {
		stop()
		bc.abandon()
		// Not a byte came back: the backend had closed the connection.
		retry = buffered == 0 && bc.lr.count == count && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
		return retry, fmt.Errorf("%w: reading the response: %w", errBackend, err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		stop()
		return false, p.switchProtocols(w, r, bc, resp, upgrade)
	}

	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	removeHopHeaders(h)
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	// Streams (no length given, or server-sent events) go to the client at each
	// read; a body of known length goes as it comes through the server's buffer.
	flush := resp.ContentLength < 0 || isEventStream(resp.Header)
	if flush {
		_ = http.NewResponseController(w).Flush()
	}
	bufp := bufPool.Get().(*[]byte)
	_, readErr, writeErr := copyBody(w, resp.Body, *bufp, flush)
	bufPool.Put(bufp)
	stop()
	if readErr == nil {
		for k, vv := range resp.Trailer {
			h[k] = vv
		}
	}
	reusable := readErr == nil && writeErr == nil && !resp.Close && r.Context().Err() == nil
	if hasBody {
		select {
		case err := <-bodyDone:
			reusable = reusable && err == nil
		default:
			reusable = false // the backend answered without taking the whole body
		}
	}
	if reusable {
		p.backends.put(bc)
	} else if hasBody {
		bc.abandon()
	} else {
		bc.close()
	}
	switch {
	case readErr != nil:
		return false, fmt.Errorf("reading the response body: %w", readErr)
	case writeErr != nil:
		return false, nil // the client went away: nothing to tell it
	}
	return false, nil
}

// writeHead writes the request line and headers for the backend: the client's
// headers but the hop-by-hop ones and the forwarding claims, then the proxy's
// X-Forwarded-For, -Host and -Proto.
func writeHead(bw *bufio.Writer, r *http.Request, upgrade string, hasBody, chunked bool) {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(r.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	var connNamed []string // headers named by Connection: hop-by-hop too
	for _, v := range r.Header["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				connNamed = append(connNamed, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	for k, vv := range r.Header {
		if skipHeader(k, connNamed) {
			continue
		}
		if k == "Cookie" && len(vv) > 1 { // HTTP/2 may split them (RFC 9113 8.2.3)
			writeHeader(bw, k, strings.Join(vv, "; "))
			continue
		}
		for _, v := range vv {
			writeHeader(bw, k, v)
		}
	}
	if hasToken(r.Header["Te"], "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		writeHeader(bw, "X-Forwarded-For", ip)
	}
	writeHeader(bw, "X-Forwarded-Host", r.Host)
	if r.TLS != nil {
		bw.WriteString("X-Forwarded-Proto: https\r\n")
	} else {
		bw.WriteString("X-Forwarded-Proto: http\r\n")
	}
	switch {
	case chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case hasBody:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(r.ContentLength, 10))
		bw.WriteString("\r\n")
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	if upgrade != "" {
		bw.WriteString("Connection: Upgrade\r\n")
		writeHeader(bw, "Upgrade", upgrade)
	}
	bw.WriteString("\r\n")
}

func skipHeader(k string, connNamed []string) bool {
	switch k {
	case "Host", "Content-Length", "Expect":
		// Host and the length are written from the request; the server answers
		// Expect: 100-continue itself when the body is read.
		return true
	}
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	for _, h := range forwardingHeaders {
		if k == h {
			return true
		}
	}
	for _, h := range connNamed {
		if k == h {
			return true
		}
	}
	return false
}

func writeHeader(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// writeBody sends the request's body, chunked if its length is unknown, and flushes.
func writeBody(bw *bufio.Writer, r *http.Request, chunked bool) error {
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	buf := *bufp
	var dst io.Writer = bw
	var cw *chunkWriter
	if chunked {
		cw = &chunkWriter{bw: bw}
		dst = cw
	}
	var n int64
	for {
		m, err := r.Body.Read(buf)
		if m > 0 {
			if _, werr := dst.Write(buf[:m]); werr != nil {
				return werr
			}
			n += int64(m)
			// Send what came at once: the backend may be streaming it back.
			if ferr := bw.Flush(); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if chunked {
		bw.WriteString("0\r\n")
		for k, vv := range r.Trailer {
			for _, v := range vv {
				writeHeader(bw, k, v)
			}
		}
		bw.WriteString("\r\n")
	} else if n != r.ContentLength {
		return fmt.Errorf("request body of %d bytes, announced %d", n, r.ContentLength)
	}
	return bw.Flush()
}

type chunkWriter struct{ bw *bufio.Writer }

func (c *chunkWriter) Write(b []byte) (int, error) {
	c.bw.WriteString(strconv.FormatInt(int64(len(b)), 16))
	c.bw.WriteString("\r\n")
	c.bw.Write(b)
	_, err := c.bw.WriteString("\r\n")
	return len(b), err
}

// readResponse reads the backend's response head, passing 103 Early Hints on to the
// client and skipping other informational responses (but 101).
func readResponse(w http.ResponseWriter, br *bufio.Reader, r *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(br, r)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if resp.StatusCode == http.StatusEarlyHints {
			h := w.Header()
			for k, vv := range resp.Header {
				h[k] = vv
			}
			w.WriteHeader(http.StatusEarlyHints)
			for k := range resp.Header {
				delete(h, k)
			}
		}
	}
}

// copyBody copies src to w, flushing after each write if flush.
func copyBody(w http.ResponseWriter, src io.Reader, buf []byte, flush bool) (n int64, readErr, writeErr error) {
	var rc *http.ResponseController
	if flush {
		rc = http.NewResponseController(w)
	}
	for {
		m, err := src.Read(buf)
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return n, nil, werr
			}
			n += int64(m)
			if flush {
				if werr := rc.Flush(); werr != nil {
					return n, nil, werr
				}
			}
		}
		if err == io.EOF {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
}

// hasToken reports whether a comma-separated header has token (case-insensitive).
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(f), token) {
				return true
			}
		}
	}
	return false
}

func isEventStream(h http.Header) bool {
	ct := h.Get("Content-Type")
	if ct == "" {
		return false
	}
	mt, _, _ := mime.ParseMediaType(ct)
	return mt == "text/event-stream"
}

func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// switchProtocols completes an upgrade (WebSocket): the 101 goes to the client, then
// bytes flow both ways until either side ends or the proxy closes.
func (p *Proxy) switchProtocols(w http.ResponseWriter, r *http.Request, bc *backendConn, resp *http.Response, upgrade string) error {
	defer bc.abandon()
	if got := resp.Header.Get("Upgrade"); upgrade == "" || !strings.EqualFold(got, upgrade) {
		return fmt.Errorf("%w: the backend switched to %q, asked %q", errBackend, got, upgrade)
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return fmt.Errorf("%w: taking over the connection to switch protocols: %w", errBackend, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(p.ctx, func() { conn.Close(); bc.abandon() })
	defer stop()
	removeHopHeaders(resp.Header)
	resp.Header.Set("Connection", "Upgrade")
	resp.Header.Set("Upgrade", upgrade)
	resp.Body = nil
	if err := resp.Write(brw); err != nil {
		return nil
	}
	if err := brw.Flush(); err != nil {
		return nil
	}
	// Bytes already read on either side go first.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := bc.Conn.Write(b); err != nil {
			return nil
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(bc.Conn, conn)
		closeWrite(bc.Conn)
	}()
	_, _ = bc.br.WriteTo(conn)
	closeWrite(conn)
	conn.Close()
	bc.abandon()
	<-done
	return nil
}

// backendError answers 502 when the backend cannot be reached or answers no response.
func (p *Proxy) backendError(w http.ResponseWriter, r *http.Request, backend string, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	p.log.Warn("proxy: backend error", "host", r.Host, "backend", backend, "method", r.Method, "path", r.URL.Path, "error", err)
	http.Error(w, "502 bad gateway: the service for "+hostOnly(r.Host)+" is not answering", http.StatusBadGateway)
}

// serveTLSRequest routes a request of a terminated connection by its Host (as nginx
// does: the server name chose the certificate; a client may send requests for another
// name on the same connection, as HTTP/2 clients do when one certificate covers both).
func (p *Proxy) serveTLSRequest(w http.ResponseWriter, r *http.Request) {
	host := hostOnly(r.Host)
	route, ok := p.routes.get(host)
	if !ok {
		http.Error(w, "404 not found: no service is bound to "+host, http.StatusNotFound)
		return
	}
	if r.Method == http.MethodConnect {
		http.Error(w, "405 method not allowed: this is a reverse proxy, not a tunnel", http.StatusMethodNotAllowed)
		return
	}
	if route.Kind != KindHTTP {
		// A passthrough name: its own TLS, on a connection of its own.
		http.Error(w, "421 misdirected request: open a new connection to "+host, http.StatusMisdirectedRequest)
		return
	}
	if r.ProtoMajor == 1 {
		// Let the backend's response start before the request body has all come
		// (HTTP/2 does this anyway).
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	p.forward(w, r, route.Backend)
}

// servePlainRequest answers HTTP-01 challenges and redirects everything else to https.
func (p *Proxy) servePlainRequest(w http.ResponseWriter, r *http.Request) {
	if token, ok := strings.CutPrefix(r.URL.Path, HTTP01Prefix); ok {
		ka, ok := p.challenges.KeyAuthorization(token)
		if !ok || r.Method != http.MethodGet && r.Method != http.MethodHead {
			p.log.Debug("proxy: http-01 request for no pending token", "host", r.Host, "token", token, "remote", r.RemoteAddr)
			http.Error(w, "404 not found: no ACME challenge is pending for this token", http.StatusNotFound)
			return
		}
		p.log.Info("proxy: answered an http-01 challenge", "host", r.Host, "token", token, "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(ka))
		return
	}
	host := hostOnly(r.Host)
	if host == "" {
		http.Error(w, "400 bad request: no Host", http.StatusBadRequest)
		return
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	if port := p.redirectPort(); port != "" {
		host += ":" + port
	}
	w.Header().Set("Location", "https://"+host+r.URL.RequestURI())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusPermanentRedirect)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte("308 permanent redirect: use https\n"))
	}
}

// hostOnly returns a Host header's name, normalized, without its port or IPv6 brackets.
func hostOnly(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	}
	return normalizeHost(host)
}
