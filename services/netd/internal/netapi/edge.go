package netapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"hearth.dev/internal/daemon"
	"hearth.dev/services/netd/internal/bindings"
	"hearth.dev/services/netd/internal/bridge"
	"hearth.dev/services/netd/internal/certsource"
	"hearth.dev/services/netd/internal/dns"
	"hearth.dev/services/netd/internal/expose"
	"hearth.dev/services/netd/internal/firewall"
	"hearth.dev/services/netd/internal/mdns"
	"hearth.dev/services/netd/internal/proxy"
	"hearth.dev/services/netd/internal/tor"
)

// edge is netd's parts: the bridge, the firewall, the proxy and its listeners, the mDNS
// responder, tor, the DNS server, and the Exposer that drives them from the bindings.
type edge struct {
	f      *Flags
	p      parsed
	log    *slog.Logger
	net    *bridge.Network
	exp    *expose.Exposer
	proxy  *proxy.Proxy
	tlsL   net.Listener
	httpL  net.Listener
	mdns   *mdns.Responder
	tor    *tor.Controller
	torSup *tor.Supervisor
	dns    *dns.Server
	cfg    expose.Config // what start gathers for the Exposer
}

// start makes the parts that need no bridge yet; reconcile does the rest.
func (f *Flags) start(ctx context.Context, env *daemon.Env) (_ *edge, err error) {
	p, err := f.parse()
	if err != nil {
		return nil, err
	}
	e := &edge{f: f, p: p, log: env.Logger}
	defer func() {
		if err != nil {
			_ = e.close()
		}
	}()
	if e.net, err = bridge.New(f.Bridge, p.subnet, env.StateDir, env.Logger); err != nil {
		return nil, err
	}
	store, err := bindings.Open(env.StateDir, p.ports)
	if err != nil {
		return nil, err
	}
	// One table per bridge, named after it: netds of two bridges leave each other alone.
	fw, err := firewall.New(firewall.Config{Table: f.Bridge, Log: env.Logger})
	if err != nil {
		return nil, err
	}
	certd := f.CertdSocket
	if certd == "" {
		certd = filepath.Join(env.RunDir, "certd.sock")
	}
	e.cfg = expose.Config{Network: e.net, Store: store, Firewall: fw, HTTPSPort: p.httpsPort,
		Certs: &certsource.Client{Socket: certd, Log: env.Logger}, Log: env.Logger}
	if f.DNS {
		e.cfg.Services = append(e.cfg.Services, firewall.Port{Proto: firewall.UDP, Port: 53}, firewall.Port{Proto: firewall.TCP, Port: 53})
	}
	for _, port := range p.proxyPort {
		e.cfg.Services = append(e.cfg.Services, firewall.Port{Proto: firewall.TCP, Port: port})
	}
	if f.HTTPSAddr != "" {
		e.proxy = proxy.New(proxy.Config{Logger: env.Logger})
		e.cfg.Proxy = e.proxy
	}
	if err := e.startTor(ctx, env); err != nil {
		return nil, err
	}
	e.exp = expose.New(e.cfg)
	if p.lan == nil || len(p.lan) > 0 {
		lister := mdns.LAN(f.Bridge, "hv*", "hp*", "lo")
		if p.lan != nil {
			lister = mdns.Named(p.lan...)
		}
		if e.mdns, err = mdns.New(mdns.Config{Interfaces: lister, Log: env.Logger, OnEvent: e.exp.OnMDNSEvent}); err != nil {
			return nil, fmt.Errorf("mDNS (--lan-interfaces): %w", err)
		}
		e.exp.SetMDNS(e.mdns)
	}
	return e, nil
}

func (e *edge) startTor(ctx context.Context, env *daemon.Env) error {
	addr := e.f.Tor
	switch addr {
	case "off":
		return nil
	case "managed":
		sup, err := tor.Supervise(ctx, tor.ManagedConfig{Dir: filepath.Join(env.StateDir, "tor"), DisableNetwork: e.f.TorNoNetwork, Log: env.Logger})
		if err != nil {
			return fmt.Errorf("--tor managed: %w", err)
		}
		e.torSup = sup
		addr = sup.ControlAddress()
	}
	keys, err := tor.OpenKeyStore(filepath.Join(env.StateDir, "onion-keys"))
	if err != nil {
		return err
	}
	c, err := tor.NewController(tor.Config{Address: addr, Log: env.Logger})
	if err != nil {
		return fmt.Errorf("--tor: %w", err)
	}
	e.tor = c
	e.cfg.Tor, e.cfg.TorKeys = c, keys
	return nil
}

// reconcile brings the bridge up, starts the DNS server on its gateway and brings
// everything the bindings ask for in line.
func (e *edge) reconcile(ctx context.Context) error {
	if err := e.net.Reconcile(); err != nil {
		return err
	}
	// The listeners open once the bridge is up: an address may be its gateway's.
	if e.proxy != nil && e.tlsL == nil {
		l, err := net.Listen("tcp", e.f.HTTPSAddr)
		if err != nil {
			return fmt.Errorf("--https-addr: %w", err)
		}
		e.tlsL = l
		if e.f.HTTPAddr != "" {
			if e.httpL, err = net.Listen("tcp", e.f.HTTPAddr); err != nil {
				return fmt.Errorf("--http-addr: %w", err)
			}
		}
	}
	if e.f.DNS && e.dns == nil {
		s, err := dns.Listen(dns.Config{Addr: gatewayPort(e.net), Domain: e.f.InternalDomain, Clients: []netip.Prefix{e.net.Subnet}, Log: e.log})
		if err != nil {
			return fmt.Errorf("DNS on the gateway (--dns): %w", err)
		}
		e.dns = s
		e.exp.SetDNS(s)
	}
	return e.exp.Sync(ctx)
}

// run serves the proxy and keeps the bindings in line until ctx ends.
func (e *edge) run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- e.exp.Run(ctx) }()
	if e.proxy != nil {
		go func() { errc <- e.proxy.Serve(ctx, e.tlsL, e.httpL, 5*time.Second) }()
	} else {
		errc <- nil
	}
	return errors.Join(<-errc, <-errc)
}

func (e *edge) close() error {
	var errs []error
	if e.mdns != nil {
		errs = append(errs, e.mdns.Close())
	}
	if e.dns != nil {
		errs = append(errs, e.dns.Close())
	}
	if e.tor != nil {
		errs = append(errs, e.tor.Close())
	}
	if e.torSup != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		errs = append(errs, e.torSup.Stop(ctx))
		cancel()
	}
	for _, l := range []net.Listener{e.tlsL, e.httpL} {
		if l != nil {
			_ = l.Close()
		}
	}
	return errors.Join(errs...)
}
