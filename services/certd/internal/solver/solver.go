// Package solver answers ACME challenges. A Solver is what the ACME client calls around
// a validation; Challenges keeps what is being presented, and its HTTP-01 and TLS-ALPN-01
// servers answer the CA from it. Challenges belong at the edge: certd serves them on the
// addresses it is given until netd's listeners on :80 and :443 take over, by serving
// from the same Challenges (or a Solver that forwards to netd over gRPC).
package solver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"hearth.dev/services/certd/internal/x509pem"
)

// Solver presents the answer to one challenge while the CA checks it. Its shape is the
// ACME client's (lego's challenge.Provider).
type Solver interface {
	Present(domain, token, keyAuth string) error
	CleanUp(domain, token, keyAuth string) error
}

// HTTP01Prefix is the path below which HTTP-01 tokens are served.
const HTTP01Prefix = "/.well-known/acme-challenge/"

// ALPNProto is the ALPN protocol of TLS-ALPN-01 (RFC 8737).
const ALPNProto = "acme-tls/1"

// idPeAcmeIdentifier is the id-pe-acmeIdentifier extension of RFC 8737.
var idPeAcmeIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

// Challenges holds the challenge answers being presented. It is safe for concurrent use.
type Challenges struct {
	Logger *slog.Logger

	mu   sync.Mutex
	http map[string]string           // token → key authorization
	alpn map[string]*tls.Certificate // domain → validation certificate
}

// HTTP01 returns the Solver that presents HTTP-01 answers in c.
func (c *Challenges) HTTP01() Solver { return http01{c} }

// TLSALPN01 returns the Solver that presents TLS-ALPN-01 answers in c.
func (c *Challenges) TLSALPN01() Solver { return tlsALPN01{c} }

type http01 struct{ c *Challenges }

func (s http01) Present(_, token, keyAuth string) error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.c.http == nil {
		s.c.http = map[string]string{}
	}
	s.c.http[token] = keyAuth
	return nil
}

func (s http01) CleanUp(_, token, _ string) error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	delete(s.c.http, token)
	return nil
}

type tlsALPN01 struct{ c *Challenges }

func (s tlsALPN01) Present(domain, _, keyAuth string) error {
	cert, err := ALPNCertificate(domain, keyAuth)
	if err != nil {
		return err
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.c.alpn == nil {
		s.c.alpn = map[string]*tls.Certificate{}
	}
	s.c.alpn[strings.ToLower(domain)] = cert
	return nil
}

func (s tlsALPN01) CleanUp(domain, _, _ string) error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	delete(s.c.alpn, strings.ToLower(domain))
	return nil
}

// ALPNCertificate makes the self-signed validation certificate of TLS-ALPN-01 for
// domain: the name and the SHA-256 of the key authorization in a critical
// acmeIdentifier extension.
func ALPNCertificate(domain, keyAuth string) (*tls.Certificate, error) {
	sum := sha256.Sum256([]byte(keyAuth))
	value, err := asn1.Marshal(sum[:])
	if err != nil {
		return nil, err
	}
	key, err := x509pem.NewKey()
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: "ACME challenge"},
		NotBefore:       now.Add(-time.Hour),
		NotAfter:        now.Add(24 * time.Hour),
		DNSNames:        []string{domain},
		ExtraExtensions: []pkix.Extension{{Id: idPeAcmeIdentifier, Critical: true, Value: value}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("TLS-ALPN-01 certificate for %s: %w", domain, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// KeyAuthorization returns the HTTP-01 answer for token, if it is being presented.
func (c *Challenges) KeyAuthorization(token string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ka, ok := c.http[token]
	return ka, ok
}

// ALPNCertificateFor returns the TLS-ALPN-01 certificate presented for a server name.
func (c *Challenges) ALPNCertificateFor(serverName string) (*tls.Certificate, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cert, ok := c.alpn[strings.ToLower(strings.TrimSuffix(serverName, "."))]
	return cert, ok
}

func (c *Challenges) log() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// ServeHTTP answers HTTP-01 requests for tokens being presented; everything else is
// 404.
func (c *Challenges) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, HTTP01Prefix)
	if !ok || r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.NotFound(w, r)
		return
	}
	ka, ok := c.KeyAuthorization(token)
	if !ok {
		c.log().Debug("http-01 request for an unknown token", "host", r.Host, "token", token, "remote", r.RemoteAddr)
		http.NotFound(w, r)
		return
	}
	c.log().Info("answered an http-01 challenge", "host", r.Host, "token", token, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(ka))
}

// TLSConfig answers TLS-ALPN-01 handshakes: only clients that offer acme-tls/1, for a
// name being presented.
func (c *Challenges) TLSConfig() *tls.Config {
	return &tls.Config{
		NextProtos: []string{ALPNProto},
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if !slices.Contains(hello.SupportedProtos, ALPNProto) {
				return nil, fmt.Errorf("this listener answers only %s handshakes", ALPNProto)
			}
			cert, ok := c.ALPNCertificateFor(hello.ServerName)
			if !ok {
				return nil, fmt.Errorf("no tls-alpn-01 challenge for %q", hello.ServerName)
			}
			c.log().Info("answered a tls-alpn-01 challenge", "server_name", hello.ServerName, "remote", hello.Conn.RemoteAddr())
			return cert, nil
		},
	}
}

// Listen binds addr, so that a taken port is reported at start-up.
func Listen(addr, what string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener on %s: %w (give a free address, or an empty one to answer no %s challenges)", what, addr, err, what)
	}
	return l, nil
}

// ServeHTTP01 answers HTTP-01 on l until ctx ends.
func (c *Challenges) ServeHTTP01(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	c.log().Info("answering http-01 challenges", "addr", l.Addr().String())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http-01 server: %w", err)
	}
	return nil
}

// ServeTLSALPN01 answers TLS-ALPN-01 on l until ctx ends: each connection gets a
// handshake and is closed.
func (c *Challenges) ServeTLSALPN01(ctx context.Context, l net.Listener) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	cfg := c.TLSConfig()
	c.log().Info("answering tls-alpn-01 challenges", "addr", l.Addr().String())
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return fmt.Errorf("tls-alpn-01 server: %w", err)
		}
		go func() {
			defer conn.Close()
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := tls.Server(conn, cfg).HandshakeContext(hctx); err != nil {
				c.log().Debug("tls-alpn-01 handshake", "remote", conn.RemoteAddr(), "error", err)
			}
		}()
	}
}
