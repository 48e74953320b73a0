package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"hearth.dev/internal/errdefs"
)

// Two names, two certificates, two backends: each request reaches the backend routed
// for its name, over a handshake with that name's certificate; a request for the other
// name on the same connection goes by its Host.
func TestRoutingBySNIAndHost(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	a, b := echoBackend(t, "A"), echoBackend(t, "B")
	if err := p.SetRoutes(map[string]Route{"a.test": {Backend: a, Kind: KindHTTP}, "B.Test.": {Backend: b, Kind: KindHTTP}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a.test", "b.test"} {
		if err := p.Certs().Set(n, ca.leaf(t, n)); err != nil {
			t.Fatal(err)
		}
	}
	c := client(ca, p.httpsAddr, false)
	for _, tc := range []struct{ url, backend, cert string }{
		{"https://a.test/x?y=1", "A", "a.test"},
		{"https://b.test/", "B", "b.test"},
		{"https://B.TEST./", "B", "b.test"},
	} {
		e, resp := getEcho(t, c, mustRequest(t, "GET", tc.url))
		if e.Backend != tc.backend {
			t.Errorf("%s: reached backend %s, want %s", tc.url, e.Backend, tc.backend)
		}
		if got := resp.TLS.PeerCertificates[0].Subject.CommonName; got != tc.cert {
			t.Errorf("%s: certificate for %s, want %s", tc.url, got, tc.cert)
		}
		if e.Proto != "HTTP/1.1" || e.TLS {
			t.Errorf("%s: backend saw %s tls=%v, want plain HTTP/1.1", tc.url, e.Proto, e.TLS)
		}
	}
	// Host routing: on a.test's connection, a request for b.test.
	req := mustRequest(t, "GET", "https://a.test/by-host")
	req.Host = "b.test"
	e, resp := getEcho(t, c, req)
	if e.Backend != "B" || e.Host != "b.test" || e.Path != "/by-host" {
		t.Errorf("Host b.test on a.test's connection: got %+v, want backend B with Host b.test", e)
	}
	if resp.TLS.ServerName != "a.test" {
		t.Errorf("server name %q", resp.TLS.ServerName)
	}
}

// The routing table changes while the proxy serves: the next request sees the change.
func TestRoutesChangeLive(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	a, b := echoBackend(t, "A"), echoBackend(t, "B")
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))
	c := client(ca, p.httpsAddr, false)
	status := func() int {
		resp, err := c.Get("https://a.test/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != http.StatusNotFound {
		t.Fatalf("no route: status %d, want 404", got)
	}
	if err := p.SetRoute("a.test", Route{Backend: a, Kind: KindHTTP}); err != nil {
		t.Fatal(err)
	}
	if e, _ := getEcho(t, c, mustRequest(t, "GET", "https://a.test/")); e.Backend != "A" {
		t.Fatalf("backend %s, want A", e.Backend)
	}
	if err := p.SetRoute("a.test", Route{Backend: b, Kind: KindHTTP}); err != nil {
		t.Fatal(err)
	}
	if e, _ := getEcho(t, c, mustRequest(t, "GET", "https://a.test/")); e.Backend != "B" {
		t.Fatalf("after the change: backend %s, want B", e.Backend)
	}
	p.DeleteRoute("A.test")
	if got := status(); got != http.StatusNotFound {
		t.Fatalf("deleted route: status %d, want 404", got)
	}
	if n := len(p.Routes()); n != 0 {
		t.Fatalf("%d routes left", n)
	}
}

