package mdns

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The packet handling without a socket: a responder whose interfaces and names are set
// by hand, fed packets through process. The real exchanges are in lan_test.go.

var (
	eth0    = Interface{Name: "eth0", Index: 2, Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.77.1/24")}}
	us      = netip.MustParseAddr("192.168.77.1")
	peer    = netip.MustParseAddr("192.168.77.2")
	mdnsSrc = netip.AddrPortFrom(peer, Port)
	oneShot = netip.AddrPortFrom(peer, 40000)
)

// offline returns a responder without a socket serving eth0, with hello-pg published and
// other-name probing.
func offline(t *testing.T) (*Responder, *entry, *entry) {
	t.Helper()
	r := &Responder{log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ifaces: map[int]Interface{eth0.Index: eth0}, entries: map[string]*entry{}, hosts: map[string]*entry{}}
	add := func(name string, s State) *entry {
		e := &entry{requested: name, signals: make(chan signal, 4), addr: InterfaceAddr, host: name + ".local.",
			state: s, changed: make(chan struct{}), multicast: map[int]time.Time{}}
		r.entries[name], r.hosts[e.host] = e, e
		return e
	}
	return r, add("hello-pg", Published), add("other-name", Probing)
}

func packet(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func query(name string, qtype uint16, qu bool) *dns.Msg {
	m := new(dns.Msg)
	m.Id = 4242
	class := uint16(dns.ClassINET)
	if qu {
		class |= unicastResponse
	}
	m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: class}}
	return m
}

