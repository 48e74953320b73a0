package supervisor

import (
	"context"
	"net"
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
