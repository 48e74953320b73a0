package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// BenchmarkProxy: HTTPS GETs with keep-alive of a 1 KiB and a 1 MiB body, straight from
// a Go backend serving TLS itself ("direct") and through the proxy to the same backend
// over plain HTTP, by HTTP/1.1 and HTTP/2. bench/proxy.sh runs the comparison with nginx.
func BenchmarkProxy(b *testing.B) {
	ca := newTestCA(b)
	cert := ca.leaf(b, "bench.test")
	bodies := map[string][]byte{"/1k": bytes.Repeat([]byte("a"), 1<<10), "/1m": bytes.Repeat([]byte("b"), 1<<20)}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(body)
	})
	plain := httptest.NewServer(handler)
	defer plain.Close()
	direct := httptest.NewUnstartedServer(handler)
	direct.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	direct.EnableHTTP2 = true
	direct.StartTLS()
	defer direct.Close()

	p := startProxy(b, Config{})
	_ = p.SetRoute("bench.test", Route{Backend: plain.Listener.Addr().String(), Kind: KindHTTP})
	_ = p.Certs().Set("bench.test", cert)

	for _, size := range []struct{ name, path string }{{"1KiB", "/1k"}, {"1MiB", "/1m"}} {
		for _, target := range []struct {
			name, addr string
			h2         bool
		}{
			{"direct", direct.Listener.Addr().String(), false},
			{"proxy", p.httpsAddr, false},
			{"direct-h2", direct.Listener.Addr().String(), true},
			{"proxy-h2", p.httpsAddr, true},
		} {
			b.Run(size.name+"/"+target.name, func(b *testing.B) {
				c := client(ca, target.addr, target.h2)
				defer c.CloseIdleConnections()
				c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
				url := "https://bench.test" + size.path
				b.SetBytes(int64(len(bodies[size.path])))
				b.SetParallelism(4)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						resp, err := c.Get(url)
						if err != nil {
							b.Error(err)
							return
						}
						n, _ := io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 || n != int64(len(bodies[size.path])) {
							b.Errorf("status %d, %d bytes", resp.StatusCode, n)
							return
						}
					}
				})
			})
		}
	}
}

// TestBenchServe is the proxy process of bench/proxy.sh: with HEARTH_PROXY_BENCH_LISTEN
// set, it serves HTTPS there for HEARTH_PROXY_BENCH_NAME, with the PEM certificate and
// key in HEARTH_PROXY_BENCH_CERT and _KEY, routed to the plain HTTP backend at
// HEARTH_PROXY_BENCH_BACKEND, until SIGTERM or SIGINT.
func TestBenchServe(t *testing.T) {
	listen := os.Getenv("HEARTH_PROXY_BENCH_LISTEN")
	if listen == "" {
		t.Skip("the proxy process of bench/proxy.sh (HEARTH_PROXY_BENCH_LISTEN unset)")
	}
	cert, err := tls.LoadX509KeyPair(os.Getenv("HEARTH_PROXY_BENCH_CERT"), os.Getenv("HEARTH_PROXY_BENCH_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	name := os.Getenv("HEARTH_PROXY_BENCH_NAME")
	p := New(Config{})
	// HEARTH_PROXY_BENCH_KIND=passthrough: relay the TLS connections unopened (the cost of
	// one more hop, with no TLS or HTTP work, for the bench's floor).
	kind := KindHTTP
	if os.Getenv("HEARTH_PROXY_BENCH_KIND") == "passthrough" {
		kind = KindPassthrough
	}
	if err := p.SetRoute(name, Route{Backend: os.Getenv("HEARTH_PROXY_BENCH_BACKEND"), Kind: kind}); err != nil {
		t.Fatal(err)
	}
	if err := p.Certs().Set(name, &cert); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fmt.Fprintf(os.Stderr, "proxy serving https on %s\n", l.Addr())
	if err := p.Serve(ctx, l, nil, time.Second); err != nil {
		t.Fatal(err)
	}
}