func TestRouteValidation(t *testing.T) {
	p := New(Config{})
	defer p.Close()
	for _, tc := range []struct {
		name  string
		host  string
		route Route
	}{
		{"empty host", "", Route{Backend: "127.0.0.1:1", Kind: KindHTTP}},
		{"underscore", "a_b.test", Route{Backend: "127.0.0.1:1", Kind: KindHTTP}},
		{"empty label", "a..test", Route{Backend: "127.0.0.1:1", Kind: KindHTTP}},
		{"hyphen first", "-a.test", Route{Backend: "127.0.0.1:1", Kind: KindHTTP}},
		{"port in host", "a.test:443", Route{Backend: "127.0.0.1:1", Kind: KindHTTP}},
		{"long label", strings.Repeat("x", 64) + ".test", Route{Backend: "127.0.0.1:1", Kind: KindHTTP}},
		{"backend name", "a.test", Route{Backend: "localhost:80", Kind: KindHTTP}},
		{"backend no port", "a.test", Route{Backend: "127.0.0.1", Kind: KindHTTP}},
		{"no kind", "a.test", Route{Backend: "127.0.0.1:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.SetRoute(tc.host, tc.route)
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("SetRoute(%q, %+v) = %v, want an invalid argument", tc.host, tc.route, err)
			}
			if err := p.SetRoutes(map[string]Route{"ok.test": {Backend: "127.0.0.1:1", Kind: KindHTTP}, tc.host: tc.route}); err == nil {
				t.Fatal("SetRoutes took it")
			}
			if n := len(p.Routes()); n != 0 {
				t.Fatalf("a failed SetRoutes left %d routes", n)
			}
		})
	}
	if err := p.SetRoutes(map[string]Route{"a.test": {Backend: "127.0.0.1:1", Kind: KindHTTP}, "A.TEST": {Backend: "127.0.0.1:2", Kind: KindHTTP}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("two routes for one name: %v", err)
	}
}

// Port 80: HTTP-01 answers for any host, a 308 to https for everything else.
func TestHTTPAddress(t *testing.T) {
	for _, redirectPort := range []int{0, 443} {
		t.Run(fmt.Sprintf("redirect port %d", redirectPort), func(t *testing.T) {
			p := startProxy(t, Config{RedirectPort: redirectPort})
			p.Challenges().PresentHTTP01("tok-1", "tok-1.thumbprint")
			_, httpsPort, _ := net.SplitHostPort(p.httpsAddr)
			port := ":" + httpsPort
			if redirectPort == 443 {
				port = ""
			}
			c := &http.Client{
				Timeout:       10 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}
			for _, tc := range []struct {
				method, host, path string
				status             int
				location, body     string
			}{
				{"GET", "a.test", "/", 308, "https://a.test" + port + "/", ""},
				{"GET", "a.test:8080", "/x/y?q=1&r=%20", 308, "https://a.test" + port + "/x/y?q=1&r=%20", ""},
				{"POST", "Some.Host", "/form", 308, "https://some.host" + port + "/form", ""},
				{"GET", "[::1]:80", "/v6", 308, "https://[::1]" + port + "/v6", ""},
				{"GET", "//evil.test", "//evil.test/p", 308, "https://evil.test" + port + "//evil.test/p", ""},
				{"GET", "any.host", "/.well-known/acme-challenge/tok-1", 200, "", "tok-1.thumbprint"},
				{"GET", "other.host", "/.well-known/acme-challenge/tok-1", 200, "", "tok-1.thumbprint"},
				{"GET", "any.host", "/.well-known/acme-challenge/tok-2", 404, "", ""},
				{"POST", "any.host", "/.well-known/acme-challenge/tok-1", 404, "", ""},
			} {
				req := mustRequest(t, tc.method, "http://"+p.httpAddr+tc.path)
				req.Host = strings.TrimPrefix(tc.host, "//")
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.status {
					t.Errorf("%s %s%s: status %d, want %d", tc.method, tc.host, tc.path, resp.StatusCode, tc.status)
				}
				if got := resp.Header.Get("Location"); got != tc.location {
					t.Errorf("%s %s%s: Location %q, want %q", tc.method, tc.host, tc.path, got, tc.location)
				}
				if tc.body != "" && string(body) != tc.body {
					t.Errorf("%s %s%s: body %q, want %q", tc.method, tc.host, tc.path, body, tc.body)
				}
			}
			p.Challenges().CleanUpHTTP01("tok-1")
			resp, err := c.Get("http://" + p.httpAddr + HTTP01Prefix + "tok-1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Errorf("after clean-up: status %d, want 404", resp.StatusCode)
			}
		})
	}
}

