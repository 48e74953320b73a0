package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// The response side of an h1conn's exchange (downstream's methods).

// beforeBackendRead pushes out the response so far before the exchange waits on the
// backend.
func (h *h1conn) beforeBackendRead() {
	if h.bw != nil && h.bw.Buffered() > 0 {
		_ = h.bw.Flush() // an error sticks: the next write returns it
	}
}

// abortBody ends a wait for the client's body: the read fails at once.
func (h *h1conn) abortBody() { _ = h.c.Conn.SetReadDeadline(time.Unix(1, 0)) }

func (h *h1conn) earlyHints(rh *respHead) error {
	bw := h.writer()
	bw.WriteString("HTTP/1.1 103 Early Hints\r\n")
	for _, f := range rh.fields {
		if rh.forwarded(f) {
			writeField(bw, f.name, f.value)
		}
	}
	bw.WriteString("\r\n")
	return bw.Flush()
}

// responseHead writes the status line, the backend's fields but the hop-by-hop ones,
// and the framing: the backend's length, or chunks (close-delimited for HTTP/1.0
// clients, which then lose the connection).
func (h *h1conn) responseHead(rh *respHead) error {
	bw := h.writer()
	bw.WriteString("HTTP/1.1 ")
	bw.Write(rh.status)
	bw.WriteByte(' ')
	if len(rh.reason) > 0 {
		bw.Write(rh.reason)
	} else {
		bw.WriteString(http.StatusText(rh.code))
	}
	bw.WriteString("\r\n")
	for _, f := range rh.fields {
		if rh.forwarded(f) {
			writeField(bw, f.name, f.value)
		}
	}
	if !rh.hasDate {
		writeDate(bw)
	}
	switch {
	case rh.mode == bodyNone:
		if rh.lengthField && rh.code != 204 { // HEAD, 304: the length of what GET would get
			writeLength(bw, rh.length)
		}
	case rh.mode == bodyLength:
		writeLength(bw, rh.length)
	case h.req.minor == 0:
		h.closeAfter = true
	default:
		h.chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(rh.trailers) > 0 {
			bw.WriteString("Trailer: ")
			for i, t := range rh.trailers {
				if i > 0 {
					bw.WriteString(", ")
				}
				bw.Write(t)
			}
			bw.WriteString("\r\n")
		}
	}
	switch {
	case h.closeAfter:
		bw.WriteString("Connection: close\r\n")
	case h.req.minor == 0:
		bw.WriteString("Connection: keep-alive\r\n")
	}
	_, err := bw.WriteString("\r\n")
	h.wroteHead = true
	return err
}

func (h *h1conn) writeBody(b []byte) error {
	bw := h.bw
	if h.chunked {
		writeChunkHead(bw, len(b))
		bw.Write(b)
		_, err := bw.WriteString("\r\n")
		return err
	}
	_, err := bw.Write(b)
	return err
}

// endBody ends the response, and pushes it out unless the next request is at hand
// or the body's goroutine reads it.
func (h *h1conn) endBody(rh *respHead, trailers []field) error {
	bw := h.bw
	if h.chunked {
		bw.WriteString("0\r\n")
		for _, f := range trailers {
			if rh.declared(f.name) && classify(f.name) == hOther {
				writeField(bw, f.name, f.value)
			}
		}
		bw.WriteString("\r\n")
	}
	if h.closeAfter || h.flushAtEnd {
		return bw.Flush()
	}
	return nil
}

// switchProtocols answers the 101 and then copies bytes both ways until either side
// ends or the proxy closes.
func (h *h1conn) switchProtocols(bc *backendConn, rh *respHead, upgrade string) error {
	defer bc.abandon()
	if upgrade == "" || !foldEqBytes(rh.upgrade, []byte(upgrade)) {
		return fmt.Errorf("%w: the backend switched to %q, asked %q", errBackend, rh.upgrade, upgrade)
	}
	h.hijacked = true
	h.wroteHead = true
	tc := h.tc
	stop := context.AfterFunc(h.p.ctx, func() { tc.Close(); bc.abandon() })
	defer stop()
	_ = h.c.Conn.SetReadDeadline(time.Time{})
	bw := h.writer()
	bw.WriteString("HTTP/1.1 101 ")
	if len(rh.reason) > 0 {
		bw.Write(rh.reason)
	} else {
		bw.WriteString("Switching Protocols")
	}
	bw.WriteString("\r\n")
	for _, f := range rh.fields {
		if rh.forwarded(f) {
			writeField(bw, f.name, f.value)
		}
	}
	bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
	bw.WriteString(upgrade)
	bw.WriteString("\r\n\r\n")
	if err := bw.Flush(); err != nil {
		return nil
	}
	// Bytes already read on either side go first.
	if n := h.br.Buffered(); n > 0 {
		b, _ := h.br.Peek(n)
		if _, err := bc.Conn.Write(b); err != nil {
			return nil
		}
		_, _ = h.br.Discard(n)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(bc.Conn, tc)
		closeWrite(bc.Conn)
	}()
	_, _ = bc.br.WriteTo(tc)
	closeWrite(tc)
	tc.Close()
	bc.abandon()
	<-done
	return nil
}

// reply writes a response of the proxy's own: text, as http.Error's.
func (h *h1conn) reply(code int, msg string, closing bool) {
	bw := h.writer()
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n")
	writeDate(bw)
	writeLength(bw, int64(len(msg)+1))
	if closing {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	if h.req.method != "HEAD" {
		bw.WriteString(msg)
		bw.WriteByte('\n')
	}
}

// writeLength writes a Content-Length field.
func writeLength(bw *bufio.Writer, n int64) {
	bw.WriteString("Content-Length: ")
	bw.Write(appendUint(bw.AvailableBuffer(), uint64(n)))
	bw.WriteString("\r\n")
}

// dateLine caches the Date field of the current second.
var dateLine atomic.Pointer[dateCache]

type dateCache struct {
	sec  int64
	line []byte
}

// writeDate writes a Date field (net/http's servers add one when the handler has not).
func writeDate(bw *bufio.Writer) {
	now := time.Now()
	d := dateLine.Load()
	if d == nil || d.sec != now.Unix() {
		line := append([]byte("Date: "), now.UTC().AppendFormat(nil, http.TimeFormat)...)
		d = &dateCache{sec: now.Unix(), line: append(line, "\r\n"...)}
		dateLine.Store(d)
	}
	bw.Write(d.line)
}
