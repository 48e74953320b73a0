package proxy

import (
	"crypto/tls"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"hearth.dev/internal/errdefs"
)

// Certs holds the certificate served for each host name. A name may be a wildcard,
// "*.example.org", which serves the names one label below it when no exact name is
// set. Set replaces a certificate at any time: handshakes that start afterwards get the
// new one, connections already open keep theirs. It is safe for concurrent use; the zero
// value is empty and ready.
type Certs struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[string]*tls.Certificate]
}

// Set serves cert for name from now on. cert needs its chain and private key;
// cert.Leaf, when set, is what a Get caller sees.
func (s *Certs) Set(name string, cert *tls.Certificate) error {
	if cert == nil || len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return fmt.Errorf("certificate for %s: want a chain and its private key: %w", name, errdefs.ErrInvalidArgument)
	}
	host := normalizeHost(name)
	check, _ := strings.CutPrefix(host, "*.")
	if _, err := hostName(check); err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.clone()
	m[host] = cert
	s.m.Store(&m)
	return nil
}

// Delete stops serving a certificate for name.
func (s *Certs) Delete(name string) {
	host := normalizeHost(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.clone()
	delete(m, host)
	s.m.Store(&m)
}

func (s *Certs) clone() map[string]*tls.Certificate {
	if m := s.m.Load(); m != nil {
		return maps.Clone(*m)
	}
	return map[string]*tls.Certificate{}
}

// Get returns the certificate served for a server name: the name's own, or else the
// wildcard of its parent.
func (s *Certs) Get(serverName string) (*tls.Certificate, bool) {
	m := s.m.Load()
	if m == nil {
		return nil, false
	}
	host := normalizeHost(serverName)
	if c, ok := (*m)[host]; ok {
		return c, true
	}
	if _, parent, ok := strings.Cut(host, "."); ok {
		c, ok := (*m)["*."+parent]
		return c, ok
	}
	return nil, false
}

// GetCertificate is a tls.Config.GetCertificate that serves from s.
func (s *Certs) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName == "" {
		return nil, fmt.Errorf("the client sent no server name (SNI): %w", errdefs.ErrNotFound)
	}
	c, ok := s.Get(hello.ServerName)
	if !ok {
		return nil, fmt.Errorf("no certificate for %q: %w", hello.ServerName, errdefs.ErrNotFound)
	}
	return c, nil
}
