package proxy

import (
	"bytes"
	"fmt"
)

// respHead is a backend's response head, parsed in place (its slices point into the
// backend connection's head buffer).
type respHead struct {
	minor  byte   // HTTP/1.<minor>
	code   int    // status
	status []byte // the three digits
	reason []byte
	fields []field
	conn   [][]byte // names listed in Connection: hop-by-hop

	mode        bodyMode
	length      int64 // bodyLength's; -1 otherwise
	lengthField bool  // a Content-Length field came (kept as is on bodiless answers)
	closes      bool  // the backend closes the connection after this response
	hasDate     bool
	hasType     bool
	eventStream bool
	trailers    [][]byte // the names declared in Trailer
	upgrade     []byte
}

// parseResponse parses a response head (status line and fields) for a request with
// method; bodiless: the response has no body whatever its fields say (HEAD, 1xx, 204,
// 304).
func parseResponse(head []byte, method string, rh *respHead) error {
	line, rest := nextLine(head)
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[7] < '0' || line[7] > '9' || line[8] != ' ' ||
		len(line) > 12 && line[12] != ' ' {
		return fmt.Errorf("%w: status line %q", errMalformed, clip(line))
	}
	rh.minor = line[7] - '0'
	rh.status = line[9:12]
	rh.code = 0
	for _, c := range rh.status {
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: status line %q", errMalformed, clip(line))
		}
		rh.code = rh.code*10 + int(c-'0')
	}
	if rh.code < 100 {
		return fmt.Errorf("%w: status %d", errMalformed, rh.code)
	}
	rh.reason = nil
	if len(line) > 13 {
		rh.reason = line[13:]
		if !validValue(rh.reason) {
			return fmt.Errorf("%w: status line %q", errMalformed, clip(line))
		}
	}
	var err error
	if rh.fields, err = parseFields(rest, rh.fields); err != nil {
		return err
	}
	rh.conn = connTokens(rh.fields, rh.conn)
	rh.length, rh.lengthField = -1, false
	rh.hasDate, rh.hasType, rh.eventStream = false, false, false
	rh.trailers = rh.trailers[:0]
	rh.upgrade = nil
	chunked, te := false, false
	for _, f := range rh.fields {
		switch classify(f.name) {
		case hContentLength:
			n, ok := parseLength(f.value)
			if !ok || rh.lengthField && n != rh.length {
				return fmt.Errorf("%w: Content-Length %q", errMalformed, clip(f.value))
			}
			rh.length, rh.lengthField = n, true
		case hTransferEncoding:
			if te || !foldEq(f.value, "chunked") {
				return fmt.Errorf("%w: unsupported Transfer-Encoding %q", errMalformed, clip(f.value))
			}
			te, chunked = true, true
		case hDate:
			rh.hasDate = true
		case hContentType:
			rh.hasType = true
			mt := f.value
			if i := bytes.IndexByte(mt, ';'); i >= 0 {
				mt = mt[:i]
			}
			rh.eventStream = foldEq(trimOWS(mt), "text/event-stream")
		case hTrailer:
			rh.trailers = appendTokens(rh.trailers, f.value)
		case hUpgrade:
			rh.upgrade = f.value
		}
	}
	closeTok, keepAlive := false, false
	for _, t := range rh.conn {
		switch {
		case foldEq(t, "close"):
			closeTok = true
		case foldEq(t, "keep-alive"):
			keepAlive = true
		}
	}
	rh.closes = closeTok || rh.minor == 0 && !keepAlive
	switch {
	case method == "HEAD" || rh.code < 200 || rh.code == 204 || rh.code == 304:
		rh.mode = bodyNone
	case chunked:
		rh.mode, rh.length = bodyChunked, -1
	case rh.lengthField:
		rh.mode = bodyLength
	default:
		rh.mode = bodyClose
		rh.closes = true
	}
	return nil
}

// appendTokens appends the tokens of a comma-separated value.
func appendTokens(dst [][]byte, v []byte) [][]byte {
	for len(v) > 0 {
		var t []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			t, v = v[:i], v[i+1:]
		} else {
			t, v = v, nil
		}
		if t = trimOWS(t); len(t) > 0 {
			dst = append(dst, t)
		}
	}
	return dst
}

// forwarded reports whether a response field goes on to the client: not hop-by-hop
// (nor named in Connection), and not one the proxy writes itself.
func (rh *respHead) forwarded(f field) bool {
	switch classify(f.name) {
	case hConnection, hHop, hTE, hTrailer, hTransferEncoding, hUpgrade, hContentLength:
		return false
	}
	return len(rh.conn) == 0 || !named(f.name, rh.conn)
}

// declared reports whether name is a trailer the response declared.
func (rh *respHead) declared(name []byte) bool { return named(name, rh.trailers) }