func TestAnswers(t *testing.T) {
	type want struct {
		to      netip.AddrPort // zero: no reply
		id      uint16
		ttl     uint32
		class   uint16
		answer  uint16 // type of the first answer, 0 for none
		nsec    bool   // an NSEC in the additional section
		echoesQ bool
	}
	group := netip.AddrPortFrom(groupAddr, Port)
	now := time.Now()
	for _, tc := range []struct {
		name    string
		msg     *dns.Msg
		ifIndex int
		dst     netip.Addr
		src     netip.AddrPort
		setup   func(hello *entry)
		want    want
	}{
		{name: "one-shot query: unicast with its id and question, short TTL, no cache-flush",
			msg: query("hello-pg.local.", dns.TypeA, false), src: oneShot,
			want: want{to: oneShot, id: 4242, ttl: legacyTTL, class: dns.ClassINET, answer: dns.TypeA, echoesQ: true}},
		{name: "QM query: multicast, cache-flush, TTL 120, NSEC beside",
			msg: query("hello-pg.local.", dns.TypeA, false), src: mdnsSrc,
			want: want{to: group, ttl: ttl, class: dns.ClassINET | cacheFlush, answer: dns.TypeA, nsec: true}},
		{name: "QU query: unicast to the querier's port 5353",
			msg: query("hello-pg.local.", dns.TypeA, true), src: mdnsSrc,
			want: want{to: mdnsSrc, ttl: ttl, class: dns.ClassINET | cacheFlush, answer: dns.TypeA, nsec: true}},
		{name: "ANY gets the address",
			msg: query("hello-pg.local.", dns.TypeANY, false), src: mdnsSrc,
			want: want{to: group, ttl: ttl, class: dns.ClassINET | cacheFlush, answer: dns.TypeA, nsec: true}},
		{name: "case does not matter",
			msg: query("HELLO-pg.LOCAL.", dns.TypeA, false), src: oneShot,
			want: want{to: oneShot, id: 4242, ttl: legacyTTL, class: dns.ClassINET, answer: dns.TypeA, echoesQ: true}},
		{name: "AAAA: an NSEC says there is only A",
			msg: query("hello-pg.local.", dns.TypeAAAA, false), src: mdnsSrc,
			want: want{to: group, ttl: ttl, class: dns.ClassINET | cacheFlush, answer: dns.TypeNSEC}},
		{name: "one-shot AAAA: an empty answer",
			msg: query("hello-pg.local.", dns.TypeAAAA, false), src: oneShot,
			want: want{to: oneShot, id: 4242, echoesQ: true}},
		{name: "a name still probing is not answered", msg: query("other-name.local.", dns.TypeA, false), src: oneShot},
		{name: "an unknown name is not answered", msg: query("nobody.local.", dns.TypeA, false), src: oneShot},
		{name: "another class is not answered", msg: func() *dns.Msg {
			m := query("hello-pg.local.", dns.TypeA, false)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(), src: oneShot},
		{name: "known answer with most of its TTL: suppressed", msg: func() *dns.Msg {
			m := query("hello-pg.local.", dns.TypeA, false)
			m.Answer = []dns.RR{aRecord("hello-pg.local.", us, dns.ClassINET, 100)}
			return m
		}(), src: mdnsSrc},
		{name: "known answer about to expire: answered", msg: func() *dns.Msg {
			m := query("hello-pg.local.", dns.TypeA, false)
			m.Answer = []dns.RR{aRecord("hello-pg.local.", us, dns.ClassINET, 30)}
			return m
		}(), src: mdnsSrc,
			want: want{to: group, ttl: ttl, class: dns.ClassINET | cacheFlush, answer: dns.TypeA, nsec: true}},
		{name: "known answer of another address: answered", msg: func() *dns.Msg {
			m := query("hello-pg.local.", dns.TypeA, false)
			m.Answer = []dns.RR{aRecord("hello-pg.local.", peer, dns.ClassINET, 120)}
			return m
		}(), src: mdnsSrc,
			want: want{to: group, ttl: ttl, class: dns.ClassINET | cacheFlush, answer: dns.TypeA, nsec: true}},
		{name: "multicast half a second ago: not again",
			msg: query("hello-pg.local.", dns.TypeA, false), src: mdnsSrc,
			setup: func(e *entry) { e.multicast[eth0.Index] = now.Add(-500 * time.Millisecond) }},
		{name: "multicast half a second ago, but a probe: answered",
			msg: func() *dns.Msg {
				m := probe("hello-pg.local.", peer)
				m.Question[0].Qclass = dns.ClassINET // QM
				return m
			}(), src: mdnsSrc,
			setup: func(e *entry) { e.multicast[eth0.Index] = now.Add(-500 * time.Millisecond) },
			want:  want{to: group, ttl: ttl, class: dns.ClassINET | cacheFlush, answer: dns.TypeA, nsec: true}},
		{name: "multicast half a second ago, but QU: unicast",
			msg: query("hello-pg.local.", dns.TypeA, true), src: mdnsSrc,
			setup: func(e *entry) { e.multicast[eth0.Index] = now.Add(-500 * time.Millisecond) },
			want:  want{to: mdnsSrc, ttl: ttl, class: dns.ClassINET | cacheFlush, answer: dns.TypeA, nsec: true}},
		{name: "sent to our unicast address from the link: answered",
			msg: query("hello-pg.local.", dns.TypeA, false), src: oneShot, dst: us,
			want: want{to: oneShot, id: 4242, ttl: legacyTTL, class: dns.ClassINET, answer: dns.TypeA, echoesQ: true}},
		{name: "sent to our unicast address from off the link: ignored",
			msg: query("hello-pg.local.", dns.TypeA, false), src: netip.MustParseAddrPort("10.9.9.9:40000"), dst: us},
		{name: "an interface we do not serve: ignored",
			msg: query("hello-pg.local.", dns.TypeA, false), src: oneShot, ifIndex: 7},
		{name: "a response gets no reply", msg: func() *dns.Msg {
			m := announcement("hello-pg.local.", us, ttl)
			return m
		}(), src: mdnsSrc},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, hello, _ := offline(t)
			if tc.setup != nil {
				tc.setup(hello)
			}
			if tc.ifIndex == 0 {
				tc.ifIndex = eth0.Index
			}
			if !tc.dst.IsValid() {
				tc.dst = groupAddr
			}
			_, reply, to := r.process(packet(t, tc.msg), tc.ifIndex, tc.dst, tc.src, now)
			if (reply != nil) != tc.want.to.IsValid() {
				t.Fatalf("reply %v to %v, want one to %v", reply, to, tc.want.to)
			}
			if reply == nil {
				return
			}
			if to != tc.want.to || reply.Id != tc.want.id || !reply.Response || !reply.Authoritative {
				t.Errorf("reply to %v id %d (response %v, authoritative %v), want to %v id %d",
					to, reply.Id, reply.Response, reply.Authoritative, tc.want.to, tc.want.id)
			}
			if tc.want.echoesQ != (len(reply.Question) == 1) {
				t.Errorf("question section %v", reply.Question)
			}
			if tc.want.answer == 0 {
				if len(reply.Answer) != 0 {
					t.Errorf("answers %v, want none", reply.Answer)
				}
				return
			}
			if len(reply.Answer) != 1 {
				t.Fatalf("answers %v, want one", reply.Answer)
			}
			rr := reply.Answer[0]
			h := rr.Header()
			if h.Rrtype != tc.want.answer || h.Ttl != tc.want.ttl || h.Class != tc.want.class || h.Name != "hello-pg.local." {
				t.Errorf("answer %v, want type %d TTL %d class %#x", rr, tc.want.answer, tc.want.ttl, tc.want.class)
			}
			if a, ok := rr.(*dns.A); ok && !a.A.Equal(us.AsSlice()) {
				t.Errorf("answer %v, want %v", a, us)
			}
			if n, ok := rr.(*dns.NSEC); ok && (len(n.TypeBitMap) != 1 || n.TypeBitMap[0] != dns.TypeA) {
				t.Errorf("NSEC %v, want only A", n)
			}
			hasNSEC := len(reply.Extra) == 1 && reply.Extra[0].Header().Rrtype == dns.TypeNSEC
			if hasNSEC != tc.want.nsec {
				t.Errorf("additional %v, want an NSEC: %v", reply.Extra, tc.want.nsec)
			}
		})
	}
}

