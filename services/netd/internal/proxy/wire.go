package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
)

// HTTP/1.1 heads as they come off the wire (RFC 9112): read into a buffer of their own
// and parsed in place, without maps, for the HTTP/1.1 connections this package serves
// itself and for every backend response.

// field is one header field of a parsed head: slices of the head's buffer.
type field struct{ name, value []byte }

// hkind is what a header field is to the proxy.
type hkind uint8

const (
	hOther hkind = iota
	hHost
	hConnection
	hContentLength
	hTransferEncoding
	hExpect
	hUpgrade
	hTE
	hTrailer
	hCookie
	hContentType
	hDate
	hHop        // Keep-Alive, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization
	hForwarding // Forwarded, X-Forwarded-For, -Host, -Proto: the client's claims
)

// classify says what a header name (a token) is.
func classify(name []byte) hkind {
	switch len(name) {
	case 2:
		if foldEq(name, "te") {
			return hTE
		}
	case 4:
		switch {
		case foldEq(name, "host"):
			return hHost
		case foldEq(name, "date"):
			return hDate
		}
	case 6:
		switch {
		case foldEq(name, "expect"):
			return hExpect
		case foldEq(name, "cookie"):
			return hCookie
		}
	case 7:
		switch {
		case foldEq(name, "upgrade"):
			return hUpgrade
		case foldEq(name, "trailer"):
			return hTrailer
		}
	case 9:
		if foldEq(name, "forwarded") {
			return hForwarding
		}
	case 10:
		switch {
		case foldEq(name, "connection"):
			return hConnection
		case foldEq(name, "keep-alive"):
			return hHop
		}
	case 12:
		if foldEq(name, "content-type") {
			return hContentType
		}
	case 14:
		if foldEq(name, "content-length") {
			return hContentLength
		}
	case 15:
		if foldEq(name, "x-forwarded-for") {
			return hForwarding
		}
	case 16:
		switch {
		case foldEq(name, "x-forwarded-host"):
			return hForwarding
		case foldEq(name, "proxy-connection"):
			return hHop
		}
	case 17:
		switch {
		case foldEq(name, "transfer-encoding"):
			return hTransferEncoding
		case foldEq(name, "x-forwarded-proto"):
			return hForwarding
		}
	case 18:
		if foldEq(name, "proxy-authenticate") {
			return hHop
		}
	case 19:
		if foldEq(name, "proxy-authorization") {
			return hHop
		}
	}
	return hOther
}

// foldEq reports whether b equals lower (lower case ASCII) ignoring ASCII case.
func foldEq(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// foldEqBytes reports whether a and b are equal ignoring ASCII case.
func foldEqBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// validValue reports whether a header value has no control characters but tabs.
func validValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// trimOWS drops spaces and tabs at both ends.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// hasTokenBytes reports whether a comma-separated header value has token (ASCII case
// ignored).
func hasTokenBytes(v []byte, token string) bool {
	for len(v) > 0 {
		var f []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			f, v = v[:i], v[i+1:]
		} else {
			f, v = v, nil
		}
		if foldEq(trimOWS(f), token) {
			return true
		}
	}
	return false
}

// parseLength parses a Content-Length value: decimal digits only.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

var (
	// errHeadTooLarge: a head went over its cap.
	errHeadTooLarge = errors.New("the head is too large")
	// errMalformed: a head or a chunked body does not follow HTTP/1.1.
	errMalformed = errors.New("malformed HTTP/1.1")
)

// readHead reads a head, a start line and header lines up to an empty line, from br
// into buf[:0], at most max bytes; it returns the head without the empty line. Lines
// may end in LF or CRLF.
func readHead(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	buf = buf[:0]
	start := 0 // of the line being read
	for {
		line, err := br.ReadSlice('\n')
		if len(buf)+len(line) > max {
			return buf, errHeadTooLarge
		}
		buf = append(buf, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return buf, err
		}
		if n := len(buf) - start; n == 1 || n == 2 && buf[start] == '\r' {
			return buf[:start], nil
		}
		start = len(buf)
	}
}

// nextLine returns the first line of head without its line end, and the rest.
func nextLine(head []byte) (line, rest []byte) {
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		line, rest = head, nil
	} else {
		line, rest = head[:i], head[i+1:]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// parseFields parses header lines into fields (appended to fs[:0]): names are
// tokens, values have no control characters; no line folding.
func parseFields(lines []byte, fs []field) ([]field, error) {
	fs = fs[:0]
	for len(lines) > 0 {
		var line []byte
		line, lines = nextLine(lines)
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return fs, fmt.Errorf("%w: header line %q", errMalformed, clip(line))
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !isToken(name) || !validValue(value) {
			return fs, fmt.Errorf("%w: header line %q", errMalformed, clip(line))
		}
		fs = append(fs, field{name, value})
	}
	return fs, nil
}

// clip shortens what goes into an error message.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// connTokens returns the header names listed in a head's Connection fields (appended
// to dst[:0]): those fields are hop-by-hop too.
func connTokens(fs []field, dst [][]byte) [][]byte {
	dst = dst[:0]
	for _, f := range fs {
		if classify(f.name) != hConnection {
			continue
		}
		dst = appendTokens(dst, f.value)
	}
	return dst
}

// named reports whether name is one of names (ASCII case ignored).
func named(name []byte, names [][]byte) bool {
	for _, n := range names {
		if foldEqBytes(name, n) {
			return true
		}
	}
	return false
}

// appendUint appends n in decimal.
func appendUint(b []byte, n uint64) []byte {
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(b, d[i:]...)
}
