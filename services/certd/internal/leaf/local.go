package leaf

import (
	"context"
	"time"

	"hearth.dev/services/certd/internal/ca"
	"hearth.dev/services/certd/internal/x509pem"
)

// DefaultLifetime is how long a local leaf lives.
const DefaultLifetime = 7 * 24 * time.Hour

// LocalIssuer issues through the local CA.
type LocalIssuer struct {
	CA       *ca.CA
	Lifetime time.Duration
}

var _ Issuer = LocalIssuer{}

// Issue implements Issuer.
func (l LocalIssuer) Issue(_ context.Context, req Request, _ *Record) (*Obtained, error) {
	iss, err := l.CA.Issue(req.Names, l.Lifetime)
	if err != nil {
		return nil, err
	}
	key, err := x509pem.EncodeKey(iss.Key)
	if err != nil {
		return nil, err
	}
	return &Obtained{Chain: iss.Chain, KeyPEM: key}, nil
}