// TestConflicts: which packets make a name probe again or rename, and which do not.
func TestConflicts(t *testing.T) {
	other := netip.MustParseAddr("192.168.77.9")
	for _, tc := range []struct {
		name  string
		msg   *dns.Msg
		src   netip.AddrPort
		hello signal // what hello-pg (published) hears, 0 for nothing
		probe signal // what other-name (probing) hears
	}{
		{name: "another host announces our published name", msg: announcement("hello-pg.local.", other, ttl), src: mdnsSrc, hello: sigConflict},
		{name: "another host answers for the name we probe", msg: announcement("other-name.local.", other, ttl), src: mdnsSrc, probe: sigConflict},
		{name: "in the additional section too", msg: func() *dns.Msg {
			m := announcement("x.local.", other, ttl)
			m.Extra = []dns.RR{aRecord("hello-pg.local.", other, dns.ClassINET|cacheFlush, ttl)}
			return m
		}(), src: mdnsSrc, hello: sigConflict},
		{name: "our own announcement back", msg: announcement("hello-pg.local.", us, ttl), src: mdnsSrc},
		{name: "a goodbye is no conflict", msg: announcement("hello-pg.local.", other, 0), src: mdnsSrc},
		{name: "a response from another port is ignored", msg: announcement("hello-pg.local.", other, ttl), src: oneShot},
		{name: "another name", msg: announcement("someone.local.", other, ttl), src: mdnsSrc},
		{name: "a probe with later data wins the tie", msg: probe("other-name.local.", netip.MustParseAddr("192.168.77.200")), src: mdnsSrc, probe: sigLost},
		{name: "a probe with earlier data loses the tie", msg: probe("other-name.local.", netip.MustParseAddr("192.168.77.0")), src: mdnsSrc},
		{name: "our own probe back", msg: probe("other-name.local.", us), src: mdnsSrc},
		{name: "a probe for a published name is answered, not a tie", msg: probe("hello-pg.local.", netip.MustParseAddr("192.168.77.200")), src: mdnsSrc},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, hello, probing := offline(t)
			r.process(packet(t, tc.msg), eth0.Index, groupAddr, tc.src, time.Now())
			for _, c := range []struct {
				e    *entry
				want signal
			}{{hello, tc.hello}, {probing, tc.probe}} {
				var got signal
				select {
				case got = <-c.e.signals:
				default:
				}
				if got != c.want {
					t.Errorf("%s heard %d, want %d", c.e.requested, got, c.want)
				}
			}
		})
	}
}

