package mdns

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

type outcome int

const (
	stopped  outcome = iota + 1 // unpublished or closed
	won                         // probing found no other holder
	conflict                    // another host holds the name
	lost                        // a simultaneous probe won
	reprobe                     // a published name must be probed again
)

// run is a name's life: probe, announce, answer (the reader does that), and probe again
// under another name after a conflict, until the name is withdrawn.
func (r *Responder) run(ctx context.Context, e *entry) {
	defer close(e.done)
	r.emit(e, Event{Kind: EventProbing})
	for {
		r.setState(e, Probing)
		began := time.Now()
		switch r.probe(ctx, e) {
		case stopped:
			r.withdraw(e)
			return
		case conflict:
			r.flapWait(ctx, e)
			if from, ok := r.rename(e); ok {
				r.log.Warn("mdns: another host on the LAN has this name; taking the next one",
					"requested", e.requested, "taken", from, "name", r.snapshot(e).Host)
				r.emit(e, Event{Kind: EventRenamed, From: from})
			}
			continue
		case lost:
			r.log.Info("mdns: another host probed for the same name at the same time and won; probing again",
				"name", r.snapshot(e).Host)
			if !sleep(ctx, lostWait) {
				r.withdraw(e)
				return
			}
			continue
		}
		r.setState(e, Published)
		n := r.snapshot(e)
		elapsed := time.Since(began)
		r.log.Info("mdns: name published", "requested", n.Requested, "name", n.Host, "probing", elapsed.Round(time.Millisecond))
		r.emit(e, Event{Kind: EventPublished, Elapsed: elapsed})
		if r.hold(ctx, e) == stopped {
			r.withdraw(e)
			return
		}
		r.log.Warn("mdns: another host answered for a published name; probing for it again", "name", r.snapshot(e).Host)
		r.emit(e, Event{Kind: EventConflict})
	}
}

// probe sends the three probes (RFC 6762 section 8.1) and listens 250 ms after each.
func (r *Responder) probe(ctx context.Context, e *entry) outcome {
	e.drain()
	if !sleep(ctx, rand.N(probeWait)) {
		return stopped
	}
	for range probes {
		r.sendAll(e, func(host string, addr netip.Addr) *dns.Msg { return probe(host, addr) })
		t := time.NewTimer(probeInterval)
	listen:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return stopped
			case s := <-e.signals:
				switch s {
				case sigConflict:
					t.Stop()
					return conflict
				case sigLost:
					t.Stop()
					return lost
				}
			case <-t.C:
				break listen
			}
		}
	}
	return won
}

// hold announces a won name twice, a second apart, then keeps it until it is withdrawn
// (stopped) or must be probed again (reprobe). A changed address announces again.
func (r *Responder) hold(ctx context.Context, e *entry) outcome {
	t := time.NewTimer(0) // the first announcement at once
	defer t.Stop()
	left := announcements
	for {
		select {
		case <-ctx.Done():
			return stopped
		case s := <-e.signals:
			switch s {
			case sigConflict, sigReprobe:
				return reprobe
			case sigAnnounce:
				left = announcements
				t.Reset(0)
			}
		case <-t.C:
			if left > 0 {
				r.announce(e, ttl)
				left--
				if left > 0 {
					t.Reset(announceWait)
				}
			}
		}
	}
}

// withdraw says goodbye if the name was announced, and reports it.
func (r *Responder) withdraw(e *entry) {
	r.mu.Lock()
	announced := e.announced
	if r.hosts[e.host] == e {
		delete(r.hosts, e.host)
	}
	r.mu.Unlock()
	if announced {
		r.announce(e, 0)
	}
	n := r.snapshot(e)
	r.log.Info("mdns: name withdrawn", "requested", n.Requested, "name", n.Host)
	r.emit(e, Event{Kind: EventWithdrawn})
}

// announce multicasts the name's address on each interface (a goodbye when ttl is 0).
func (r *Responder) announce(e *entry, ttl uint32) {
	r.mu.Lock()
	if ttl > 0 {
		e.announced = true
	}
	now := time.Now()
	for idx := range r.ifaces {
		e.multicast[idx] = now
	}
	r.mu.Unlock()
	r.sendAll(e, func(host string, addr netip.Addr) *dns.Msg { return announcement(host, addr, ttl) })
}

// sendAll multicasts build(host, address there) on every interface where the name has an
// address.
func (r *Responder) sendAll(e *entry, build func(string, netip.Addr) *dns.Msg) {
	type out struct {
		ifc Interface
		msg *dns.Msg
	}
	var outs []out
	r.mu.Lock()
	for _, ifc := range r.ifaces {
		if addr, ok := e.addr(ifc); ok {
			outs = append(outs, out{ifc, build(e.host, addr)})
		}
	}
	r.mu.Unlock()
	for _, o := range outs {
		r.send(o.ifc, o.msg, group)
	}
}

// send writes m to dst out of ifc.
func (r *Responder) send(ifc Interface, m *dns.Msg, dst *net.UDPAddr) {
	b, err := m.Pack()
	if err != nil {
		r.log.Error("mdns: pack a message", "err", err)
		return
	}
	if _, err := r.conn.WriteTo(b, &ipv4.ControlMessage{IfIndex: ifc.Index}, dst); err != nil {
		r.log.Debug("mdns: send", "interface", ifc.Name, "to", dst, "err", err)
	}
}

// rename moves the name to its next free host name; false when the name was withdrawn
// meanwhile.
func (r *Responder) rename(e *entry) (from string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.entries[e.requested] != e {
		return "", false
	}
	from = e.host
	if r.hosts[e.host] == e {
		delete(r.hosts, e.host)
	}
	for {
		e.suffix = nextSuffix(e.suffix)
		e.host = hostName(e.requested, e.suffix)
		if r.hosts[e.host] == nil {
			break
		}
	}
	r.hosts[e.host] = e
	e.announced = false
	e.changedLocked()
	return from[:len(from)-1], true
}

// flapWait keeps the pace RFC 6762 section 8.1 asks for: after fifteen conflicts within
// ten seconds, wait five seconds before probing again.
func (r *Responder) flapWait(ctx context.Context, e *entry) {
	now := time.Now()
	r.mu.Lock()
	kept := e.conflicts[:0]
	for _, t := range e.conflicts {
		if now.Sub(t) < flapWindow {
			kept = append(kept, t)
		}
	}
	e.conflicts = append(kept, now)
	flapping := len(e.conflicts) >= flapCount
	r.mu.Unlock()
	if flapping {
		sleep(ctx, flapWait)
	}
}

func (r *Responder) setState(e *entry, s State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.state != s {
		e.state = s
		e.changedLocked()
	}
}

func (e *entry) changedLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

func (r *Responder) snapshot(e *entry) Name {
	r.mu.Lock()
	defer r.mu.Unlock()
	return e.nameLocked()
}

// emit hands an event to Config.OnEvent; only the name's own goroutine calls it, so the
// events of one name arrive in order.
func (r *Responder) emit(e *entry, ev Event) {
	if r.cfg.OnEvent == nil {
		return
	}
	ev.Name = r.snapshot(e)
	r.cfg.OnEvent(ev)
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
