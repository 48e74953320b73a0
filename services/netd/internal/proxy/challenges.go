package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// HTTP01Prefix is the path below which HTTP-01 answers are served (RFC 8555 8.3).
const HTTP01Prefix = "/.well-known/acme-challenge/"

// ALPNProto is the ALPN protocol of TLS-ALPN-01 (RFC 8737).
const ALPNProto = "acme-tls/1"

// idPeAcmeIdentifier is the id-pe-acmeIdentifier extension of RFC 8737.
var idPeAcmeIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

// Challenges holds the ACME challenge answers being presented: HTTP-01 key
// authorizations by token (served on the HTTP address for any host), and TLS-ALPN-01
// validation certificates by domain (served on the HTTPS address to handshakes that
// offer acme-tls/1 for that name). It is safe for concurrent use; the zero value is
// empty and ready.
type Challenges struct {
	mu   sync.RWMutex
	http map[string]string           // token → key authorization
	alpn map[string]*tls.Certificate // domain → validation certificate
}

// PresentHTTP01 serves keyAuth at HTTP01Prefix+token.
func (c *Challenges) PresentHTTP01(token, keyAuth string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.http == nil {
		c.http = map[string]string{}
	}
	c.http[token] = keyAuth
}

// CleanUpHTTP01 stops serving token.
func (c *Challenges) CleanUpHTTP01(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.http, token)
}

// KeyAuthorization returns the HTTP-01 answer for token, if it is being presented.
func (c *Challenges) KeyAuthorization(token string) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ka, ok := c.http[token]
	return ka, ok
}

// PresentTLSALPN01 makes the validation certificate for domain and keyAuth and serves
// it to acme-tls/1 handshakes for domain.
func (c *Challenges) PresentTLSALPN01(domain, keyAuth string) error {
	cert, err := ALPNChallengeCertificate(domain, keyAuth)
	if err != nil {
		return err
	}
	c.SetALPNCertificate(domain, cert)
	return nil
}

// SetALPNCertificate serves a ready-made validation certificate to acme-tls/1
// handshakes for domain.
func (c *Challenges) SetALPNCertificate(domain string, cert *tls.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.alpn == nil {
		c.alpn = map[string]*tls.Certificate{}
	}
	c.alpn[normalizeHost(domain)] = cert
}

// CleanUpTLSALPN01 stops serving domain's validation certificate.
func (c *Challenges) CleanUpTLSALPN01(domain string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.alpn, normalizeHost(domain))
}

// ALPNCertificate returns the validation certificate presented for a server name.
func (c *Challenges) ALPNCertificate(serverName string) (*tls.Certificate, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	cert, ok := c.alpn[normalizeHost(serverName)]
	return cert, ok
}

// ALPNChallengeCertificate makes the self-signed validation certificate of TLS-ALPN-01
// (RFC 8737 3): domain as its only name, and the SHA-256 of the key authorization in a
// critical acmeIdentifier extension.
func ALPNChallengeCertificate(domain, keyAuth string) (*tls.Certificate, error) {
	sum := sha256.Sum256([]byte(keyAuth))
	value, err := asn1.Marshal(sum[:])
	if err != nil {
		return nil, fmt.Errorf("tls-alpn-01 certificate for %s: %w", domain, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tls-alpn-01 key for %s: %w", domain, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, fmt.Errorf("tls-alpn-01 serial for %s: %w", domain, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: "ACME challenge"},
		NotBefore:       now.Add(-time.Hour),
		NotAfter:        now.Add(24 * time.Hour),
		DNSNames:        []string{normalizeHost(domain)},
		ExtraExtensions: []pkix.Extension{{Id: idPeAcmeIdentifier, Critical: true, Value: value}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("tls-alpn-01 certificate for %s: %w", domain, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
