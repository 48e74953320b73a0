// Package names checks the names a certificate is asked for: their syntax, the local
// CA's name constraints, and which names an owner (a package) may have.
package names

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"hearth.dev/internal/errdefs"
)

// MaxNames bounds how many names one certificate may carry.
const MaxNames = 100

// Set is a checked set of names for one certificate: DNS names lower-case without a
// trailing dot, addresses unmapped; both sorted and without duplicates.
type Set struct {
	DNS []string
	IPs []netip.Addr
}

// Parse checks the DNS names and addresses of a request.
func Parse(dns, ips []string) (Set, error) {
	var s Set
	if len(dns)+len(ips) == 0 {
		return s, fmt.Errorf("no names: give at least one DNS name or IP address: %w", errdefs.ErrInvalidArgument)
	}
	if len(dns)+len(ips) > MaxNames {
		return s, fmt.Errorf("%d names: at most %d fit one certificate: %w", len(dns)+len(ips), MaxNames, errdefs.ErrInvalidArgument)
	}
	for _, d := range dns {
		n, err := ParseDNS(d)
		if err != nil {
			return Set{}, err
		}
		s.DNS = append(s.DNS, n)
	}
	for _, a := range ips {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil || ip.Zone() != "" {
			return Set{}, fmt.Errorf("IP address %q: give a plain IPv4 or IPv6 address such as 192.168.1.10 or fd00::10: %w", a, errdefs.ErrInvalidArgument)
		}
		s.IPs = append(s.IPs, ip.Unmap())
	}
	slices.Sort(s.DNS)
	s.DNS = slices.Compact(s.DNS)
	slices.SortFunc(s.IPs, netip.Addr.Compare)
	s.IPs = slices.Compact(s.IPs)
	return s, nil
}

// ParseDNS checks one DNS name: ASCII (punycode for other scripts), labels of letters,
// digits and inner hyphens, a leading "*." at most. It returns the name lower-cased
// without a trailing dot.
func ParseDNS(name string) (string, error) {
	n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("DNS name %q: %s: %w", name, why, errdefs.ErrInvalidArgument)
	}
	if n == "" {
		return bad("empty")
	}
	if len(n) > 253 {
		return bad("longer than 253 characters")
	}
	if _, err := netip.ParseAddr(n); err == nil {
		return bad("this is an IP address: give it as an address, not a DNS name")
	}
	labels := strings.Split(n, ".")
	for i, l := range labels {
		if l == "*" && i == 0 && len(labels) > 2 {
			continue
		}
		if l == "" {
			return bad("empty label (two dots in a row, or a leading dot)")
		}
		if len(l) > 63 {
			return bad(fmt.Sprintf("label %q is longer than 63 characters", l))
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return bad(fmt.Sprintf("label %q starts or ends with a hyphen", l))
		}
		for _, c := range l {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			case c == '*':
				return bad("a wildcard may only be the whole first label of a name with at least three labels, as in *.app.local")
			case c > 0x7f:
				return bad("not ASCII: give internationalized names in punycode (xn--...)")
			default:
				return bad(fmt.Sprintf("character %q is not allowed (letters, digits, hyphens and dots only)", c))
			}
		}
	}
	return n, nil
}

// Strings returns the DNS names and then the addresses.
func (s Set) Strings() []string {
	out := slices.Clone(s.DNS)
	for _, ip := range s.IPs {
		out = append(out, ip.String())
	}
	return out
}

// IPStrings returns the addresses as text.
func (s Set) IPStrings() []string {
	out := make([]string, 0, len(s.IPs))
	for _, ip := range s.IPs {
		out = append(out, ip.String())
	}
	return out
}

// under reports whether name is domain or a name below it.
func under(name, domain string) bool {
	return name == domain || strings.HasSuffix(name, "."+domain)
}
