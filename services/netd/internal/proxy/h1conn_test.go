package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The HTTP/1.1 connections the proxy serves itself, on the wire.

// rawConn opens a TLS connection speaking http/1.1 to the proxy.
func rawConn(t *testing.T, ca *testCA, addr, name string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, RootCAs: ca.pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading a response body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

// h1Backend serves what the tests below ask of it, by path.
func h1Backend(t *testing.T) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Cookie", r.Header.Get("Cookie"))
			w.Header().Set("X-Private", r.Header.Get("X-Private"))
			w.Header().Set("X-Uri", r.RequestURI)
			w.Header().Set("X-Trailer", r.Trailer.Get("X-Sum"))
			fmt.Fprintf(w, "%s %s %d:%s", r.Method, r.Host, r.ContentLength, b)
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Sum", "42")
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			io.WriteString(w, "after hints")
		case "/not-modified":
			w.WriteHeader(http.StatusNotModified)
		case "/no-type":
			w.Header()["Content-Type"] = nil
			io.WriteString(w, "<html>not sniffed</html>")
		default:
			io.WriteString(w, "hello")
		}
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

func TestH1Wire(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	_ = p.SetRoute("a.test", Route{Backend: h1Backend(t), Kind: KindHTTP})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))

	t.Run("pipelined requests answered in order", func(t *testing.T) {
		c, br := rawConn(t, ca, p.httpsAddr, "a.test")
		io.WriteString(c, "GET /echo?n=1 HTTP/1.1\r\nHost: a.test\r\n\r\n"+
			"POST /echo?n=2 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc"+
			"HEAD /echo?n=3 HTTP/1.1\r\nHost: a.test\r\n\r\n"+
			"GET /echo?n=4 HTTP/1.1\r\nHost: a.test\r\n\r\n")
		for i, want := range []string{"GET a.test 0:", "POST a.test 3:abc", "", "GET a.test 0:"} {
			method := "GET"
			if i == 2 {
				method = "HEAD"
			}
			resp, body := readResp(t, br, method)
			if resp.StatusCode != 200 || body != want || resp.Header.Get("X-Uri") != fmt.Sprintf("/echo?n=%d", i+1) {
				t.Fatalf("response %d: %d %q (uri %q), want %q", i+1, resp.StatusCode, body, resp.Header.Get("X-Uri"), want)
			}
			if i == 2 && resp.ContentLength != int64(len("HEAD a.test 0:")) {
				t.Errorf("HEAD: Content-Length %d, want GET's", resp.ContentLength)
			}
		}
	})

	t.Run("chunked response with trailers", func(t *testing.T) {
		c, br := rawConn(t, ca, p.httpsAddr, "a.test")
		io.WriteString(c, "GET /chunked HTTP/1.1\r\nHost: a.test\r\nTE: trailers\r\n\r\n")
		resp, body := readResp(t, br, "GET")
		if body != "part0;part1;part2;" || len(resp.TransferEncoding) == 0 || resp.Trailer.Get("X-Sum") != "42" {
			t.Fatalf("body %q, transfer encoding %v, trailer %v", body, resp.TransferEncoding, resp.Trailer)
		}
		// The connection is still good.
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
		if _, body := readResp(t, br, "GET"); body != "hello" {
			t.Fatalf("next request: %q", body)
		}
	})

	t.Run("HTTP/1.0 gets the body until the close", func(t *testing.T) {
		c, br := rawConn(t, ca, p.httpsAddr, "a.test")
		io.WriteString(c, "GET /chunked HTTP/1.0\r\nHost: a.test\r\n\r\n")
		resp, body := readResp(t, br, "GET")
		if body != "part0;part1;part2;" || len(resp.TransferEncoding) != 0 || !resp.Close {
			t.Fatalf("body %q, transfer encoding %v, close %v", body, resp.TransferEncoding, resp.Close)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("after the response: %v, want EOF", err)
		}
	})

	t.Run("HTTP/1.0 keep-alive", func(t *testing.T) {
		c, br := rawConn(t, ca, p.httpsAddr, "a.test")
		for range 2 {
			io.WriteString(c, "GET / HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n")
			resp, body := readResp(t, br, "GET")
			if body != "hello" || resp.Close || resp.Header.Get("Connection") != "keep-alive" {
				t.Fatalf("body %q close %v Connection %q", body, resp.Close, resp.Header.Get("Connection"))
			}
		}
	})

	t.Run("expect 100-continue", func(t *testing.T) {
		c, br := rawConn(t, ca, p.httpsAddr, "a.test")
		io.WriteString(c, "PUT /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 100 {
			t.Fatalf("interim response: %v %v", resp, err)
		}
		io.WriteString(c, "hello")
		if resp, body := readResp(t, br, "PUT"); resp.StatusCode != 200 || body != "PUT a.test 5:hello" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		io.WriteString(c, "PUT /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nExpect: something-else\r\n\r\nhello")
		if resp, _ := readResp(t, br, "PUT"); resp.StatusCode != http.StatusExpectationFailed {
			t.Fatalf("unknown expectation: %d", resp.StatusCode)
		}
	})

	t.Run("chunked request body with trailers", func(t *testing.T) {
		c, br := rawConn(t, ca, p.httpsAddr, "a.test")
		io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"+
			"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n")
		resp, body := readResp(t, br, "POST")
		if body != "POST a.test -1:abcde" || resp.Header.Get("X-Trailer") != "5" {
			t.Fatalf("%q, trailer %q", body, resp.Header.Get("X-Trailer"))
		}
	})

	t.Run("hop-by-hop fields, cookies, absolute target", func(t *testing.T) {
		c, br := rawConn(t, ca, p.httpsAddr, "a.test")
		io.WriteString(c, "GET https://a.test/echo?x=1 HTTP/1.1\r\nHost: other.test\r\nConnection: X-Private\r\nX-Private: secret\r\n"+
			"Cookie: a=1\r\nCookie: b=2\r\n\r\n")
		resp, body := readResp(t, br, "GET")
		if body != "GET a.test 0:" || resp.Header.Get("X-Private") != "" || resp.Header.Get("X-Cookie") != "a=1; b=2" ||
			resp.Header.Get("X-Uri") != "/echo?x=1" {
			t.Fatalf("%q private %q cookie %q uri %q", body, resp.Header.Get("X-Private"), resp.Header.Get("X-Cookie"), resp.Header.Get("X-Uri"))
		}
	})

	t.Run("early hints, 304, no sniffing", func(t *testing.T) {
		c, br := rawConn(t, ca, p.httpsAddr, "a.test")
		io.WriteString(c, "GET /hints HTTP/1.1\r\nHost: a.test\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 103 || resp.Header.Get("Link") == "" {
			t.Fatalf("early hints: %v %v", resp, err)
		}
		if _, body := readResp(t, br, "GET"); body != "after hints" {
			t.Fatalf("after the hints: %q", body)
		}
		io.WriteString(c, "GET /not-modified HTTP/1.1\r\nHost: a.test\r\n\r\n")
		if resp, body := readResp(t, br, "GET"); resp.StatusCode != 304 || body != "" {
			t.Fatalf("304: %d %q", resp.StatusCode, body)
		}
		io.WriteString(c, "GET /no-type HTTP/1.1\r\nHost: a.test\r\n\r\n")
		if resp, _ := readResp(t, br, "GET"); resp.Header.Get("Content-Type") != "" {
			t.Fatalf("Content-Type %q for a response that had none", resp.Header.Get("Content-Type"))
		}
	})

	t.Run("malformed requests", func(t *testing.T) {
		for _, tc := range []struct {
			req    string
			status int
		}{
			{"GET / HTTP/1.1\r\n\r\n", 400},                                       // no Host
			{"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400},       // two
			{"GET / HTTP/1.1\r\nHost: a.test\r\nBad Name: x\r\n\r\n", 400},        // not a token
			{"GET / HTTP/1.1\r\nHost: a.test\r\n folded\r\n\r\n", 400},            // obs-fold
			{"GET / HTTP/1.1\r\nHost: a.test\r\nX: a\x00b\r\n\r\n", 400},          // control character
			{"GET / HTTP/2.0\r\nHost: a.test\r\n\r\n", 505},                       // version
			{"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1x\r\n\r\n", 400}, // length
			{"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
			{"POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
			{"GET /a b HTTP/1.1\r\nHost: a.test\r\n\r\n", 400},
		} {
			c, br := rawConn(t, ca, p.httpsAddr, "a.test")
			io.WriteString(c, tc.req)
			resp, _ := readResp(t, br, "GET")
			if resp.StatusCode != tc.status || !resp.Close {
				t.Errorf("%q: %d close=%v, want %d and a close", tc.req, resp.StatusCode, resp.Close, tc.status)
			}
		}
	})
}

// A client that goes away while the backend thinks: the backend's connection is
// closed (its request's context ends).
func TestH1ClientGone(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	canceled := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			close(canceled)
		case <-time.After(10 * time.Second):
		}
	}))
	defer backend.Close()
	_ = p.SetRoute("a.test", Route{Backend: backend.Listener.Addr().String(), Kind: KindHTTP})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))
	c, _ := rawConn(t, ca, p.httpsAddr, "a.test")
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a.test\r\n\r\n")
	time.Sleep(100 * time.Millisecond) // past watchAfter
	c.Close()
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's request went on 5 s after the client went away")
	}
}