// TLS-ALPN-01: an acme-tls/1 handshake for a name with a pending challenge gets the
// validation certificate; other handshakes for that name get its usual certificate.
func TestTLSALPN01(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	_ = p.Certs().Set("acme.test", ca.leaf(t, "acme.test"))
	_ = p.SetRoute("acme.test", Route{Backend: echoBackend(t, "A"), Kind: KindHTTP})
	const keyAuth = "token.thumbprint"
	if err := p.Challenges().PresentTLSALPN01("ACME.test", keyAuth); err != nil {
		t.Fatal(err)
	}
	dial := func(protos []string) (*tls.ConnectionState, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.httpsAddr, &tls.Config{
			ServerName: "acme.test", NextProtos: protos, InsecureSkipVerify: true,
		})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return &st, nil
	}
	st, err := dial([]string{ALPNProto})
	if err != nil {
		t.Fatalf("acme-tls/1 handshake: %v", err)
	}
	if st.NegotiatedProtocol != ALPNProto {
		t.Errorf("negotiated %q, want %s", st.NegotiatedProtocol, ALPNProto)
	}
	leaf := st.PeerCertificates[0]
	if !slices.Equal(leaf.DNSNames, []string{"acme.test"}) {
		t.Errorf("challenge certificate names %v", leaf.DNSNames)
	}
	var found bool
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}) {
			found = true
			var got []byte
			if _, err := asn1.Unmarshal(ext.Value, &got); err != nil {
				t.Fatal(err)
			}
			want := sha256.Sum256([]byte(keyAuth))
			if !bytes.Equal(got, want[:]) || !ext.Critical {
				t.Errorf("acmeIdentifier %x critical=%v, want %x critical", got, ext.Critical, want)
			}
		}
	}
	if !found {
		t.Error("the challenge certificate has no acmeIdentifier extension")
	}
	st, err = dial([]string{"h2", "http/1.1"})
	if err != nil {
		t.Fatalf("ordinary handshake: %v", err)
	}
	if got := st.PeerCertificates[0].Subject.CommonName; got != "acme.test" || st.PeerCertificates[0].Issuer.CommonName != "proxy test root" {
		t.Errorf("ordinary handshake got the certificate of %q from %q", got, st.PeerCertificates[0].Issuer.CommonName)
	}
	p.Challenges().CleanUpTLSALPN01("acme.test")
	if _, err := dial([]string{ALPNProto}); err == nil {
		t.Error("acme-tls/1 handshake succeeded after the challenge was cleaned up")
	}
}

// A renewed certificate: the open connection keeps working (with the old one), a new
// connection gets the new one.
func TestCertificateSwap(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	_ = p.SetRoute("a.test", Route{Backend: echoBackend(t, "A"), Kind: KindHTTP})
	old, renewed := ca.leaf(t, "a.test"), ca.leaf(t, "a.test")
	_ = p.Certs().Set("a.test", old)

	c1 := client(ca, p.httpsAddr, false)
	serial := func(c *http.Client) (string, bool) {
		var reused bool
		req := mustRequest(t, "GET", "https://a.test/")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		_, resp := getEcho(t, c, req)
		return resp.TLS.PeerCertificates[0].SerialNumber.String(), reused
	}
	if s, _ := serial(c1); s != old.Leaf.SerialNumber.String() {
		t.Fatalf("first connection: serial %s, want the old %s", s, old.Leaf.SerialNumber)
	}
	if err := p.Certs().Set("a.test", renewed); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		s, reused := serial(c1)
		if !reused || s != old.Leaf.SerialNumber.String() {
			t.Fatalf("open connection after the swap: reused=%v serial %s, want the old connection with %s", reused, s, old.Leaf.SerialNumber)
		}
	}
	if s, reused := serial(client(ca, p.httpsAddr, false)); reused || s != renewed.Leaf.SerialNumber.String() {
		t.Fatalf("new connection: reused=%v serial %s, want the renewed %s", reused, s, renewed.Leaf.SerialNumber)
	}
}

