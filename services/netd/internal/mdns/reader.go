package mdns

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Limits on the work one packet can ask for.
const (
	maxQuestions = 32
	maxRecords   = 64
)

// read receives every packet and answers or takes note of it at once: answers for our
// unique names go out without delay (RFC 6762 section 6).
func (r *Responder) read() {
	defer r.wg.Done()
	buf := make([]byte, maxPacket)
	for {
		n, cm, src, err := r.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Debug("mdns: receive", "err", err)
			continue
		}
		u, ok := src.(*net.UDPAddr)
		if !ok || cm == nil {
			continue
		}
		dst, _ := netip.AddrFromSlice(cm.Dst)
		r.handle(buf[:n], cm.IfIndex, dst.Unmap(), u.AddrPort())
	}
}

// handle answers a query or checks a response for conflicts.
func (r *Responder) handle(b []byte, ifIndex int, dst netip.Addr, src netip.AddrPort) {
	ifc, reply, to := r.process(b, ifIndex, dst, src, time.Now())
	if reply != nil {
		r.send(ifc, reply, net.UDPAddrFromAddrPort(to))
	}
}

// process reads one packet: a query gets its reply (nil when there is none to give), a
// response is checked for conflicts. Packets from interfaces we do not serve are ignored,
// and so is a packet sent to our unicast address from off the link (RFC 6762 section 11).
func (r *Responder) process(b []byte, ifIndex int, dst netip.Addr, src netip.AddrPort, now time.Time) (Interface, *dns.Msg, netip.AddrPort) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil || m.Opcode != dns.OpcodeQuery {
		return Interface{}, nil, netip.AddrPort{}
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	r.mu.Lock()
	ifc, ok := r.ifaces[ifIndex]
	r.mu.Unlock()
	if !ok || (dst != groupAddr && !ifc.onLink(src.Addr())) {
		return Interface{}, nil, netip.AddrPort{}
	}
	if m.Response {
		r.response(ifc, m, src)
		return Interface{}, nil, netip.AddrPort{}
	}
	reply, to := r.answer(ifc, m, src, now)
	return ifc, reply, to
}