// Shutdown closes idle HTTP/1.1 connections at once and lets a request being served
// finish, then closes its connection.
func TestH1Shutdown(t *testing.T) {
	ca := newTestCA(t)
	p := New(Config{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.ServeTLS(l)
	var started atomic.Int32
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started.Add(1)
			<-release
		}
		io.WriteString(w, "done")
	}))
	defer backend.Close()
	_ = p.SetRoute("a.test", Route{Backend: backend.Listener.Addr().String(), Kind: KindHTTP})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))
	idle, idleBR := rawConn(t, ca, l.Addr().String(), "a.test")
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
	readResp(t, idleBR, "GET")
	busy, busyBR := rawConn(t, ca, l.Addr().String(), "a.test")
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a.test\r\n\r\n")
	for started.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- p.Shutdown(ctx)
	}()
	if _, err := idleBR.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection after Shutdown: %v, want EOF", err)
	}
	close(release)
	resp, body := readResp(t, busyBR, "GET")
	if body != "done" || !strings.EqualFold(resp.Header.Get("Connection"), "") && !resp.Close {
		t.Fatalf("the request being served: %q", body)
	}
	if _, err := busyBR.ReadByte(); err != io.EOF {
		t.Fatalf("busy connection after its response: %v, want EOF", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// A connection idle for IdleTimeout is closed.
func TestH1IdleTimeout(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{IdleTimeout: 300 * time.Millisecond})
	_ = p.SetRoute("a.test", Route{Backend: h1Backend(t), Kind: KindHTTP})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))
	c, br := rawConn(t, ca, p.httpsAddr, "a.test")
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
	readResp(t, br, "GET")
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
}

// A request that comes while the one before is slow to answer (its watch for the
// client going away reads it) is served next.
func TestH1PipelinedWhileWatched(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(150 * time.Millisecond)
		}
		io.WriteString(w, r.URL.Path)
	}))
	defer backend.Close()
	_ = p.SetRoute("a.test", Route{Backend: backend.Listener.Addr().String(), Kind: KindHTTP})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))
	c, br := rawConn(t, ca, p.httpsAddr, "a.test")
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a.test\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // past watchAfter
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: a.test\r\n\r\n")
	for _, want := range []string{"/slow", "/next"} {
		if _, body := readResp(t, br, "GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
}
