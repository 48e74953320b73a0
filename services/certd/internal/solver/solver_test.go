package solver

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/asn1"
	"io"
	"net/http"
	"testing"
)

func serve(t *testing.T, what string, f func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s server: %v", what, err)
		}
	})
}

func TestHTTP01(t *testing.T) {
	var c Challenges
	l, err := Listen("127.0.0.1:0", "http-01")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, "http-01", func(ctx context.Context) error { return c.ServeHTTP01(ctx, l) })
	url := "http://" + l.Addr().String() + HTTP01Prefix
	get := func(token string) (int, string) {
		resp, err := http.Get(url + token)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	s := c.HTTP01()
	if err := s.Present("web.example.org", "tok1", "tok1.thumb"); err != nil {
		t.Fatal(err)
	}
	if code, body := get("tok1"); code != 200 || body != "tok1.thumb" {
		t.Errorf("GET presented token: %d %q", code, body)
	}
	if code, _ := get("other"); code != 404 {
		t.Errorf("GET unknown token: %d, want 404", code)
	}
	if err := s.CleanUp("web.example.org", "tok1", "tok1.thumb"); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("tok1"); code != 404 {
		t.Errorf("GET after CleanUp: %d, want 404", code)
	}
	if _, err := Listen(l.Addr().String(), "http-01"); err == nil {
		t.Error("Listen on a taken address succeeded")
	}
}

func TestTLSALPN01(t *testing.T) {
	var c Challenges
	l, err := Listen("127.0.0.1:0", "tls-alpn-01")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, "tls-alpn-01", func(ctx context.Context) error { return c.ServeTLSALPN01(ctx, l) })
	s := c.TLSALPN01()
	if err := s.Present("Web.Example.org", "tok", "tok.thumb"); err != nil {
		t.Fatal(err)
	}
	dial := func(name string, protos ...string) (*tls.ConnectionState, error) {
		conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{ServerName: name, NextProtos: protos, InsecureSkipVerify: true})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return &st, nil
	}
	st, err := dial("web.example.org", ALPNProto)
	if err != nil {
		t.Fatal(err)
	}
	if st.NegotiatedProtocol != ALPNProto {
		t.Errorf("negotiated %q", st.NegotiatedProtocol)
	}
	cert := st.PeerCertificates[0]
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "Web.Example.org" {
		t.Errorf("DNS names %v", cert.DNSNames)
	}
	want := sha256.Sum256([]byte("tok.thumb"))
	var found bool
	for _, e := range cert.Extensions {
		if e.Id.Equal(idPeAcmeIdentifier) {
			var got []byte
			if _, err := asn1.Unmarshal(e.Value, &got); err != nil || string(got) != string(want[:]) || !e.Critical {
				t.Errorf("acmeIdentifier: critical %v, value %x, %v", e.Critical, got, err)
			}
			found = true
		}
	}
	if !found {
		t.Error("no acmeIdentifier extension")
	}
	if _, err := dial("web.example.org"); err == nil {
		t.Error("handshake without acme-tls/1 succeeded")
	}
	if _, err := dial("other.example.org", ALPNProto); err == nil {
		t.Error("handshake for a name not presented succeeded")
	}
	if err := s.CleanUp("web.example.org", "tok", "tok.thumb"); err != nil {
		t.Fatal(err)
	}
	if _, err := dial("web.example.org", ALPNProto); err == nil {
		t.Error("handshake after CleanUp succeeded")
	}
}