func TestHTTP2(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	_ = p.SetRoute("a.test", Route{Backend: echoBackend(t, "A"), Kind: KindHTTP})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))
	e, resp := getEcho(t, client(ca, p.httpsAddr, true), mustRequest(t, "GET", "https://a.test/h2"))
	if resp.ProtoMajor != 2 || resp.TLS.NegotiatedProtocol != "h2" {
		t.Fatalf("client got %s (ALPN %q), want HTTP/2", resp.Proto, resp.TLS.NegotiatedProtocol)
	}
	if e.Backend != "A" || e.Proto != "HTTP/1.1" || e.Path != "/h2" || e.Host != "a.test" {
		t.Fatalf("backend saw %+v, want A over HTTP/1.1", e)
	}
}

// The forwarding headers are the proxy's: forged ones from the client are replaced.
func TestForwardedHeaders(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	_ = p.SetRoute("a.test", Route{Backend: echoBackend(t, "A"), Kind: KindHTTP})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			req := mustRequest(t, "GET", "https://a.test/")
			req.Header.Set("X-Forwarded-For", "6.6.6.6")
			req.Header.Add("X-Forwarded-For", "7.7.7.7")
			req.Header.Set("X-Forwarded-Host", "evil.test")
			req.Header.Set("X-Forwarded-Proto", "http")
			req.Header.Set("Forwarded", "for=6.6.6.6;proto=http")
			req.Header.Set("X-Test", "kept")
			e, _ := getEcho(t, client(ca, p.httpsAddr, h2), req)
			want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "a.test", "X-Forwarded-Proto": "https", "X-Test": "kept"}
			for k, v := range want {
				if e.Header[k] != v {
					t.Errorf("%s = %q, want %q", k, e.Header[k], v)
				}
			}
			if f, ok := e.Header["Forwarded"]; ok {
				t.Errorf("the client's Forwarded reached the backend: %q", f)
			}
		})
	}
}