// response looks for records of our names with other data: during probing that is a
// conflict (rename), once published it makes the name probe again (RFC 6762 section 9).
// Goodbyes and records with our own addresses are no conflict.
func (r *Responder) response(ifc Interface, m *dns.Msg, src netip.AddrPort) {
	if src.Port() != Port { // RFC 6762 section 11: responses come from port 5353
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := 0
	for _, rrs := range [][]dns.RR{m.Answer, m.Extra} {
		for _, rr := range rrs {
			if seen++; seen > maxRecords {
				return
			}
			e := r.hosts[strings.ToLower(rr.Header().Name)]
			if e == nil || rr.Header().Ttl == 0 {
				continue
			}
			a, ok := addrOf(rr)
			if !ok || r.ourAddrLocked(e, a) {
				continue
			}
			r.log.Debug("mdns: conflicting answer", "name", e.host, "from", src, "interface", ifc.Name, "address", a)
			e.notify(sigConflict)
		}
	}
}

// answer builds the reply to a query, and says where it goes. It also breaks the tie
// with a host probing for a name we are probing for (RFC 6762 section 8.2).
//   - A one-shot query (source port not 5353) gets a unicast reply to its source with
//     its ID and question, TTL at most 10, no cache-flush bit (section 6.7).
//   - A query whose questions all ask for a unicast reply (QU) gets one, to its source.
//   - Otherwise the reply is multicast, at most once a second per name and interface
//     (four times when answering a probe), and not for records the querier lists as
//     known with at least half their TTL left (section 7.1).
func (r *Responder) answer(ifc Interface, m *dns.Msg, src netip.AddrPort, now time.Time) (*dns.Msg, netip.AddrPort) {
	legacy := src.Port() != Port
	probing := len(m.Ns) > 0
	qs := m.Question
	if len(qs) > maxQuestions {
		qs = qs[:maxQuestions]
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if probing {
		r.tieBreakLocked(ifc, qs, m.Ns)
	}
	allQU := true
	for _, q := range qs {
		allQU = allQU && q.Qclass&unicastResponse != 0
	}
	multicast := !legacy && !allQU
	limit := time.Second
	if probing {
		limit = probeInterval
	}
	var answers, extra []dns.RR
	var answered []*entry
	for _, q := range qs {
		e := r.hosts[strings.ToLower(q.Name)]
		if e == nil || e.state != Published || slices.Contains(answered, e) {
			continue
		}
		if c := q.Qclass &^ unicastResponse; c != dns.ClassINET && c != dns.ClassANY {
			continue
		}
		if multicast && now.Sub(e.multicast[ifc.Index]) < limit {
			continue
		}
		addr, ok := e.addr(ifc)
		if !ok {
			continue
		}
		class, rrTTL := uint16(dns.ClassINET|cacheFlush), uint32(ttl)
		if legacy {
			class, rrTTL = dns.ClassINET, legacyTTL
		}
		switch {
		case q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY:
			if !legacy && knownAnswer(m.Answer, e.host, addr) {
				continue
			}
			answers = append(answers, aRecord(e.host, addr, class, rrTTL))
			if !legacy {
				extra = append(extra, nsec(e.host, class, rrTTL))
			}
		case legacy:
			// No records of that type: an empty answer, which a plain resolver understands.
		default:
			answers = append(answers, nsec(e.host, class, rrTTL))
		}
		answered = append(answered, e)
	}
	if len(answered) == 0 {
		return nil, netip.AddrPort{}
	}
	reply := new(dns.Msg)
	reply.Response, reply.Authoritative = true, true
	reply.Answer, reply.Extra = answers, extra
	if legacy {
		reply.Id = m.Id
		reply.Question = []dns.Question{{Name: qs[0].Name, Qtype: qs[0].Qtype, Qclass: dns.ClassINET}}
	}
	if !multicast {
		return reply, src
	}
	for _, e := range answered {
		e.multicast[ifc.Index] = now
	}
	return reply, netip.AddrPortFrom(groupAddr, Port)
}

// knownAnswer reports whether the querier already holds host's address with at least
// half its TTL left.
func knownAnswer(known []dns.RR, host string, addr netip.Addr) bool {
	for _, rr := range known {
		if a, ok := addrOf(rr); ok && a == addr && strings.EqualFold(rr.Header().Name, host) && rr.Header().Ttl >= ttl/2 {
			return true
		}
	}
	return false
}

// tieBreakLocked compares a probe's proposed records for a name we are probing for with
// ours: if theirs are later, we lost and will probe again in a second. A probe that
// proposes only our own addresses is our own, come back.
func (r *Responder) tieBreakLocked(ifc Interface, qs []dns.Question, authority []dns.RR) {
	for _, q := range qs {
		e := r.hosts[strings.ToLower(q.Name)]
		if e == nil || e.state != Probing {
			continue
		}
		var theirs []dns.RR
		foreign := false
		for i, rr := range authority {
			if i >= maxRecords {
				break
			}
			if !strings.EqualFold(rr.Header().Name, e.host) {
				continue
			}
			theirs = append(theirs, rr)
			if a, ok := addrOf(rr); !ok || !r.ourAddrLocked(e, a) {
				foreign = true
			}
		}
		addr, ok := e.addr(ifc)
		if !foreign || !ok {
			continue
		}
		if compareRecords([]dns.RR{aRecord(e.host, addr, dns.ClassINET, ttl)}, theirs) < 0 {
			e.notify(sigLost)
		}
	}
}

// rescanLoop lists the interfaces again every Config.Rescan.
func (r *Responder) rescanLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.Rescan)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			if err := r.rescan(); err != nil {
				r.log.Warn("mdns: list interfaces", "err", err)
			}
		}
	}
}

// rescan joins the group on new interfaces and forgets gone ones; any change makes the
// published names probe again.
func (r *Responder) rescan() error {
	r.rescanMu.Lock()
	defer r.rescanMu.Unlock()
	list, err := r.cfg.Interfaces()
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.ifaces
	r.mu.Unlock()
	now := make(map[int]Interface, len(list))
	changed := false
	for _, ifc := range list {
		prev, ok := old[ifc.Index]
		if !ok {
			if err := r.conn.JoinGroup(&net.Interface{Index: ifc.Index, Name: ifc.Name}, group); err != nil {
				r.log.Warn("mdns: join the mDNS group", "interface", ifc.Name, "err", err)
				continue
			}
			r.log.Info("mdns: serving interface", "interface", ifc.Name, "addresses", ifc.Addrs)
			changed = true
		} else if !slices.Equal(prev.Addrs, ifc.Addrs) {
			changed = true
		}
		now[ifc.Index] = ifc
	}
	for idx, ifc := range old {
		if _, ok := now[idx]; !ok {
			_ = r.conn.LeaveGroup(&net.Interface{Index: idx, Name: ifc.Name}, group) // fails when the link is gone
			r.log.Info("mdns: interface gone", "interface", ifc.Name)
			changed = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ifaces = now
	if changed {
		for _, e := range r.entries {
			e.notify(sigReprobe)
		}
	}
	return nil
}
