package dns

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	dnsmsg "github.com/miekg/dns"
)

// FuzzAnswer: any packet a container sends is handled without a panic; a reply, when
// there is one, parses, is a response with the query's ID, and fits a 512-byte UDP
// client once fitted. Forwarding has nowhere to go here (an empty resolv.conf): it
// answers SERVFAIL.
func FuzzAnswer(f *testing.F) {
	seed := func(m *dnsmsg.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(question("hello-pg.hearth.internal.", dnsmsg.TypeA))
	seed(question("nobody.hearth.internal.", dnsmsg.TypeAAAA))
	seed(question("hearth.internal.", dnsmsg.TypeSOA))
	seed(question("example.test.", dnsmsg.TypeA))
	edns := question("six.hearth.internal.", dnsmsg.TypeANY)
	edns.SetEdns0(4096, true)
	seed(edns)
	notify := question("hello-pg.hearth.internal.", dnsmsg.TypeA)
	notify.Opcode = dnsmsg.OpcodeNotify
	seed(notify)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c})

	resolvConf := filepath.Join(f.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolvConf, nil, 0o644); err != nil {
		f.Fatal(err)
	}
	s := &Server{cfg: Config{TTL: DefaultTTL, Timeout: 100 * time.Millisecond}, log: quiet, domain: "hearth.internal.",
		upstreams: newUpstreams(nil, resolvConf, netip.MustParseAddrPort("10.88.0.1:53"), quiet)}
	s.table.init()
	s.Set("hello-pg", netip.MustParseAddr("10.88.0.2"))
	s.Set("six", netip.MustParseAddr("fd00::6"))

	f.Fuzz(func(t *testing.T, b []byte) {
		reply, fwd := s.answer(b)
		if fwd != nil {
			if reply != nil {
				t.Fatal("both a reply and a query to forward")
			}
			reply = s.forwardReply(context.Background(), fwd, clientSize(fwd))
		}
		if reply == nil {
			return
		}
		m := new(dnsmsg.Msg)
		if err := m.Unpack(reply); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if !m.Response || len(b) < 2 || m.Id != uint16(b[0])<<8|uint16(b[1]) {
			t.Fatalf("reply %v to a query with id bytes %x", m, b[:min(2, len(b))])
		}
		if fitted := fit(reply, dnsmsg.MinMsgSize); fitted == nil || len(fitted) > dnsmsg.MinMsgSize {
			t.Fatalf("reply of %d bytes fitted to %d", len(reply), len(fitted))
		}
	})
}
