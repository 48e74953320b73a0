package names

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"hearth.dev/internal/errdefs"
)

// Policy decides which names an owner (a package or container id) may have: its own
// names, <owner>.local and <owner>.<internal domain> and any name below them, and the
// names granted to it. A request without an owner is administrative and may have any
// name; the issuer's own limits (the local CA's constraints) still apply.
type Policy struct {
	InternalDomain string
	// Grants maps an owner to names it may have besides its own: a granted DNS name
	// covers the names below it too; a granted address only itself.
	Grants map[string]Set
}

// CheckOwner checks an owner id: a DNS label, since the owner's names are made from it.
func CheckOwner(owner string) error {
	if owner == "" {
		return nil
	}
	if len(owner) > 63 || owner[0] == '-' || owner[len(owner)-1] == '-' || strings.Trim(owner, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return fmt.Errorf("owner %q: give a package or container id of lower-case letters, digits and inner hyphens (at most 63): %w", owner, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Allow returns nil if owner may have every name of s, or an error naming the first it
// may not. held are names the caller vouches the owner holds (exactly, not below).
func (p Policy) Allow(owner string, s Set, held ...string) error {
	if err := CheckOwner(owner); err != nil {
		return err
	}
	if owner == "" {
		return nil
	}
	own := []string{owner + ".local", owner + "." + p.InternalDomain}
	granted := p.Grants[owner]
	own = append(own, granted.DNS...)
	for _, n := range s.DNS {
		if !p.owns(own, n) && !slices.Contains(held, n) {
			return fmt.Errorf("owner %q may not have %s: a package gets names under %s only, and names an administrator granted it (certd --grant %s=%s): %w",
				owner, n, strings.Join(own[:2], " and "), owner, n, errdefs.ErrPermissionDenied)
		}
	}
	for _, ip := range s.IPs {
		if !containsAddr(granted.IPs, ip) {
			return fmt.Errorf("owner %q may not have address %s: addresses are an owner's only when granted (certd --grant %s=%s): %w",
				owner, ip, owner, ip, errdefs.ErrPermissionDenied)
		}
	}
	return nil
}

func (p Policy) owns(own []string, n string) bool {
	// A wildcard stands for names below its base, so it is owned where its base is.
	base := strings.TrimPrefix(n, "*.")
	for _, d := range own {
		if under(base, d) {
			return true
		}
	}
	return false
}

func containsAddr(ips []netip.Addr, ip netip.Addr) bool {
	for _, a := range ips {
		if a == ip {
			return true
		}
	}
	return false
}

// ParseGrant parses a --grant value, OWNER=NAME[,NAME...], into p.Grants.
func (p *Policy) ParseGrant(v string) error {
	owner, list, ok := strings.Cut(v, "=")
	if !ok || owner == "" || list == "" {
		return fmt.Errorf("grant %q: write OWNER=NAME[,NAME...], as in nextcloud=cloud.local,192.168.1.20: %w", v, errdefs.ErrInvalidArgument)
	}
	if err := CheckOwner(owner); err != nil {
		return fmt.Errorf("grant %q: %w", v, err)
	}
	var dns, ips []string
	for _, n := range strings.Split(list, ",") {
		if _, err := netip.ParseAddr(strings.TrimSpace(n)); err == nil {
			ips = append(ips, n)
		} else {
			dns = append(dns, n)
		}
	}
	s, err := Parse(dns, ips)
	if err != nil {
		return fmt.Errorf("grant %q: %w", v, err)
	}
	if p.Grants == nil {
		p.Grants = map[string]Set{}
	}
	old := p.Grants[owner]
	merged, err := Parse(append(old.DNS, s.DNS...), append(old.IPStrings(), s.IPStrings()...))
	if err != nil {
		return fmt.Errorf("grant %q: %w", v, err)
	}
	p.Grants[owner] = merged
	return nil
}

// GrantStrings returns the grants as --grant values, sorted.
func (p Policy) GrantStrings() []string {
	var out []string
	for o, s := range p.Grants {
		out = append(out, o+"="+strings.Join(s.Strings(), ","))
	}
	sort.Strings(out)
	return out
}
