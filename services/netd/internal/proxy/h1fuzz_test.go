package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
)

// The proxy parses HTTP/1.1 itself. A request it forwards must be framed as any other
// reader of HTTP/1.1 frames it, or a client could smuggle a second request past it in
// the first one's body. These fuzz targets hold our parser against net/http's.

// FuzzH1RequestHead: a head we accept is one net/http accepts too, with the same
// method, host and body framing (length or chunked).
func FuzzH1RequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a.local\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n folded: x\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET http://b.local/p?q HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		head, err := readHead(bufio.NewReader(bytes.NewReader(data)), nil, 8<<10)
		if err != nil {
			return
		}
		var rq h1request
		if rq.parse(head) != nil {
			return
		}
		// readHead leaves the blank line that ends the head out.
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(append(head, "\r\n"...))))
		if err != nil {
			t.Fatalf("we accept a head net/http refuses (%v):\n%q", err, head)
		}
		if req.Method != rq.method {
			t.Fatalf("method %q, net/http %q:\n%q", rq.method, req.Method, head)
		}
		chunked := len(req.TransferEncoding) > 0
		switch {
		case chunked != (rq.mode == bodyChunked):
			t.Fatalf("chunked %v, net/http %v:\n%q", rq.mode == bodyChunked, chunked, head)
		case !chunked && req.ContentLength != rq.length:
			t.Fatalf("Content-Length %d, net/http %d:\n%q", rq.length, req.ContentLength, head)
		}
		if rq.method != http.MethodConnect && !strings.EqualFold(req.Host, string(rq.host)) {
			t.Fatalf("host %q, net/http %q:\n%q", rq.host, req.Host, head)
		}
	})
}

// FuzzH1ChunkedBody: a chunked body we read to its end is the body net/http's chunked
// reader reads, and ends where it ends.
func FuzzH1ChunkedBody(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
		"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"5\nhello\n0\n\n",
		"ffffffffffffffff\r\n",
		"-1\r\n",
		"5 \r\nhello\r\n0\r\n\r\n",
		"0x5\r\nhello\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		var b bodyReader
		b.reset(br, bodyChunked, -1, 4<<10)
		var ours []byte
		for {
			p, err := b.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
			ours = append(ours, p...)
			b.consume(len(p))
		}
		rest, _ := io.ReadAll(br)
		theirsR := bufio.NewReader(bytes.NewReader(data))
		theirs, err := io.ReadAll(httputil.NewChunkedReader(theirsR))
		if err != nil {
			t.Fatalf("we read a chunked body net/http refuses (%v):\n%q", err, data)
		}
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("body %q, net/http %q:\n%q", ours, theirs, data)
		}
		// net/http's chunked reader leaves the trailer section unread: skip it there.
		if _, err := readHead(theirsR, nil, 8<<10); err != nil && len(rest) > 0 {
			t.Fatalf("trailers: %v:\n%q", err, data)
		}
		theirRest, _ := io.ReadAll(theirsR)
		if !bytes.Equal(rest, theirRest) {
			t.Fatalf("the body ends before %q, net/http's before %q:\n%q", rest, theirRest, data)
		}
	})
}
