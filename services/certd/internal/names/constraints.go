package names

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"hearth.dev/internal/errdefs"
)

// DefaultInternalDomain is the domain of containers on Hearth's internal network.
const DefaultInternalDomain = "hearth.internal"

// PrivateRanges are the addresses the local CA may certify: RFC 1918, loopback, unique
// local and link-local IPv6, IPv6 loopback.
var PrivateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("::1/128"),
}

// Constraints are the names a CA may certify: DNS names at or below Domains, addresses in
// Ranges. The local root carries them as critical X.509 name constraints.
type Constraints struct {
	Domains []string
	Ranges  []netip.Prefix
}

// Local returns the local CA's constraints: .local, the internal domain and the private
// ranges.
func Local(internalDomain string) (Constraints, error) {
	d, err := ParseDNS(internalDomain)
	if err != nil || strings.HasPrefix(d, "*") {
		return Constraints{}, fmt.Errorf("internal domain %q: give a domain such as %s: %w", internalDomain, DefaultInternalDomain, errdefs.ErrInvalidArgument)
	}
	return Constraints{Domains: []string{"local", d}, Ranges: PrivateRanges}, nil
}

// Permits returns nil if every name of s lies within c, or an error naming the first that
// does not.
func (c Constraints) Permits(s Set) error {
	for _, n := range s.DNS {
		if !c.permitsDNS(n) {
			return fmt.Errorf("%s is outside the local CA's name constraints (names under %s, private addresses): ask for an ACME certificate for a public name: %w",
				n, c.domainList(), errdefs.ErrInvalidArgument)
		}
	}
	for _, ip := range s.IPs {
		if !c.permitsIP(ip) {
			return fmt.Errorf("%s is not a private address (%s): the local CA certifies only those: %w", ip, c.rangeList(), errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func (c Constraints) permitsDNS(n string) bool {
	for _, d := range c.Domains {
		if under(strings.TrimPrefix(n, "*."), d) && n != "*."+d {
			return true
		}
	}
	return false
}

func (c Constraints) permitsIP(ip netip.Addr) bool {
	for _, r := range c.Ranges {
		if r.Contains(ip) {
			return true
		}
	}
	return false
}

// PermitsAny reports whether any name of s lies within c.
func (c Constraints) PermitsAny(s Set) bool {
	for _, n := range s.DNS {
		if c.permitsDNS(n) {
			return true
		}
	}
	for _, ip := range s.IPs {
		if c.permitsIP(ip) {
			return true
		}
	}
	return false
}

// X509Domains returns the permitted DNS subtrees for a certificate: each domain itself
// and, for verifiers that read a leading dot as "below only", ".domain".
func (c Constraints) X509Domains() []string {
	var out []string
	for _, d := range c.Domains {
		out = append(out, d, "."+d)
	}
	return out
}

// X509Ranges returns the permitted address subtrees for a certificate.
func (c Constraints) X509Ranges() []*net.IPNet {
	out := make([]*net.IPNet, 0, len(c.Ranges))
	for _, r := range c.Ranges {
		bits := 128
		if r.Addr().Is4() {
			bits = 32
		}
		out = append(out, &net.IPNet{IP: net.IP(r.Masked().Addr().AsSlice()), Mask: net.CIDRMask(r.Bits(), bits)})
	}
	return out
}

func (c Constraints) domainList() string {
	var b []string
	for _, d := range c.Domains {
		b = append(b, "."+d)
	}
	return strings.Join(b, " and ")
}

func (c Constraints) rangeList() string {
	var b []string
	for _, r := range c.Ranges {
		b = append(b, r.String())
	}
	return strings.Join(b, ", ")
}
