package supervisor

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"hearth.dev/services/guestd/internal/leakcheck"
)

// 1,000 ready checks of each kind against real loopback servers (and real processes for
// exec) leave the goroutines, descriptors and children as they found them.
func TestProbesLeakNothing(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ready":
			fmt.Fprintln(w, "ready")
		case "/empty": // a body read to its end at once: the connection could be kept
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "no such check", http.StatusNotFound)
		}
	})
	plain, tls := httptest.NewServer(ok), httptest.NewTLSServer(ok)
	defer plain.Close()
	defer tls.Close()
	port := func(s *httptest.Server) string {
		u, _ := url.Parse(s.URL)
		return u.Port()
	}
	const n = 1000
	for _, tc := range []struct {
		name  string
		ready string
		want  string // in each check's message
	}{
		{"http", "{http: {port: " + port(plain) + ", path: /ready}}", "200 OK"},
		{"http empty", "{http: {port: " + port(plain) + ", path: /empty}}", "204 No Content"},
		{"https", "{http: {port: " + port(tls) + ", path: /ready, https: true}}", "200 OK"},
		{"https empty", "{http: {port: " + port(tls) + ", path: /empty, https: true}}", "204 No Content"},
		{"http failing", "{http: {port: " + port(plain) + ", path: /missing}}", "404 Not Found"},
		{"tcp", "{tcp: " + port(plain) + "}", "answers"},
		{"exec", `{exec: ["true"]}`, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, header+"daemons:\n  app: {image: i, command: [\"exec sleep 100\"], ready: "+tc.ready+"}\n")
			j := f.s.jobs["app"]
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			base := leakcheck.Take(t)
			start := time.Now()
			for i := range n {
				r := f.s.check(ctx, j)
				if !strings.Contains(r.msg, tc.want) {
					t.Fatalf("check %d: %+v, want %q", i, r, tc.want)
				}
			}
			after := leakcheck.Settle(t, base, 5*time.Second)
			t.Logf("%d checks in %v; %v before, %v after", n, time.Since(start).Round(time.Millisecond), base, after)
		})
	}
}

func TestNextWait(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name     string
		tries    int
		passed   bool
		interval time.Duration
		want     time.Duration
	}{
		{"first check failed", 1, false, time.Second, ms},
		{"quick tries", 10, false, time.Second, ms},
		{"then doubles", 11, false, time.Second, 2 * ms},
		{"and doubles", 12, false, time.Second, 4 * ms},
		{"doubling stops at the interval", 21, false, time.Second, time.Second},
		{"far on: the interval", 1000, false, time.Second, time.Second},
		{"passed: the interval", 3, true, time.Second, time.Second},
		{"failing after a pass: still the interval", 40, true, time.Second, time.Second},
		{"interval shorter than the quick retry", 1, false, ms / 2, ms / 2},
		{"not ready yet: a long interval does not slow the start", 11, false, 30 * time.Second, 2 * ms},
		{"not ready yet: polled every second at most", 1000, false, 30 * time.Second, time.Second},
		{"ready once: the long interval", 3, true, 30 * time.Second, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextWait(tt.tries, tt.passed, tt.interval); got != tt.want {
				t.Errorf("nextWait(%d, passed=%v, %v) = %v, want %v", tt.tries, tt.passed, tt.interval, got, tt.want)
			}
		})
	}
}
