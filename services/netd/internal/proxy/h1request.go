package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// h1request is a request read off an HTTP/1.1 connection: its head parsed in place,
// in a buffer the connection keeps from one request to the next.
type h1request struct {
	head   []byte
	method string // interned for the common methods
	target []byte
	minor  byte // HTTP/1.<minor>
	host   []byte
	fields []field
	conn   [][]byte // names listed in Connection

	mode     bodyMode // bodyNone, bodyLength or bodyChunked
	length   int64    // bodyLength's
	expect   []byte   // Expect's value, if any
	upgrade  []byte   // the protocol asked for with Connection: upgrade
	trailers bool     // TE: trailers
	cookies  int      // Cookie fields
	close    bool     // the client closes after this request (or asked us to)
	body     bodyReader
}

// errVersion: the request is not HTTP/1.x.
var errVersion = fmt.Errorf("%w: unsupported HTTP version", errMalformed)

// parse parses a request head. Its errors wrap errMalformed or errVersion (or are
// errTransferEncoding).
func (rq *h1request) parse(head []byte) error {
	line, rest := nextLine(head)
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return fmt.Errorf("%w: request line %q", errMalformed, clip(line))
	}
	method, r := line[:sp1], line[sp1+1:]
	sp2 := bytes.IndexByte(r, ' ')
	if sp2 <= 0 || !isToken(method) {
		return fmt.Errorf("%w: request line %q", errMalformed, clip(line))
	}
	rq.target, r = r[:sp2], r[sp2+1:]
	for _, c := range rq.target {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w: request target %q", errMalformed, clip(rq.target))
		}
	}
	// HTTP/<digit>.<digit>: 1.x is served, others are not (505).
	if len(r) != 8 || string(r[:5]) != "HTTP/" || r[6] != '.' || !isDigit(r[5]) || !isDigit(r[7]) {
		return fmt.Errorf("%w: request line %q", errMalformed, clip(line))
	}
	if r[5] != '1' {
		return fmt.Errorf("%w %q", errVersion, clip(r))
	}
	rq.minor = r[7] - '0'
	rq.method = internMethod(method)

	var err error
	if rq.fields, err = parseFields(rest, rq.fields); err != nil {
		return err
	}
	rq.conn = connTokens(rq.fields, rq.conn)
	rq.host, rq.expect, rq.upgrade = nil, nil, nil
	rq.mode, rq.length, rq.trailers, rq.cookies = bodyNone, 0, false, 0
	hosts, lengthSeen, te := 0, false, 0
	for _, f := range rq.fields {
		switch classify(f.name) {
		case hHost:
			hosts++
			rq.host = f.value
		case hContentLength:
			n, ok := parseLength(f.value)
			if !ok || lengthSeen && n != rq.length {
				return fmt.Errorf("%w: Content-Length %q", errMalformed, clip(f.value))
			}
			rq.length, lengthSeen = n, true
		case hTransferEncoding:
			te++
			if te > 1 || !foldEq(f.value, "chunked") {
				return errTransferEncoding
			}
		case hExpect:
			rq.expect = f.value
		case hUpgrade:
			if rq.upgrade == nil {
				rq.upgrade = f.value
			}
		case hTE:
			rq.trailers = rq.trailers || hasTokenBytes(f.value, "trailers")
		case hCookie:
			rq.cookies++
		}
	}
	keepAlive, upgrade := false, false
	rq.close = false
	for _, t := range rq.conn {
		switch {
		case foldEq(t, "close"):
			rq.close = true
		case foldEq(t, "keep-alive"):
			keepAlive = true
		case foldEq(t, "upgrade"):
			upgrade = true
		}
	}
	if rq.minor == 0 && !keepAlive {
		rq.close = true
	}
	if !upgrade {
		rq.upgrade = nil
	}
	switch {
	case te > 0:
		// RFC 9112 6.1: Transfer-Encoding overrides Content-Length; in HTTP/1.0 the
		// framing is faulty.
		if rq.minor == 0 {
			return fmt.Errorf("%w: Transfer-Encoding in HTTP/1.0", errMalformed)
		}
		rq.mode, rq.length = bodyChunked, -1
	case rq.length > 0:
		rq.mode = bodyLength
	}

	switch {
	case hosts > 1:
		return fmt.Errorf("%w: more than one Host", errMalformed)
	case hosts == 0 && rq.minor > 0:
		return fmt.Errorf("%w: no Host", errMalformed)
	case !validHost(rq.host):
		return fmt.Errorf("%w: Host %q", errMalformed, clip(rq.host))
	}
	// The request target: origin-form (the usual), asterisk-form, absolute-form
	// (whose authority is the Host) or, for CONNECT, authority-form.
	switch {
	case len(rq.target) > 0 && rq.target[0] == '/', string(rq.target) == "*":
	case rq.method == http.MethodConnect:
		rq.host = rq.target
	default:
		u, err := url.ParseRequestURI(string(rq.target))
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return fmt.Errorf("%w: request target %q", errMalformed, clip(rq.target))
		}
		rq.host, rq.target = []byte(u.Host), []byte(u.RequestURI())
	}
	return nil
}

