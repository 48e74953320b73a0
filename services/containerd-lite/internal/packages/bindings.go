package packages

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	netv1 "hearth.dev/proto/hearth/net/v1"
)

// Net is netd's bindings, as packages use them (netdclient.Client).
type Net interface {
	Bind(ctx context.Context, req *netv1.CreateBindingRequest) (*netv1.Binding, error)
	Unbind(ctx context.Context, id, container string) ([]string, error)
	Bindings(ctx context.Context, container string) ([]*netv1.Binding, error)
}

var exposureWords = map[netv1.Exposure]string{netv1.Exposure_EXPOSURE_LAN: "lan", netv1.Exposure_EXPOSURE_DOMAIN: "domain", netv1.Exposure_EXPOSURE_TOR: "tor"}

// interfaceOf finds an installed package's interface and checks it may be exposed where asked.
func (m *Manager) interfaceOf(id, iface string, ex netv1.Exposure) (manifest.Interface, error) {
	p, err := m.opts.Records.GetPackage(id)
	if err != nil {
		return manifest.Interface{}, err
	}
	mf, err := manifest.Parse(p.Manifest)
	if err != nil {
		return manifest.Interface{}, err
	}
	it, ok := mf.Interfaces[iface]
	if !ok {
		names := slices.Sorted(maps.Keys(mf.Interfaces))
		return it, fmt.Errorf("%s has no interface %q (it has: %s): %w", id, iface, strings.Join(names, ", "), errdefs.ErrInvalidArgument)
	}
	word, ok := exposureWords[ex]
	if !ok {
		return it, fmt.Errorf("say where to expose %s/%s: lan, domain or tor: %w", id, iface, errdefs.ErrInvalidArgument)
	}
	if !slices.Contains(it.Expose, word) {
		return it, fmt.Errorf("%s's interface %s may be exposed on %s only (its manifest's expose), not on %s: %w", id, iface, strings.Join(it.Expose, ", "), word, errdefs.ErrFailedPrecondition)
	}
	return it, nil
}

// Bind exposes an installed package's interface where its manifest allows.
func (m *Manager) Bind(ctx context.Context, id, iface string, ex netv1.Exposure, domain string, passthrough bool) (*netv1.Binding, error) {
	if m.opts.Net == nil {
		return nil, fmt.Errorf("this containerd-lite has no netd: %w", errdefs.ErrUnavailable)
	}
	it, err := m.interfaceOf(id, iface, ex)
	if err != nil {
		return nil, err
	}
	if ex == netv1.Exposure_EXPOSURE_DOMAIN && domain == "" {
		return nil, fmt.Errorf("give the domain to bind %s/%s to (--domain example.org): %w", id, iface, errdefs.ErrInvalidArgument)
	}
	if ex != netv1.Exposure_EXPOSURE_DOMAIN && domain != "" {
		return nil, fmt.Errorf("a domain goes with a domain binding only: %w", errdefs.ErrInvalidArgument)
	}
	proto := netv1.Protocol_PROTOCOL_HTTP
	if it.Protocol == "tcp" {
		proto = netv1.Protocol_PROTOCOL_TCP
	}
	return m.opts.Net.Bind(ctx, &netv1.CreateBindingRequest{Container: id, Interface: iface, Port: uint32(it.Port), Protocol: proto, Exposure: ex, Domain: domain, Passthrough: passthrough})
}

// Unbind removes one of a package's bindings: its LAN or Tor binding of an interface,
// or a domain of it (every domain of it when domain is empty).
func (m *Manager) Unbind(ctx context.Context, id, iface string, ex netv1.Exposure, domain string) error {
	if m.opts.Net == nil {
		return fmt.Errorf("this containerd-lite has no netd: %w", errdefs.ErrUnavailable)
	}
	if _, err := m.interfaceOf(id, iface, ex); err != nil {
		return err
	}
	if ex != netv1.Exposure_EXPOSURE_DOMAIN {
		_, err := m.opts.Net.Unbind(ctx, fmt.Sprintf("%s/%s/%s", id, iface, exposureWords[ex]), "")
		return err
	}
	bs, err := m.opts.Net.Bindings(ctx, id)
	if err != nil {
		return err
	}
	found := false
	for _, b := range bs {
		if b.GetInterface() == iface && b.GetExposure() == ex && (domain == "" || strings.EqualFold(strings.TrimSuffix(domain, "."), b.GetDomain())) {
			if _, err := m.opts.Net.Unbind(ctx, b.GetId(), ""); err != nil {
				return err
			}
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%s/%s is bound to no domain %s (hearthctl addresses %s lists its bindings): %w", id, iface, domain, id, errdefs.ErrNotFound)
	}
	return nil
}

// Addresses lists where an installed package answers.
func (m *Manager) Addresses(ctx context.Context, id string) ([]*netv1.Binding, error) {
	if _, err := m.opts.Records.GetPackage(id); err != nil {
		return nil, err
	}
	if m.opts.Net == nil {
		return nil, fmt.Errorf("this containerd-lite has no netd: %w", errdefs.ErrUnavailable)
	}
	return m.opts.Net.Bindings(ctx, id)
}
