// Package expose makes the host match netd's bindings and the containers on the bridge.
// From the attachments (container, address, declared interfaces) and the bindings it
// derives, on every change, the whole of what should be: the nftables state (isolation,
// NAT, host ports), the proxy's routes and certificates, the mDNS names, the onion
// services and the internal DNS names; then each part is brought to it. Each part
// applies only differences, so a Sync that finds everything in place changes nothing,
// and netd started again (after a SIGTERM or a kill -9) rebuilds the same state without
// duplicating any of it.
//
// A binding is live while its container is attached (running); a stopped container's
// bindings stay in the store, with their host port, LAN name and onion key, and come back
// when it starts again.
package expose

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/netd/internal/bindings"
	"hearth.dev/services/netd/internal/bridge"
	"hearth.dev/services/netd/internal/certsource"
	"hearth.dev/services/netd/internal/coalesce"
	"hearth.dev/services/netd/internal/dns"
	"hearth.dev/services/netd/internal/firewall"
	"hearth.dev/services/netd/internal/mdns"
	"hearth.dev/services/netd/internal/proxy"
	"hearth.dev/services/netd/internal/tor"
)

// Config holds the parts the Exposer drives. A nil part is not configured: what needs it
// is refused with a message saying how to configure it (Tor, domains) or left out (no
// mDNS: names are not announced; no DNS; no firewall).
type Config struct {
	Network  *bridge.Network
	Store    *bindings.Store
	Firewall *firewall.Firewall
	// Services are the gateway's ports every container may reach (DNS, the proxy).
	Services []firewall.Port
	Proxy    *proxy.Proxy
	// HTTPSPort is the proxy's HTTPS port, for the addresses shown (443: none shown).
	HTTPSPort int
	MDNS      *mdns.Responder
	Tor       *tor.Controller
	TorKeys   *tor.KeyStore
	DNS       *dns.Server
	Certs     *certsource.Client
	Log       *slog.Logger
}

// Exposer keeps the host in line with the bindings.
type Exposer struct {
	cfg  Config
	log  *slog.Logger
	kick chan struct{}

	gate   coalesce.Gate // Syncs asked for during a Sync share the next
	mu     sync.Mutex    // one Sync at a time
	status map[string]string
	// inLine says the last Sync brought every part in line without an error: a request
	// that changed nothing (a binding that was there, a container attached again) then
	// needs no Sync. Each Sync is O(bindings + containers): one per container adopted by a
	// restarted containerd-lite made its restart O(N²).
	inLine bool
	onions map[string]string // binding id → onion address
	// lanCertsMissing says the last Sync could not get a LAN name's certificate (certd
	// down, or not started yet): Run syncs again soon, not only after a minute.
	lanCertsMissing bool
	certsMissing    chan struct{} // a Sync tells Run that it lacked one

	certMu  sync.Mutex
	served  map[string]served // host name → the certificate the proxy serves for it
	pending map[string]bool   // host names whose certificate is being obtained
}

type served struct {
	id, serial string
	acme       bool
}

// New returns an Exposer of cfg; Sync brings the host in line, Run keeps it there.
func New(cfg Config) *Exposer {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPSPort == 0 {
		cfg.HTTPSPort = 443
	}
	return &Exposer{cfg: cfg, log: log, kick: make(chan struct{}, 1), certsMissing: make(chan struct{}, 1), status: map[string]string{}, onions: map[string]string{},
		served: map[string]served{}, pending: map[string]bool{}}
}

// SetMDNS gives the Exposer the mDNS responder (made after it, since the responder's
// events come to OnMDNSEvent).
func (e *Exposer) SetMDNS(r *mdns.Responder) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cfg.MDNS = r
}

// SetDNS gives the Exposer the DNS server (made once the bridge has its gateway).
func (e *Exposer) SetDNS(s *dns.Server) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cfg.DNS = s
}

// View is a binding with where it answers and what is in its way.
type View struct {
	bindings.Binding
	Address string
	Name    string // LAN: the name answered, "hello-pg.local" or "hello-pg-2.local"
	Status  string
}