// errTransferEncoding: a request body coded otherwise than chunked (501).
var errTransferEncoding = fmt.Errorf("%w: unsupported Transfer-Encoding", errMalformed)

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func internMethod(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	case "CONNECT":
		return "CONNECT"
	}
	return string(m)
}

// validHost: httpguts.ValidHostHeader, on bytes.
func validHost(h []byte) bool {
	for _, c := range h {
		if !validHostByte[c] {
			return false
		}
	}
	return true
}

var validHostByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range []byte("!$%&()*+,-.:;=[]'_~") {
		t[c] = true
	}
	return t
}()

// writeRequestHead is downstream's: the request line and header fields for the
// backend.
func (h *h1conn) writeRequestHead(bw *bufio.Writer, hasBody, chunked bool) {
	rq := &h.req
	bw.WriteString(rq.method)
	bw.WriteByte(' ')
	bw.Write(rq.target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.Write(rq.host)
	bw.WriteString("\r\n")
	cookies := 0
	for _, f := range rq.fields {
		switch classify(f.name) {
		case hHost, hContentLength, hExpect, hConnection, hHop, hTE, hTrailer, hTransferEncoding, hUpgrade, hForwarding:
			// Host and the framing are the proxy's; Expect: 100-continue is answered
			// by the proxy.
			continue
		case hCookie:
			if rq.cookies > 1 { // joined into one field (as HTTP/2 ones are)
				if cookies++; cookies == 1 {
					h.writeCookies(bw)
				}
				continue
			}
		}
		if len(rq.conn) > 0 && named(f.name, rq.conn) {
			continue
		}
		writeField(bw, f.name, f.value)
	}
	if rq.trailers {
		bw.WriteString("Te: trailers\r\n")
	}
	if h.clientIP != "" {
		bw.WriteString("X-Forwarded-For: ")
		bw.WriteString(h.clientIP)
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-Host: ")
	bw.Write(rq.host)
	bw.WriteString("\r\nX-Forwarded-Proto: https\r\n")
	switch {
	case chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case hasBody:
		writeLength(bw, rq.length)
	case rq.method == "POST" || rq.method == "PUT" || rq.method == "PATCH":
		bw.WriteString("Content-Length: 0\r\n")
	}
	if rq.upgrade != nil {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.Write(rq.upgrade)
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
}

func (h *h1conn) writeCookies(bw *bufio.Writer) {
	bw.WriteString("Cookie: ")
	n := 0
	for _, f := range h.req.fields {
		if classify(f.name) == hCookie {
			if n++; n > 1 {
				bw.WriteString("; ")
			}
			bw.Write(f.value)
		}
	}
	bw.WriteString("\r\n")
}

func writeField(bw *bufio.Writer, name, value []byte) {
	bw.Write(name)
	bw.WriteString(": ")
	bw.Write(value)
	bw.WriteString("\r\n")
}

// sendBody is downstream's: the request body, from the connection's reader to the
// backend, flushed as it comes.
func (h *h1conn) sendBody(bw *bufio.Writer, chunked bool) error {
	body := &h.req.body
	for {
		b, err := body.next()
		if len(b) > 0 {
			if chunked {
				writeChunkHead(bw, len(b))
			}
			if _, werr := bw.Write(b); werr != nil {
				return werr
			}
			if chunked {
				bw.WriteString("\r\n")
			}
			body.consume(len(b))
			// Send what came at once (the backend may be streaming it back), unless
			// more is at hand.
			if h.br.Buffered() == 0 {
				if ferr := bw.Flush(); ferr != nil {
					return ferr
				}
			}
		}
		if err != nil {
			if err != io.EOF {
				return fmt.Errorf("%w: %w", errClientBody, err)
			}
			break
		}
	}
	if chunked {
		bw.WriteString("0\r\n")
		for _, f := range body.trailers {
			if classify(f.name) == hOther {
				writeField(bw, f.name, f.value)
			}
		}
		bw.WriteString("\r\n")
	}
	return bw.Flush()
}

// writeChunkHead writes a chunk's size line.
func writeChunkHead(bw *bufio.Writer, n int) {
	b := strconv.AppendInt(bw.AvailableBuffer(), int64(n), 16)
	bw.Write(append(b, '\r', '\n'))
}