// TestWaitAndNames: the bookkeeping a caller sees, without a socket.
func TestWaitAndNames(t *testing.T) {
	r, hello, probing := offline(t)
	names := r.Names()
	if len(names) != 2 || names[0] != (Name{"hello-pg", "hello-pg.local", Published}) ||
		names[1] != (Name{"other-name", "other-name.local", Probing}) {
		t.Errorf("Names() = %v", names)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n, err := r.Wait(ctx, "hello-pg"); err != nil || n.Host != "hello-pg.local" {
		t.Errorf("Wait(hello-pg) = %v, %v", n, err)
	}
	go func() {
		r.setState(probing, Published)
	}()
	if n, err := r.Wait(ctx, "OTHER-name"); err != nil || n.State != Published {
		t.Errorf("Wait(other-name) = %v, %v", n, err)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelShort()
	r.setState(hello, Probing)
	if _, err := r.Wait(short, "hello-pg"); err == nil {
		t.Errorf("Wait for a probing name returned without error")
	}
	if _, err := r.Wait(ctx, "nobody"); err == nil {
		t.Errorf("Wait for an unknown name returned without error")
	}
}

// FuzzProcess: any packet from the LAN is read without a panic, and a reply, when there
// is one, packs and fits an mDNS packet.
func FuzzProcess(f *testing.F) {
	for _, m := range []*dns.Msg{
		query("hello-pg.local.", dns.TypeA, false),
		query("hello-pg.local.", dns.TypeAAAA, true),
		probe("other-name.local.", netip.MustParseAddr("192.168.77.200")),
		announcement("hello-pg.local.", netip.MustParseAddr("192.168.77.9"), ttl),
	} {
		b, _ := m.Pack()
		f.Add(b, uint16(Port))
		f.Add(b, uint16(40000))
	}
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		r, _, _ := offline(t)
		_, reply, _ := r.process(b, eth0.Index, groupAddr, netip.AddrPortFrom(peer, port), time.Now())
		if reply == nil {
			return
		}
		out, err := reply.Pack()
		if err != nil || len(out) > maxPacket {
			t.Fatalf("reply %v: %d bytes, %v", reply, len(out), err)
		}
	})
}

// BenchmarkProcess: the responder's own time for one query, from the packet read to the
// reply ready (the LAN test measures the whole exchange).
func BenchmarkProcess(b *testing.B) {
	r := &Responder{log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ifaces: map[int]Interface{eth0.Index: eth0}, entries: map[string]*entry{}, hosts: map[string]*entry{}}
	e := &entry{requested: "hello-pg", signals: make(chan signal, 4), addr: InterfaceAddr, host: "hello-pg.local.",
		state: Published, changed: make(chan struct{}), multicast: map[int]time.Time{}}
	r.entries[e.requested], r.hosts[e.host] = e, e
	q, _ := query("hello-pg.local.", dns.TypeA, false).Pack()
	now := time.Now()
	b.ResetTimer()
	for range b.N {
		_, reply, _ := r.process(q, eth0.Index, groupAddr, oneShot, now)
		if reply == nil {
			b.Fatal("no reply")
		}
		if _, err := reply.Pack(); err != nil {
			b.Fatal(err)
		}
	}
}
