// Package leaf keeps the certificates certd issues: it checks who may have which names,
// issues through the local CA or ACME, caches what it issued in storage, renews each one
// on its own schedule with backoff on failure, and tells watchers about every change.
package leaf

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"strings"
	"time"

	"hearth.dev/services/certd/internal/names"
)

// Kind names an issuer.
type Kind string

// The issuers.
const (
	Local Kind = "local"
	ACME  Kind = "acme"
)

// Request asks for a certificate.
type Request struct {
	Names names.Set
	Kind  Kind
	// Owner is the package or container asking; empty for administrative requests.
	Owner string
	// Held are names beyond the owner's own that the caller vouches the owner holds
	// (they do not tell certificates apart: the names do).
	Held []string
	// Challenge is the ACME challenge type ("http-01", "tls-alpn-01", "dns-01"), or empty
	// for any the ACME issuer answers.
	Challenge string
}

// ID returns the stable id of the certificate for r: its first name, made safe for a
// file name, and a hash of everything that tells certificates apart.
func (r Request) ID() string {
	sum := sha256.Sum256([]byte(string(r.Kind) + "\x00" + r.Owner + "\x00" + strings.Join(r.Names.Strings(), ",")))
	first := r.Names.Strings()[0]
	first = strings.NewReplacer("*", "wildcard", ":", "-").Replace(first)
	return first + "-" + hex.EncodeToString(sum[:4])
}

// Record is one certificate certd keeps. Records are values: a change makes a new one.
type Record struct {
	ID        string    `json:"id"`
	Kind      Kind      `json:"kind"`
	Owner     string    `json:"owner,omitempty"`
	DNSNames  []string  `json:"dns_names,omitempty"`
	IPs       []string  `json:"ip_addresses,omitempty"`
	Challenge string    `json:"challenge,omitempty"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	IssuedAt  time.Time `json:"issued_at"`
	// RenewAt is when certd renews the certificate on its own.
	RenewAt time.Time `json:"renew_at"`
	// CheckAt is when to ask the issuer again when to renew (ACME renewal information).
	CheckAt time.Time `json:"check_at,omitzero"`
	// URL is where the ACME CA keeps the certificate.
	URL string `json:"url,omitempty"`

	// Failures counts renewals failed in a row; RetryAt is when to try again.
	Failures  int       `json:"failures,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	RetryAt   time.Time `json:"retry_at,omitzero"`

	ChainPEM []byte            `json:"-"`
	KeyPEM   []byte            `json:"-"`
	Leaf     *x509.Certificate `json:"-"`
}

// request returns the request that made r.
func (r *Record) request() (Request, error) {
	s, err := names.Parse(r.DNSNames, r.IPs)
	return Request{Names: s, Kind: r.Kind, Owner: r.Owner, Challenge: r.Challenge}, err
}

// due returns when r next needs work: a retry after a failure, its renewal, or a check
// of the issuer's advice, whichever is first.
func (r *Record) due() time.Time {
	next := r.RenewAt
	if r.Failures > 0 {
		next = r.RetryAt
	}
	if !r.CheckAt.IsZero() && r.CheckAt.Before(next) {
		next = r.CheckAt
	}
	return next
}

// RenewTime is two thirds of the way from issued to notAfter.
func RenewTime(issued, notAfter time.Time) time.Time {
	return issued.Add(notAfter.Sub(issued) * 2 / 3)
}

// Backoff returns how long to wait after the n-th failure in a row: base doubled for
// each earlier failure, at most max.
func Backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