// Create makes a binding (or returns the one there is) and brings it live. A domain's
// certificate is obtained before the binding is kept: a CA's refusal is the caller's
// answer, and nothing changes.
func (e *Exposer) Create(ctx context.Context, r bindings.Request) (View, error) {
	b, _, err := e.cfg.Store.Prepare(r)
	if err != nil {
		return View{}, err
	}
	switch b.Exposure {
	case bindings.Tor:
		if e.cfg.Tor == nil {
			return View{}, fmt.Errorf("%s: %w (start netd with --tor managed, or --tor ADDRESS of a tor control port)", b.ID, tor.ErrNotConfigured)
		}
	case bindings.Domain:
		if e.cfg.Proxy == nil {
			return View{}, fmt.Errorf("%s: netd serves no HTTPS (its --https-addr is empty): %w", b.ID, errdefs.ErrFailedPrecondition)
		}
		if !b.Passthrough {
			if err := e.ensureCert(ctx, b.Domain, true); err != nil {
				return View{}, fmt.Errorf("bind %s: %w", b.Domain, err)
			}
		}
	case bindings.LAN:
		if b.HTTP && e.cfg.Proxy == nil {
			return View{}, fmt.Errorf("%s: netd serves no HTTPS (its --https-addr is empty): %w", b.ID, errdefs.ErrFailedPrecondition)
		}
	}
	b, created, err := e.cfg.Store.Create(r)
	if err != nil {
		return View{}, err
	}
	if created {
		e.log.Info("binding created", "id", b.ID, "port", b.Port, "domain", b.Domain, "host_port", b.HostPort)
	}
	if err := e.SyncIfChanged(ctx, created); err != nil {
		return View{}, err
	}
	return e.view(b), nil
}

// Delete removes one binding (id), or all of a container's (container; its onion keys are
// forgotten with them: the package is gone). It returns the ids removed.
func (e *Exposer) Delete(ctx context.Context, id, container string) ([]string, error) {
	gone, err := e.cfg.Store.Delete(id, container)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, b := range gone {
		ids = append(ids, b.ID)
		e.log.Info("binding deleted", "id", b.ID)
		if id == "" && b.Exposure == bindings.Tor && e.cfg.TorKeys != nil {
			if err := e.cfg.TorKeys.Delete(torKeyName(b)); err != nil {
				e.log.Warn("forget an onion key", "id", b.ID, "error", err)
			}
		}
	}
	return ids, e.Sync(ctx)
}

// List returns the bindings, of one container when container is set.
func (e *Exposer) List(container string) []View {
	var out []View
	for _, b := range e.cfg.Store.List(container) {
		out = append(out, e.view(b))
	}
	return out
}

// Kick asks Run for a Sync soon (after an mDNS rename, a container's coming or going).
func (e *Exposer) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// OnMDNSEvent is the mDNS responder's Config.OnEvent: a rename is logged and brings
// the routes and certificates to the new name.
func (e *Exposer) OnMDNSEvent(ev mdns.Event) {
	switch ev.Kind {
	case mdns.EventRenamed:
		e.log.Warn("another host on the LAN holds the name: renamed", "name", ev.From, "now", ev.Name.Host)
		e.Kick()
	case mdns.EventPublished:
		e.log.Info("LAN name announced", "name", ev.Name.Host, "after", ev.Elapsed.Round(time.Millisecond))
		e.Kick()
	case mdns.EventConflict:
		e.log.Warn("another host answered for a LAN name: probing again", "name", ev.Name.Host)
	}
}

// Run keeps the host in line until ctx ends: a Sync on every Kick and every minute,
// and certificates swapped as certd renews them.
func (e *Exposer) Run(ctx context.Context) error {
	if e.cfg.Certs != nil {
		go e.cfg.Certs.Watch(ctx, e.renewed)
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	// A LAN name whose certificate certd could not give (whichever Sync found that) is
	// asked for again after certRetryMin, doubling up to the minute of the ticker.
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	armed, backoff := false, certRetryMin
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-e.certsMissing:
			if !armed {
				retry.Reset(backoff)
				armed, backoff = true, min(2*backoff, time.Minute)
			}
			continue
		case <-e.kick:
		case <-t.C:
		case <-retry.C:
			armed = false
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := e.Sync(sctx); err != nil && ctx.Err() == nil {
			e.log.Error("bring the network in line with the bindings", "error", err)
		}
		cancel()
		e.mu.Lock()
		if !e.lanCertsMissing {
			backoff = certRetryMin
		}
		e.mu.Unlock()
	}
}

// certRetryMin is the first wait before a LAN certificate certd could not give is asked
// for again.
const certRetryMin = 500 * time.Millisecond

