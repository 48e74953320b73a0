// Package bindings keeps netd's bindings: which interface of which container is exposed
// where (a name.local on the LAN, a public domain, a Tor onion address), with what each
// was given (a LAN host port, a LAN name). The set is kept in one file, written
// atomically at every change, so that netd finds it whole after any restart or crash.
// The package checks requests and allocates; it does not touch the network (see expose).
package bindings

import (
	"fmt"
	"regexp"
	"strings"

	"hearth.dev/internal/errdefs"
)

// Exposure says where a binding answers.
type Exposure string

// The exposures.
const (
	LAN    Exposure = "lan"
	Domain Exposure = "domain"
	Tor    Exposure = "tor"
)

// Binding is one exposed interface.
type Binding struct {
	// ID is "<container>/<interface>/lan", ".../tor", or "<container>/<interface>/<domain>".
	ID        string   `json:"id"`
	Container string   `json:"container"`
	Interface string   `json:"interface"`
	Port      int      `json:"port"`
	HTTP      bool     `json:"http,omitempty"` // HTTP; otherwise plain TCP
	Exposure  Exposure `json:"exposure"`
	// Domain is a domain binding's public name.
	Domain      string `json:"domain,omitempty"`
	Passthrough bool   `json:"passthrough,omitempty"`
	// LANName is the name a LAN binding asks for on mDNS, without ".local": the
	// container's id, or "<interface>-<id>" for a second HTTP interface of one container
	// (one name answers on port 443 for one interface only). A conflict on the LAN may
	// make the name answered differ ("hello-pg-2.local"); that is netd's to report.
	LANName string `json:"lan_name,omitempty"`
	// HostPort is the host's port of a plain-TCP LAN binding.
	HostPort int `json:"host_port,omitempty"`
}

// Request asks for a binding.
type Request struct {
	Container   string
	Interface   string
	Port        int
	HTTP        bool
	Exposure    Exposure
	Domain      string
	Passthrough bool
}

// MakeID is a binding's id.
func MakeID(container, iface string, e Exposure, domain string) string {
	if e == Domain {
		return container + "/" + iface + "/" + domain
	}
	return container + "/" + iface + "/" + string(e)
}

// check validates a request and normalizes its domain.
func (r *Request) check() error {
	if !containerRE.MatchString(r.Container) {
		return fmt.Errorf("container %q: give a package or container id (lowercase letters, digits and '-', up to 32): %w", r.Container, errdefs.ErrInvalidArgument)
	}
	if !interfaceRE.MatchString(r.Interface) {
		return fmt.Errorf("interface %q: give the name of one of the package's interfaces: %w", r.Interface, errdefs.ErrInvalidArgument)
	}
	if r.Port < 1 || r.Port > 65535 {
		return fmt.Errorf("port %d of %s/%s: give 1 to 65535: %w", r.Port, r.Container, r.Interface, errdefs.ErrInvalidArgument)
	}
	switch r.Exposure {
	case LAN, Tor:
		if r.Domain != "" {
			return fmt.Errorf("a %s binding takes no domain (%q): bind the domain on its own: %w", r.Exposure, r.Domain, errdefs.ErrInvalidArgument)
		}
	case Domain:
		d, err := NormalizeDomain(r.Domain)
		if err != nil {
			return err
		}
		r.Domain = d
		if !r.HTTP {
			return fmt.Errorf("interface %s of %s speaks plain TCP: a domain serves HTTPS only; expose it on the LAN or over Tor: %w", r.Interface, r.Container, errdefs.ErrInvalidArgument)
		}
	default:
		return fmt.Errorf("exposure %q: give lan, domain or tor: %w", r.Exposure, errdefs.ErrInvalidArgument)
	}
	if r.Passthrough && (!r.HTTP || r.Exposure == Tor) {
		return fmt.Errorf("TLS passthrough is for HTTPS interfaces on the LAN or a domain (%s/%s on %s): %w", r.Container, r.Interface, r.Exposure, errdefs.ErrInvalidArgument)
	}
	return nil
}

// What containerd-lite accepts as container and interface names.
var (
	containerRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	interfaceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
)

// lanName is the mDNS name of a second HTTP interface: "<interface>-<id>", with what a
// DNS label cannot hold turned into '-' and cut to 63 characters.
func lanName(container, iface string) string {
	b := []byte(strings.NewReplacer("_", "-", ".", "-").Replace(iface) + "-" + container)
	if len(b) > 63 {
		b = b[:63]
	}
	return strings.Trim(string(b), "-")
}

// IsLabel reports whether s is a lowercase DNS label.
func IsLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// NormalizeDomain checks that d is a public DNS name a CA can certify and returns it in
// lower case without a final dot. It refuses addresses, single labels, wildcards and
// names under .local, .onion, .localhost, .internal, .arpa and .invalid; whether a CA will
// certify the rest is the CA's to say.
func NormalizeDomain(d string) (string, error) {
	orig := d
	d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("domain %q %s: give a public name such as example.org or cloud.example.org: %w", orig, why, errdefs.ErrInvalidArgument)
	}
	switch {
	case d == "":
		return bad("is empty")
	case len(d) > 253:
		return bad("is longer than 253 characters")
	case strings.HasPrefix(d, "*."):
		return bad("is a wildcard")
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return bad("has a single label")
	}
	for _, l := range labels {
		if !IsLabel(l) {
			return bad(fmt.Sprintf("has the label %q (letters, digits and '-' only, 1 to 63 of them)", l))
		}
	}
	tld := labels[len(labels)-1]
	if tld[0] >= '0' && tld[0] <= '9' {
		return bad("is not a name (it ends in a number)")
	}
	switch tld {
	case "local", "onion", "localhost", "internal", "arpa", "invalid":
		return bad(fmt.Sprintf("is under .%s, which no public CA certifies", tld))
	}
	return d, nil
}
