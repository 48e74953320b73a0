// Package dnsprovider gives certd lego's DNS providers for DNS-01, chosen by name and
// configured from the environment as lego documents for each (CLOUDFLARE_DNS_API_TOKEN,
// EXEC_PATH, RFC2136_NAMESERVER, ...). It is the only package that links them all.
package dnsprovider

import (
	"fmt"

	"github.com/go-acme/lego/v4/providers/dns"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/certd/internal/solver"
)

// New returns lego's DNS provider called name.
func New(name string) (solver.Solver, error) {
	p, err := dns.NewDNSChallengeProviderByName(name)
	if err != nil {
		return nil, fmt.Errorf("--dns01-provider %s: %w (give a lego provider name, such as cloudflare or rfc2136, and set its environment variables): %w", name, err, errdefs.ErrInvalidArgument)
	}
	return p, nil
}