// renewed serves a renewed or re-issued certificate in place of the one it replaces.
func (e *Exposer) renewed(c certsource.Cert) {
	e.certMu.Lock()
	defer e.certMu.Unlock()
	for name, s := range e.served {
		if s.id == c.ID && s.serial != c.Serial && e.cfg.Proxy != nil {
			if err := e.cfg.Proxy.Certs().Set(name, c.TLS); err != nil {
				e.log.Warn("serve a renewed certificate", "name", name, "error", err)
				continue
			}
			s.serial = c.Serial
			e.served[name] = s
			e.log.Info("serving a renewed certificate", "name", name, "id", c.ID, "serial", c.Serial)
		}
	}
}

// live is one binding of an attached container.
type live struct {
	bindings.Binding
	addr netip.Addr
	host string // LAN: the name answered
}

// Sync brings every part in line with the attachments and bindings. Errors of one part
// do not stop the others; they are joined. Callers that ask while a Sync is under way
// share the next one, which begins after they asked.
func (e *Exposer) Sync(ctx context.Context) error {
	return e.gate.Do(ctx, e.sync)
}

func (e *Exposer) sync(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	atts := map[string]bridge.Attachment{}
	for _, a := range e.cfg.Network.Attachments() {
		atts[a.Container] = a
	}
	status := map[string]string{}
	var lives []live
	for _, b := range e.cfg.Store.List("") {
		a, ok := atts[b.Container]
		if !ok {
			status[b.ID] = "the container is not running"
			continue
		}
		addr, err := netip.ParseAddr(a.Address)
		if err != nil {
			status[b.ID] = "the container has no address"
			continue
		}
		l := live{Binding: b, addr: addr}
		if b.Exposure == bindings.LAN {
			l.host = e.lanHost(b.LANName)
		}
		lives = append(lives, l)
	}
	var errs []error
	if err := e.syncDNS(atts); err != nil {
		errs = append(errs, fmt.Errorf("internal DNS: %w", err))
	}
	if err := e.syncFirewall(atts, lives); err != nil {
		errs = append(errs, fmt.Errorf("firewall: %w", err))
	}
	e.syncMDNS(lives, status)
	e.syncProxy(ctx, lives, status)
	e.syncTor(ctx, lives, status)
	e.status = status
	e.inLine = len(errs) == 0 && ctx.Err() == nil && !e.lanCertsMissing
	if e.lanCertsMissing {
		select {
		case e.certsMissing <- struct{}{}:
		default:
		}
	}
	return errors.Join(errs...)
}

// SyncIfChanged is Sync, unless nothing changed (changed false) since a Sync that brought
// everything in line.
func (e *Exposer) SyncIfChanged(ctx context.Context, changed bool) error {
	if !changed {
		e.mu.Lock()
		inLine := e.inLine
		e.mu.Unlock()
		if inLine {
			return nil
		}
	}
	return e.Sync(ctx)
}

func (e *Exposer) syncDNS(atts map[string]bridge.Attachment) error {
	if e.cfg.DNS == nil {
		return nil
	}
	names := map[string]netip.Addr{}
	for c, a := range atts {
		if addr, err := netip.ParseAddr(a.Address); err == nil {
			names[c] = addr
		}
	}
	return e.cfg.DNS.Replace(names)
}

func (e *Exposer) syncFirewall(atts map[string]bridge.Attachment, lives []live) error {
	if e.cfg.Firewall == nil {
		return nil
	}
	st := firewall.State{Bridge: e.cfg.Network.Name, Subnet: e.cfg.Network.Subnet, Services: e.cfg.Services}
	ports := map[string][]firewall.Port{}
	for c, a := range atts {
		for _, i := range a.Interfaces {
			ports[c] = addPort(ports[c], firewall.Port{Proto: firewall.TCP, Port: uint16(i.Port)})
		}
	}
	for _, l := range lives {
		// A bound port is one the package declares (containerd-lite checks it); a
		// container started before it told netd its interfaces still gets it.
		ports[l.Container] = addPort(ports[l.Container], firewall.Port{Proto: firewall.TCP, Port: uint16(l.Port)})
		if l.Exposure == bindings.LAN && l.HostPort != 0 {
			st.Forwards = append(st.Forwards, firewall.Forward{Proto: firewall.TCP, HostPort: uint16(l.HostPort), Container: l.Container, Port: uint16(l.Port)})
		}
	}
	for c, a := range atts {
		addr, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		st.Containers = append(st.Containers, firewall.Container{Name: c, Addr: addr, Interfaces: ports[c]})
	}
	ch, err := e.cfg.Firewall.Apply(st)
	if err != nil {
		return err
	}
	if !ch.None() {
		e.log.Info("firewall updated", "rules_added", ch.RulesAdded, "rules_deleted", ch.RulesDeleted, "chains_added", ch.ChainsAdded, "table_created", ch.TableCreated)
	}
	return nil
}

