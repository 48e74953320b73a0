package supervisor

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestReadStatus(t *testing.T) {
	for _, tc := range []struct {
		answer string
		code   int
		status string
		err    string
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "200 OK", ""},
		{"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n", 302, "302 Found", ""},
		{"HTTP/1.1 204\r\n\r\n", 204, "204", ""},
		{"HTTP/1.1 503 Service Unavailable\n", 503, "503 Service Unavailable", ""},
		{"HTTP/1.1 200 OK", 0, "", "closed before an answer"},
		{"", 0, "", "closed before an answer"},
		{"SSH-2.0-OpenSSH_9.2\r\n", 0, "", "not an HTTP/1 answer"},
		{"HTTP/2 200\r\n", 0, "", "not an HTTP/1 answer"},
		{"HTTP/1.1 2000 OK\r\n", 0, "", "malformed status line"},
		{"HTTP/1.1 20\r\n", 0, "", "malformed status line"},
		{"HTTP/1.1 abc OK\r\n", 0, "", "malformed status line"},
		{"HTTP/1.1 200 " + strings.Repeat("x", maxStatusLine) + "\r\n", 0, "", "longer than"},
	} {
		code, status, err := readStatus(strings.NewReader(tc.answer))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%.40q: %d %q %v, want an error with %q", tc.answer, code, status, err, tc.err)
			}
			continue
		}
		if err != nil || code != tc.code || status != tc.status {
			t.Errorf("%.40q: %d %q %v, want %d %q", tc.answer, code, status, err, tc.code, tc.status)
		}
	}
}

func TestProbeRequest(t *testing.T) {
	for path, want := range map[string]string{
		"":               "GET / HTTP/1.1\r\n",
		"/":              "GET / HTTP/1.1\r\n",
		"/health?full=1": "GET /health?full=1 HTTP/1.1\r\n",
		"/a b":           "GET /a%20b HTTP/1.1\r\n",
	} {
		req, err := probeRequest("127.0.0.1:80", path)
		if err != nil || !strings.HasPrefix(req, want) || !strings.HasSuffix(req, "\r\nConnection: close\r\n\r\n") {
			t.Errorf("path %q: %q, %v; want it to start with %q", path, req, err, want)
		}
	}
}

// A daemon that accepts and never answers fails the check when its timeout ends, and
// at once when the check is cancelled.
func TestHTTPProbeSilentDaemon(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	req, _ := probeRequest(l.Addr().String(), "/")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if _, _, err := httpProbe(ctx, l.Addr().String(), req, false); err == nil || time.Since(t0) > 5*time.Second {
		t.Errorf("timeout: %v after %v", err, time.Since(t0))
	}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	t0 = time.Now()
	if _, _, err := httpProbe(ctx, l.Addr().String(), req, false); err == nil || time.Since(t0) > 5*time.Second {
		t.Errorf("cancel: %v after %v", err, time.Since(t0))
	}
}

// An HTTP check allocates a few KiB at most: a daemon is checked as often as every
// 100 ms, for as long as it runs, and what a check leaves is what guestd's heap grows
// with between collections (net/http's client left ~15 KiB and two goroutines).
func TestHTTPProbeGarbage(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // a daemon that answers every request the same, without net/http
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var buf [512]byte
			c.Read(buf[:])
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
			c.Close()
		}
	}()
	addr := l.Addr().String()
	req, _ := probeRequest(addr, "/")
	const n, limit = 200, 4 << 10
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		if code, _, err := httpProbe(context.Background(), addr, req, false); err != nil || code != 200 {
			t.Fatalf("check: %d %v", code, err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > limit {
		t.Errorf("an HTTP check allocated %d bytes (with the daemon's side), want at most %d", per, limit)
	}
}
