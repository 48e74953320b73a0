package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
)

// The requests of HTTP/2 connections, served by net/http's server, and their side of a
// backend exchange.

// hopHeaders are the headers of one connection, never forwarded (RFC 9110 7.6.1),
// besides those named in Connection.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// forwardingHeaders are the client's claims about earlier hops: dropped, the proxy
// sets its own.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// bufPool lends the 32 KiB buffers that bodies are copied through.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

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
	if ip, ok := addrIP(r.RemoteAddr); ok {
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
// Its errors reading the body wrap errClientBody.
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
			return fmt.Errorf("%w: %w", errClientBody, err)
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
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	hr := &h2request{w: w, r: r}
	hr.flusher, _ = w.(http.Flusher)
	rq := outRequest{method: r.Method, hasBody: hasBody, length: r.ContentLength}
	err := p.forward(r.Context(), hr, &rq, route.Backend)
	switch {
	case err == nil:
	case errors.Is(err, errBackend) && !hr.wrote:
		p.backendError(w, r, route.Backend, err)
	default:
		// The response had started: all that can be done is to cut it short, so that
		// the client does not take it for whole.
		p.log.Debug("proxy: response cut short", "host", r.Host, "backend", route.Backend, "error", err)
		panic(http.ErrAbortHandler)
	}
}

// addrIP returns the IP of an "ip:port" or "[ip]:port" address (as SplitHostPort
// does, without its allocation).
func addrIP(addr string) (string, bool) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", false
	}
	ip := addr[:i]
	if strings.HasPrefix(ip, "[") && strings.HasSuffix(ip, "]") {
		ip = ip[1 : len(ip)-1]
	}
	return ip, ip != ""
}

// h2request is a request of net/http's server in a backend exchange (downstream).
type h2request struct {
	w       http.ResponseWriter
	r       *http.Request
	flusher http.Flusher
	stop    func() bool
	wrote   bool // the response's head
}

func (hr *h2request) writeRequestHead(bw *bufio.Writer, hasBody, chunked bool) {
	writeHead(bw, hr.r, "", hasBody, chunked)
}

func (hr *h2request) sendBody(bw *bufio.Writer, chunked bool) error {
	return writeBody(bw, hr.r, chunked)
}

func (hr *h2request) abortBody() { _ = hr.r.Body.Close() }

func (hr *h2request) watch(bc *backendConn) {
	hr.stop = context.AfterFunc(hr.r.Context(), bc.abandon)
}

func (hr *h2request) unwatch() bool {
	if hr.stop != nil {
		hr.stop()
		hr.stop = nil
	}
	return hr.r.Context().Err() != nil
}

func (hr *h2request) beforeBackendRead() {
	if hr.wrote && hr.flusher != nil {
		hr.flusher.Flush()
	}
}

func (hr *h2request) earlyHints(rh *respHead) error {
	h := hr.w.Header()
	var added []string
	for _, f := range rh.fields {
		if rh.forwarded(f) {
			k := canonicalKey(f.name)
			h[k] = append(h[k], string(f.value))
			added = append(added, k)
		}
	}
	hr.w.WriteHeader(http.StatusEarlyHints)
	for _, k := range added {
		delete(h, k)
	}
	return nil
}

func (hr *h2request) responseHead(rh *respHead) error {
	h := hr.w.Header()
	// The values, in one string, and their slices in one array.
	n, size := 0, 0
	for _, f := range rh.fields {
		n++
		size += len(f.value)
	}
	if rh.lengthField {
		n++
		size += 20
	}
	buf := make([]byte, 0, size)
	ends := make([]int, 0, n)
	for _, f := range rh.fields {
		if rh.forwarded(f) {
			buf = append(buf, f.value...)
			ends = append(ends, len(buf))
		}
	}
	if rh.lengthField && (rh.mode == bodyLength || rh.mode == bodyNone) {
		buf = strconv.AppendInt(buf, rh.length, 10)
		ends = append(ends, len(buf))
	}
	all, vals := string(buf), make([]string, len(ends))
	start := 0
	for i, end := range ends {
		vals[i] = all[start:end]
		start = end
	}
	i := 0
	for _, f := range rh.fields {
		if rh.forwarded(f) {
			k := canonicalKey(f.name)
			if h[k] == nil {
				h[k] = vals[i : i+1 : i+1]
			} else {
				h[k] = append(h[k], vals[i])
			}
			i++
		}
	}
	if i < len(vals) {
		h["Content-Length"] = vals[i : i+1 : i+1]
	}
	if !rh.hasType {
		h["Content-Type"] = nil // no sniffing: the backend said none
	}
	if len(rh.trailers) > 0 {
		names := make([]string, len(rh.trailers))
		for i, t := range rh.trailers {
			names[i] = canonicalKey(t)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	hr.w.WriteHeader(rh.code)
	hr.wrote = true
	return nil
}

func (hr *h2request) writeBody(b []byte) error {
	_, err := hr.w.Write(b)
	return err
}

func (hr *h2request) endBody(rh *respHead, trailers []field) error {
	if len(trailers) == 0 {
		return nil
	}
	h := hr.w.Header()
	for _, f := range trailers {
		if rh.declared(f.name) && classify(f.name) == hOther {
			k := canonicalKey(f.name)
			h[k] = append(h[k], string(f.value))
		}
	}
	return nil
}

func (hr *h2request) switchProtocols(bc *backendConn, rh *respHead, upgrade string) error {
	bc.abandon()
	return fmt.Errorf("%w: the backend switched to %q, asked %q", errBackend, rh.upgrade, upgrade)
}

// canonicalKey is textproto.CanonicalMIMEHeaderKey's, without allocating for the
// usual names.
func canonicalKey(name []byte) string {
	if k, ok := commonKeys[string(name)]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept-Ranges", "Age", "Cache-Control", "Content-Disposition", "Content-Encoding",
		"Content-Language", "Content-Length", "Content-Location", "Content-Range", "Content-Security-Policy",
		"Content-Type", "Date", "Etag", "Expires", "Last-Modified", "Link", "Location", "Server", "Set-Cookie",
		"Strict-Transport-Security", "Vary", "Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options"} {
		m[k] = k
		m[strings.ToLower(k)] = k
	}
	m["ETag"] = "Etag"
	return m
}()