func addPort(list []firewall.Port, p firewall.Port) []firewall.Port {
	for _, q := range list {
		if q == p {
			return list
		}
	}
	return append(list, p)
}

// lanHost is the name answered for a LAN name: the mDNS responder's (renamed after a
// conflict), or name.local when no responder announces it.
func (e *Exposer) lanHost(name string) string {
	if e.cfg.MDNS != nil {
		if n, ok := e.cfg.MDNS.Lookup(name); ok {
			return n.Host
		}
	}
	return name + ".local"
}

func (e *Exposer) syncMDNS(lives []live, status map[string]string) {
	if e.cfg.MDNS == nil {
		return
	}
	want := map[string]bool{}
	for _, l := range lives {
		if l.Exposure != bindings.LAN {
			continue
		}
		want[l.LANName] = true
		if _, ok := e.cfg.MDNS.Lookup(l.LANName); !ok {
			if err := e.cfg.MDNS.Publish(l.LANName, nil); err != nil {
				status[l.ID] = "announce its name on the LAN: " + err.Error()
				continue
			}
			e.log.Info("announcing a LAN name", "name", l.LANName+".local", "binding", l.ID)
		}
		if n, ok := e.cfg.MDNS.Lookup(l.LANName); ok && n.State != mdns.Published {
			status[l.ID] = "probing the LAN for " + n.Host
		}
	}
	for _, n := range e.cfg.MDNS.Names() {
		if !want[n.Requested] {
			e.cfg.MDNS.Unpublish(n.Requested)
			e.log.Info("LAN name withdrawn", "name", n.Host)
		}
	}
}

