package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	netv1 "hearth.dev/proto/hearth/net/v1"
)

// TestNetdDomain: a public domain bound to a container's interface gets a certificate
// from Pebble through certd, which answers the CA's challenges through netd's ports 80
// and 443; the domain answers by SNI with it; port 80 redirects; a WebSocket echo and an
// HTTP/2 request pass through the proxy; an unbind takes the route away.
func TestNetdDomain(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	e, p := newACMEEdgeLab(t, l)
	gw := e.gw
	importEcho(t, l)
	e.startEcho(t, "site")
	const domain = "www.site.hearth.test"

	cl := e.netdClient(t)
	ctx := testCtx(t, 2*time.Minute)
	resp, err := cl.CreateBinding(ctx, &netv1.CreateBindingRequest{Container: "site", Interface: "web", Port: 8080,
		Protocol: netv1.Protocol_PROTOCOL_HTTP, Exposure: netv1.Exposure_EXPOSURE_DOMAIN, Domain: domain})
	if err != nil {
		t.Fatalf("bind %s: %v", domain, err)
	}
	if b := resp.GetBinding(); b.GetAddress() != "https://"+domain || b.GetStatus() != "" || b.GetId() != "site/web/"+domain {
		t.Errorf("binding: %v", b)
	}
	if log := e.netd.log.String(); !strings.Contains(log, "presenting an ACME challenge") {
		t.Errorf("netd's log shows no challenge it presented:\n%s", log)
	}

	pebbleRoots := p.Roots(t)
	tlsTo := func(serverName string, roots *x509.CertPool, protos ...string) (*tls.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", gw+":443", &tls.Config{ServerName: serverName, RootCAs: roots, NextProtos: protos})
	}
	client := func(h2 bool) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pebbleRoots}, ForceAttemptHTTP2: h2,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", gw+":443")
			}}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	body := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	t.Run("answers by SNI with the ACME certificate", func(t *testing.T) {
		c, err := tlsTo(domain, pebbleRoots)
		if err != nil {
			t.Fatalf("TLS to %s trusting Pebble's roots: %v", domain, err)
		}
		leaf := c.ConnectionState().PeerCertificates[0]
		c.Close()
		if err := leaf.VerifyHostname(domain); err != nil {
			t.Error(err)
		}
		// The LAN name of the same container has the local CA's certificate instead.
		if c, err := tlsTo("site.local", pebbleRoots); err == nil {
			c.Close()
			t.Error("site.local's certificate verified with Pebble's roots")
		}
		// The client's own X-Forwarded-For is replaced by the address the proxy saw.
		req, _ := http.NewRequest("GET", "https://"+domain+"/hello", nil)
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		var local string
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			local, _, _ = net.SplitHostPort(i.Conn.LocalAddr().String())
		}}))
		got := body(client(false).Do(req))
		want := fmt.Sprintf("site host=%s proto=HTTP/1.1 xff=%s xfp=https xfh=%s path=/hello peer=%s:", domain, local, domain, gw)
		if !strings.HasPrefix(got, want) {
			t.Errorf("GET https://%s/hello: %q, want it to start %q", domain, got, want)
		}
	})

	t.Run("port 80 redirects", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+gw+"/a/b?c=d", nil)
		req.Host = domain
		plain := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://"+domain+"/a/b?c=d" {
			t.Errorf("http://%s/a/b?c=d: %d %q", domain, resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("HTTP/2", func(t *testing.T) {
		resp, err := client(true).Get("https://" + domain + "/h2")
		got := body(resp, err)
		if resp.ProtoMajor != 2 || !strings.Contains(got, "proto=HTTP/1.1") {
			t.Errorf("over HTTP/%d: %q; want HTTP/2 to the proxy, HTTP/1.1 to the app", resp.ProtoMajor, got)
		}
	})

	t.Run("WebSocket echo", func(t *testing.T) {
		c, err := tlsTo(domain, pebbleRoots, "http/1.1")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", domain)
		r := bufio.NewReader(c)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
			t.Fatalf("upgrade: %d %v", resp.StatusCode, resp.Header)
		}
		for _, msg := range []string{"hello", strings.Repeat("x", 70000)} {
			if _, err := c.Write(wsFrame([]byte(msg))); err != nil {
				t.Fatal(err)
			}
			got, err := wsRead(r)
			if err != nil || got != msg {
				t.Errorf("echo of %d bytes: %d bytes back, %v", len(msg), len(got), err)
			}
		}
	})

	t.Run("TLS-ALPN-01 through netd", func(t *testing.T) {
		out, err := hearthctl(t, l.runDir, "cert", "issue", "alpn.site.hearth.test", "--acme", "--challenge", "tls-alpn-01")
		if err != nil {
			t.Fatalf("issue over TLS-ALPN-01 through netd's 443: %v\n%s", err, out)
		}
		if !strings.Contains(e.netd.log.String(), "CHALLENGE_TYPE_TLS_ALPN_01") {
			t.Error("netd's log shows no TLS-ALPN-01 challenge")
		}
	})

	t.Run("unbind", func(t *testing.T) {
		if _, err := cl.DeleteBinding(ctx, &netv1.DeleteBindingRequest{Id: "site/web/" + domain}); err != nil {
			t.Fatal(err)
		}
		if c, err := tlsTo(domain, pebbleRoots); err == nil {
			c.Close()
			t.Errorf("%s still answers after its unbind", domain)
		}
	})
}

// wsFrame is a masked final text frame (a client's).
func wsFrame(p []byte) []byte {
	out := []byte{0x81}
	switch n := len(p); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n < 1<<16:
		out = append(out, 0x80|126, byte(n>>8), byte(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	out = append(out, mask[:]...)
	for i, b := range p {
		out = append(out, b^mask[i%4])
	}
	return out
}

// wsRead reads one unmasked frame (a server's) and returns its payload.
func wsRead(r *bufio.Reader) (string, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", err
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return string(p), err
}