// Errors a client can meet.
func TestErrorAnswers(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{MaxHeaderBytes: 4 << 10})
	// A port nobody listens on.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := l.Addr().String()
	l.Close()
	_ = p.SetRoutes(map[string]Route{
		"down.test": {Backend: down, Kind: KindHTTP},
		"pt.test":   {Backend: down, Kind: KindPassthrough},
		"ok.test":   {Backend: echoBackend(t, "OK"), Kind: KindHTTP},
	})
	_ = p.Certs().Set("*.test", ca.leaf(t, "*.test"))
	c := client(ca, p.httpsAddr, false)
	for _, tc := range []struct {
		name, host string
		header     string
		status     int
		body       string
	}{
		{"unknown host", "nobody.test", "", 404, "no service is bound to nobody.test"},
		{"backend down", "down.test", "", 502, "the service for down.test is not answering"},
		{"passthrough name by Host", "pt.test", "", 421, "misdirected"},
		// net/http allows some slack over MaxHeaderBytes (up to 4 KiB, more on a reused
		// connection): 32 KiB is well over.
		{"headers too big", "ok.test", strings.Repeat("x", 32<<10), 431, ""},
		{"ok", "ok.test", "", 200, `"backend":"OK"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := mustRequest(t, "GET", "https://ok.test/")
			req.Host = tc.host
			if tc.header != "" {
				req.Header.Set("X-Big", tc.header)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
				t.Fatalf("status %d body %q, want %d with %q", resp.StatusCode, body, tc.status, tc.body)
			}
		})
	}
	// A handshake for a name without a certificate fails.
	_, err := tls.Dial("tcp", p.httpsAddr, &tls.Config{ServerName: "no.cert", RootCAs: ca.pool})
	if err == nil {
		t.Error("handshake for a name with no certificate succeeded")
	}
	// Plain HTTP sent to the HTTPS address gets told so.
	conn, err := net.Dial("tcp", p.httpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: ok.test\r\n\r\n")
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(got), "HTTP/1.0 400") {
		t.Errorf("plain HTTP on the HTTPS address: got %q", got)
	}
}

// A passthrough name reaches a backend that terminates TLS with its own certificate;
// the proxy holds no certificate for it.
func TestPassthrough(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	backend := httptest.NewUnstartedServer(echoHandler("PT"))
	backend.TLS = &tls.Config{Certificates: []tls.Certificate{*ca.leaf(t, "pt.test")}, NextProtos: []string{"h2", "http/1.1"}}
	backend.EnableHTTP2 = true
	backend.StartTLS()
	defer backend.Close()
	_ = p.SetRoutes(map[string]Route{
		"pt.test": {Backend: backend.Listener.Addr().String(), Kind: KindPassthrough},
		"a.test":  {Backend: echoBackend(t, "A"), Kind: KindHTTP},
	})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))
	if _, ok := p.Certs().Get("pt.test"); ok {
		t.Fatal("the proxy has a certificate for pt.test")
	}
	for _, h2 := range []bool{false, true} {
		c := client(ca, p.httpsAddr, h2)
		for range 2 {
			e, resp := getEcho(t, c, mustRequest(t, "GET", "https://pt.test/through"))
			if e.Backend != "PT" || !e.TLS || e.Path != "/through" {
				t.Fatalf("h2=%v: got %+v, want the TLS backend PT", h2, e)
			}
			if h2 && (resp.ProtoMajor != 2 || e.Proto != "HTTP/2.0") {
				t.Fatalf("h2 through passthrough: client %s, backend %s", resp.Proto, e.Proto)
			}
			if _, ok := e.Header["X-Forwarded-For"]; ok {
				t.Fatal("a passthrough request got X-Forwarded-For: the proxy terminated it")
			}
		}
	}
}

// A 100 MB body up and 100 MB down through the proxy at once, with the proxy's heap
// staying small: bodies are streamed, not buffered.
func TestStreamedBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 200 MB")
	}
	const size = 100 << 20
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Echo the body as it comes.
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("Content-Type", "application/octet-stream")
		n, err := io.Copy(w, r.Body)
		if err != nil || n != size {
			t.Errorf("backend echoed %d bytes: %v", n, err)
		}
	}))
	defer backend.Close()
	_ = p.SetRoute("a.test", Route{Backend: backend.Listener.Addr().String(), Kind: KindHTTP})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))

	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			base := heapInuse()
			peak := base
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						peak = max(peak, heapInuse())
					}
				}
			}()
			body := io.LimitReader(&patternReader{}, size)
			req, _ := http.NewRequest("PUT", "https://a.test/upload", body)
			req.ContentLength = -1 // streamed: chunked on HTTP/1.1
			resp, err := client(ca, p.httpsAddr, h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(&patternChecker{}, resp.Body)
			resp.Body.Close()
			close(stop)
			<-sampled
			if err != nil || n != size {
				t.Fatalf("read %d bytes back: %v", n, err)
			}
			grew := int64(peak) - int64(base)
			t.Logf("HeapInuse before %d MiB, peak %d MiB (grew %.1f MiB) for 2×%d MiB", base>>20, peak>>20, float64(grew)/(1<<20), size>>20)
			if grew > 24<<20 {
				t.Fatalf("HeapInuse grew by %d MiB while streaming %d MiB each way", grew>>20, size>>20)
			}
		})
	}
}

// Slow clients are cut off: headers sent a byte a second end at ReadHeaderTimeout, a
// connection that never says hello ends at HandshakeTimeout.
func TestSlowClients(t *testing.T) {
	ca := newTestCA(t)
	const limit = 2 * time.Second
	p := startProxy(t, Config{ReadHeaderTimeout: limit, HandshakeTimeout: limit})
	_ = p.SetRoute("a.test", Route{Backend: echoBackend(t, "A"), Kind: KindHTTP})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))
	for _, tc := range []struct {
		name string
		tls  bool
	}{
		{"headers a byte a second", true},
		{"no handshake", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw, err := net.Dial("tcp", p.httpsAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			var conn net.Conn = raw
			if tc.tls {
				tc := tls.Client(raw, &tls.Config{ServerName: "a.test", RootCAs: ca.pool, NextProtos: []string{"http/1.1"}})
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				conn = tc
			}
			start := time.Now()
			closed := make(chan time.Duration, 1)
			go func() {
				_ = conn.SetReadDeadline(time.Now().Add(3 * limit))
				_, _ = io.Copy(io.Discard, conn)
				closed <- time.Since(start)
			}()
			if tc.tls {
				go func() {
					req := "GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: " + strings.Repeat("z", 30) + "\r\n\r\n"
					for i := range len(req) {
						if _, err := conn.Write([]byte{req[i]}); err != nil {
							return
						}
						time.Sleep(time.Second)
					}
				}()
			}
			got := <-closed
			t.Logf("closed after %v", got.Round(time.Millisecond))
			if got < limit-100*time.Millisecond || got > limit+time.Second {
				t.Fatalf("connection ended after %v, want about %v", got, limit)
			}
		})
	}
}

// The connection cap: beyond MaxConns, a connection waits until one closes.
func TestMaxConns(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{MaxConns: 2})
	_ = p.SetRoute("a.test", Route{Backend: echoBackend(t, "A"), Kind: KindHTTP})
	_ = p.Certs().Set("a.test", ca.leaf(t, "a.test"))
	cfg := &tls.Config{ServerName: "a.test", RootCAs: ca.pool}
	var open []net.Conn
	for range 2 {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.httpsAddr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
	}
	third, err := net.Dial("tcp", p.httpsAddr) // the kernel accepts it into the queue
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	tc := tls.Client(third, cfg)
	_ = third.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if err := tc.Handshake(); err == nil {
		t.Fatal("a third connection was served over a cap of 2")
	}
	third.Close()
	open[0].Close()
	fourth, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.httpsAddr, cfg)
	if err != nil {
		t.Fatalf("after one closed: %v", err)
	}
	fourth.Close()
}

func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// pattern is byte i of the test bodies: 0, 1, ..., 250, 0, 1, ... (251 is prime: no
// buffer size lines up with it).
func pattern(i int64) byte { return byte(i % 251) }

// patternReader yields the pattern without end.
type patternReader struct{ off int64 }

func (r *patternReader) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = pattern(r.off + int64(i))
	}
	r.off += int64(len(b))
	return len(b), nil
}

// patternChecker checks that what it is written continues the pattern.
type patternChecker struct{ off int64 }

func (w *patternChecker) Write(b []byte) (int, error) {
	for i := range b {
		if b[i] != pattern(w.off+int64(i)) {
			return i, fmt.Errorf("byte %d is %d, want %d", w.off+int64(i), b[i], pattern(w.off+int64(i)))
		}
	}
	w.off += int64(len(b))
	return len(b), nil
}

// Close ends what the HTTP servers do not track: a passthrough stream and an upgraded
// connection, both idle.
func TestCloseEndsLongConnections(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, Config{})
	backend := httptest.NewUnstartedServer(echoHandler("PT"))
	backend.TLS = &tls.Config{Certificates: []tls.Certificate{*ca.leaf(t, "pt.test")}}
	backend.StartTLS()
	defer backend.Close()
	_ = p.SetRoutes(map[string]Route{
		"pt.test": {Backend: backend.Listener.Addr().String(), Kind: KindPassthrough},
		"ws.test": {Backend: wsEchoBackend(t), Kind: KindHTTP},
	})
	_ = p.Certs().Set("ws.test", ca.leaf(t, "ws.test"))
	pt, err := tls.Dial("tcp", p.httpsAddr, &tls.Config{ServerName: "pt.test", RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	defer pt.Close()
	ws, err := tls.Dial("tcp", p.httpsAddr, &tls.Config{ServerName: "ws.test", RootCAs: ca.pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	fmt.Fprintf(ws, "GET / HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(ws)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	p.Close()
	for name, r := range map[string]io.Reader{"passthrough": pt, "websocket": br} {
		done := make(chan error, 1)
		go func() { _, err := io.Copy(io.Discard, r); done <- err }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("%s: still open 5 s after Close", name)
		}
	}
}