func (e *Exposer) syncProxy(ctx context.Context, lives []live, status map[string]string) {
	e.lanCertsMissing = false
	if e.cfg.Proxy == nil {
		return
	}
	routes := map[string]proxy.Route{}
	certs := map[string]bool{} // name → from ACME
	for _, l := range lives {
		var host string
		switch {
		case l.Exposure == bindings.LAN && l.HTTP:
			host = l.host
		case l.Exposure == bindings.Domain:
			host = l.Domain
		default:
			continue
		}
		r := proxy.Route{Backend: netip.AddrPortFrom(l.addr, uint16(l.Port)).String(), Kind: proxy.KindHTTP}
		if l.Passthrough {
			r.Kind = proxy.KindPassthrough
		} else {
			certs[host] = l.Exposure == bindings.Domain
		}
		routes[host] = r
	}
	if err := e.cfg.Proxy.SetRoutes(routes); err != nil {
		for _, l := range lives {
			status[l.ID] = "route: " + err.Error()
		}
	}
	e.certMu.Lock()
	for name := range e.served {
		if _, ok := certs[name]; !ok {
			e.cfg.Proxy.Certs().Delete(name)
			delete(e.served, name)
		}
	}
	e.certMu.Unlock()
	for name, acme := range certs {
		if e.hasCert(name) {
			continue
		}
		if acme {
			// An ACME certificate can take a while; the binding waits for it.
			e.certMu.Lock()
			started := !e.pending[name]
			e.pending[name] = true
			e.certMu.Unlock()
			if started {
				go func() {
					cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
					defer cancel()
					if err := e.ensureCert(cctx, name, true); err != nil {
						e.log.Error("certificate of a domain", "domain", name, "error", err)
					}
					e.certMu.Lock()
					delete(e.pending, name)
					e.certMu.Unlock()
				}()
			}
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		if err := e.ensureCert(cctx, name, false); err != nil {
			e.log.Error("certificate of a LAN name: asking again soon", "name", name, "error", err)
			e.lanCertsMissing = true
		}
		cancel()
	}
	for _, l := range lives {
		host := l.host
		if l.Exposure == bindings.Domain {
			host = l.Domain
		}
		if _, ok := certs[host]; ok && !e.hasCert(host) && status[l.ID] == "" {
			status[l.ID] = "waiting for its certificate"
		}
	}
}

func (e *Exposer) hasCert(name string) bool {
	e.certMu.Lock()
	defer e.certMu.Unlock()
	_, ok := e.served[name]
	return ok
}

// ensureCert obtains name's certificate from certd and serves it.
func (e *Exposer) ensureCert(ctx context.Context, name string, acme bool) error {
	if e.cfg.Certs == nil {
		return fmt.Errorf("certd is not configured (netd's --certd-socket): %w", errdefs.ErrFailedPrecondition)
	}
	c, err := e.cfg.Certs.Issue(ctx, name, acme)
	if err != nil {
		return err
	}
	e.certMu.Lock()
	defer e.certMu.Unlock()
	if err := e.cfg.Proxy.Certs().Set(name, c.TLS); err != nil {
		return err
	}
	if old, ok := e.served[name]; !ok || old.id != c.ID {
		e.log.Info("serving a certificate", "name", name, "id", c.ID, "serial", c.Serial, "acme", acme)
	}
	e.served[name] = served{id: c.ID, serial: c.Serial, acme: acme}
	return nil
}

func torKeyName(b bindings.Binding) string { return b.Container + "." + b.Interface }

// torPort is the onion address's port: 80 for HTTP (browsers over Tor speak plain
// HTTP to an onion, whose transport is already end-to-end encrypted), else the
// interface's own.
func torPort(b bindings.Binding) int {
	if b.HTTP {
		return 80
	}
	return b.Port
}

func (e *Exposer) syncTor(ctx context.Context, lives []live, status map[string]string) {
	if e.cfg.Tor == nil || e.cfg.TorKeys == nil {
		for _, l := range lives {
			if l.Exposure == bindings.Tor {
				status[l.ID] = tor.ErrNotConfigured.Error()
			}
		}
		return
	}
	want := map[string]bool{}
	current := map[string][]tor.Port{}
	for _, s := range e.cfg.Tor.Services() {
		if s.Added {
			current[s.ID] = s.Ports
		}
	}
	for _, l := range lives {
		if l.Exposure != bindings.Tor {
			continue
		}
		key, created, err := e.cfg.TorKeys.LoadOrCreate(torKeyName(l.Binding))
		if err != nil {
			status[l.ID] = "onion key: " + err.Error()
			continue
		}
		if created {
			e.log.Info("made an onion key", "binding", l.ID, "address", key.Address())
		}
		want[key.ServiceID()] = true
		e.onions[l.ID] = key.Address()
		svc := tor.Service{Key: key, Ports: []tor.Port{{Virtual: torPort(l.Binding), Target: netip.AddrPortFrom(l.addr, uint16(l.Port)).String()}}}
		if p, ok := current[key.ServiceID()]; ok && len(p) == 1 && p[0] == svc.Ports[0] {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if _, err := e.cfg.Tor.Add(actx, svc); err != nil {
			status[l.ID] = err.Error()
		} else {
			e.log.Info("onion service added", "binding", l.ID, "address", key.Address())
		}
		cancel()
	}
	for _, s := range e.cfg.Tor.Services() {
		if !want[s.ID] {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := e.cfg.Tor.Remove(rctx, s.ID); err != nil {
				e.log.Warn("remove an onion service", "id", s.ID, "error", err)
			}
			cancel()
		}
	}
	for _, s := range e.cfg.Tor.Services() {
		if s.Err != nil {
			for _, l := range lives {
				if e.onions[l.ID] == s.ID+".onion" {
					status[l.ID] = "tor refused it: " + s.Err.Error()
				}
			}
		}
	}
}

// view says where a binding answers.
func (e *Exposer) view(b bindings.Binding) View {
	v := View{Binding: b}
	e.mu.Lock()
	defer e.mu.Unlock()
	v.Status = e.status[b.ID]
	onion := e.onions[b.ID]
	port := ""
	if e.cfg.HTTPSPort != 443 {
		port = ":" + strconv.Itoa(e.cfg.HTTPSPort)
	}
	switch b.Exposure {
	case bindings.LAN:
		v.Name = e.lanHost(b.LANName)
		if b.HTTP {
			v.Address = "https://" + v.Name + port
		} else {
			v.Address = v.Name + ":" + strconv.Itoa(b.HostPort)
		}
	case bindings.Domain:
		v.Address = "https://" + b.Domain + port
	case bindings.Tor:
		if onion == "" && e.cfg.TorKeys != nil {
			if k, err := e.cfg.TorKeys.Load(torKeyName(b)); err == nil {
				onion = k.Address()
			}
		}
		if onion != "" {
			if b.HTTP {
				v.Address = "http://" + onion
			} else {
				v.Address = onion + ":" + strconv.Itoa(b.Port)
			}
		}
	}
	return v
}
