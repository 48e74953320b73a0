package proxy

import (
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"hearth.dev/internal/errdefs"
)

// Kind says what the proxy does with a connection for a host name.
type Kind int

const (
	// KindHTTP terminates TLS with the host's certificate and forwards HTTP requests to
	// the backend over HTTP/1.1.
	KindHTTP Kind = iota + 1
	// KindPassthrough reads the ClientHello's server name and splices the raw TCP
	// stream to the backend, which terminates TLS itself.
	KindPassthrough
)

func (k Kind) String() string {
	switch k {
	case KindHTTP:
		return "http"
	case KindPassthrough:
		return "passthrough"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Route is where the connections and requests for one host name go.
type Route struct {
	// Backend is the backend's address, ip:port.
	Backend string
	Kind    Kind
}

func (r Route) validate() error {
	if _, err := netip.ParseAddrPort(r.Backend); err != nil {
		return fmt.Errorf("backend address %q: want ip:port: %w", r.Backend, errdefs.ErrInvalidArgument)
	}
	if r.Kind != KindHTTP && r.Kind != KindPassthrough {
		return fmt.Errorf("route kind %v: want http or passthrough: %w", r.Kind, errdefs.ErrInvalidArgument)
	}
	return nil
}

// routes is the routing table: read without locks on every connection and request,
// replaced whole (copy on write) by each change.
type routes struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[string]Route]
}

func (t *routes) get(host string) (Route, bool) {
	m := t.m.Load()
	if m == nil {
		return Route{}, false
	}
	r, ok := (*m)[host]
	return r, ok
}

func (t *routes) all() map[string]Route {
	m := t.m.Load()
	if m == nil {
		return map[string]Route{}
	}
	return maps.Clone(*m)
}

func (t *routes) replace(in map[string]Route) error {
	m := make(map[string]Route, len(in))
	for name, r := range in {
		host, err := hostName(name)
		if err != nil {
			return err
		}
		if err := r.validate(); err != nil {
			return fmt.Errorf("route for %s: %w", host, err)
		}
		if _, dup := m[host]; dup {
			return fmt.Errorf("two routes for %s: %w", host, errdefs.ErrInvalidArgument)
		}
		m[host] = r
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m.Store(&m)
	return nil
}

func (t *routes) set(name string, r Route) error {
	host, err := hostName(name)
	if err != nil {
		return err
	}
	if err := r.validate(); err != nil {
		return fmt.Errorf("route for %s: %w", host, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.all()
	m[host] = r
	t.m.Store(&m)
	return nil
}

func (t *routes) delete(name string) {
	host := normalizeHost(name)
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.all()
	delete(m, host)
	t.m.Store(&m)
}

// normalizeHost lowercases a host name and drops a final dot.
func normalizeHost(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// hostName checks that name is a DNS host name (letters, digits, hyphens, dots; labels
// of 1-63 bytes, 253 in all) and returns it normalized.
func hostName(name string) (string, error) {
	host := normalizeHost(name)
	if host == "" || len(host) > 253 {
		return "", fmt.Errorf("host name %q: want a DNS name of 1 to 253 bytes: %w", name, errdefs.ErrInvalidArgument)
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("host name %q: label %q: want 1 to 63 letters, digits or inner hyphens: %w", name, label, errdefs.ErrInvalidArgument)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return "", fmt.Errorf("host name %q: character %q: want letters, digits, hyphens and dots: %w", name, c, errdefs.ErrInvalidArgument)
			}
		}
	}
	return host, nil
}
