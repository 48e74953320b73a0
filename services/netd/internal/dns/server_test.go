package dns

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dnsmsg "github.com/miekg/dns"

	"hearth.dev/internal/errdefs"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startServer runs a server on a free loopback port, closed when the test ends. Without
// upstreams it reads an empty resolv.conf: nothing to forward to.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if !cfg.Addr.IsValid() {
		cfg.Addr = netip.MustParseAddrPort("127.0.0.1:0")
	}
	if cfg.Log == nil {
		cfg.Log = quiet
	}
	if len(cfg.Upstreams) == 0 && cfg.ResolvConf == "" {
		cfg.ResolvConf = filepath.Join(t.TempDir(), "resolv.conf")
		if err := os.WriteFile(cfg.ResolvConf, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// upstream is a fake resolver on loopback (UDP and TCP on one port), a test peer:
//   - example.test. A 192.0.2.1
//   - big.example.test. 40 A records; over UDP only a truncated answer (TC, no records)
//   - hold.example.test. no answer until release is closed
//   - anything else: NXDOMAIN
type upstream struct {
	addr    netip.AddrPort
	udp     atomic.Int32 // queries seen over UDP
	tcp     atomic.Int32 // over TCP
	release chan struct{}
}

func startUpstream(t testing.TB, at netip.AddrPort) *upstream {
	t.Helper()
	u, stop, err := newUpstream(at)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return u
}

// newUpstream starts an upstream; stop ends it.
func newUpstream(at netip.AddrPort) (u *upstream, stop func(), err error) {
	u = &upstream{release: make(chan struct{})}
	udp, tcp, err := bind(at)
	if err != nil {
		return nil, nil, err
	}
	u.addr = udp.LocalAddr().(*net.UDPAddr).AddrPort()
	h := dnsmsg.HandlerFunc(func(w dnsmsg.ResponseWriter, req *dnsmsg.Msg) {
		overUDP := w.LocalAddr().Network() == "udp"
		if overUDP {
			u.udp.Add(1)
		} else {
			u.tcp.Add(1)
		}
		resp := new(dnsmsg.Msg).SetReply(req)
		q := req.Question[0]
		switch q.Name {
		case "example.test.":
			resp.Answer = []dnsmsg.RR{&dnsmsg.A{Hdr: dnsmsg.RR_Header{Name: q.Name, Rrtype: dnsmsg.TypeA, Class: dnsmsg.ClassINET, Ttl: 60},
				A: net.IPv4(192, 0, 2, 1)}}
		case "big.example.test.":
			if overUDP {
				resp.Truncated = true
				break
			}
			for i := range 40 {
				resp.Answer = append(resp.Answer, &dnsmsg.A{Hdr: dnsmsg.RR_Header{Name: q.Name, Rrtype: dnsmsg.TypeA, Class: dnsmsg.ClassINET, Ttl: 60},
					A: net.IPv4(192, 0, 2, byte(i+1))})
			}
		case "hold.example.test.":
			<-u.release
		default:
			resp.Rcode = dnsmsg.RcodeNameError
		}
		w.WriteMsg(resp)
	})
	servers := []*dnsmsg.Server{{PacketConn: udp, Handler: h}, {Listener: tcp, Handler: h}}
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func() { defer wg.Done(); srv.ActivateAndServe() }()
	}
	stop = func() {
		select {
		case <-u.release:
		default:
			close(u.release)
		}
		for _, srv := range servers {
			srv.Shutdown()
		}
		wg.Wait()
	}
	return u, stop, nil
}

// ask sends m over network ("udp" or "tcp") and returns the reply.
func ask(t testing.TB, network string, to netip.AddrPort, m *dnsmsg.Msg) (*dnsmsg.Msg, error) {
	t.Helper()
	c := &dnsmsg.Client{Net: network, Timeout: 3 * time.Second}
	resp, _, err := c.Exchange(m, to.String())
	return resp, err
}

func question(name string, qtype uint16) *dnsmsg.Msg {
	m := new(dnsmsg.Msg)
	m.SetQuestion(name, qtype)
	return m
}

// TestTable: names of the domain are answered from the table, over UDP and TCP.
func TestTable(t *testing.T) {
	s := startServer(t, Config{})
	pg, v6 := netip.MustParseAddr("10.88.0.2"), netip.MustParseAddr("fd00::5")
	if err := s.Set("hello-pg", pg); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("Six", v6); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		q       *dnsmsg.Msg
		rcode   int
		answer  string // the first answer's data, "" for none
		soa     bool   // an SOA in the authority section
		network string
	}{
		{"A", question("hello-pg.hearth.internal.", dnsmsg.TypeA), dnsmsg.RcodeSuccess, "10.88.0.2", false, "udp"},
		{"A over TCP", question("hello-pg.hearth.internal.", dnsmsg.TypeA), dnsmsg.RcodeSuccess, "10.88.0.2", false, "tcp"},
		{"any case", question("HELLO-PG.Hearth.Internal.", dnsmsg.TypeA), dnsmsg.RcodeSuccess, "10.88.0.2", false, "udp"},
		{"ANY", question("hello-pg.hearth.internal.", dnsmsg.TypeANY), dnsmsg.RcodeSuccess, "10.88.0.2", false, "udp"},
		{"AAAA of an IPv4 name: no data", question("hello-pg.hearth.internal.", dnsmsg.TypeAAAA), dnsmsg.RcodeSuccess, "", true, "udp"},
		{"MX: no data", question("hello-pg.hearth.internal.", dnsmsg.TypeMX), dnsmsg.RcodeSuccess, "", true, "udp"},
		{"AAAA of an IPv6 name", question("six.hearth.internal.", dnsmsg.TypeAAAA), dnsmsg.RcodeSuccess, "fd00::5", false, "udp"},
		{"A of an IPv6 name: no data", question("six.hearth.internal.", dnsmsg.TypeA), dnsmsg.RcodeSuccess, "", true, "udp"},
		{"unknown name", question("nobody.hearth.internal.", dnsmsg.TypeA), dnsmsg.RcodeNameError, "", true, "udp"},
		{"unknown name over TCP", question("nobody.hearth.internal.", dnsmsg.TypeA), dnsmsg.RcodeNameError, "", true, "tcp"},
		{"below a name", question("db.hello-pg.hearth.internal.", dnsmsg.TypeA), dnsmsg.RcodeNameError, "", true, "udp"},
		{"the domain's SOA", question("hearth.internal.", dnsmsg.TypeSOA), dnsmsg.RcodeSuccess, "ns.hearth.internal.", false, "udp"},
		{"the domain's A: no data", question("hearth.internal.", dnsmsg.TypeA), dnsmsg.RcodeSuccess, "", true, "udp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := ask(t, tc.network, s.Addr(), tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Rcode != tc.rcode || !resp.Authoritative || resp.Id != tc.q.Id {
				t.Errorf("rcode %s, authoritative %v, id %d; want %s, authoritative, id %d",
					dnsmsg.RcodeToString[resp.Rcode], resp.Authoritative, resp.Id, dnsmsg.RcodeToString[tc.rcode], tc.q.Id)
			}
			var got string
			if len(resp.Answer) > 0 {
				switch rr := resp.Answer[0].(type) {
				case *dnsmsg.A:
					got = rr.A.String()
				case *dnsmsg.AAAA:
					got = rr.AAAA.String()
				case *dnsmsg.SOA:
					got = rr.Ns
				}
				if h := resp.Answer[0].Header(); h.Name != tc.q.Question[0].Name || h.Ttl != uint32(DefaultTTL/time.Second) {
					t.Errorf("answer %v: want the question's name and TTL %v", resp.Answer[0], DefaultTTL)
				}
			}
			if got != tc.answer || len(resp.Answer) > 1 {
				t.Errorf("answers %v, want %q", resp.Answer, tc.answer)
			}
			hasSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == dnsmsg.TypeSOA
			if hasSOA != tc.soa {
				t.Errorf("authority %v, want an SOA: %v", resp.Ns, tc.soa)
			}
		})
	}

	t.Run("edns", func(t *testing.T) {
		q := question("hello-pg.hearth.internal.", dnsmsg.TypeA)
		q.SetEdns0(1232, false)
		resp, err := ask(t, "udp", s.Addr(), q)
		if err != nil || resp.IsEdns0() == nil || len(resp.Answer) != 1 {
			t.Errorf("EDNS query: %v, %v: want an answer with an OPT record", resp, err)
		}
	})
}

// TestTableChanges: Set, Delete and Replace change the answers; bad input changes
// nothing and says what is wrong.
func TestTableChanges(t *testing.T) {
	s := startServer(t, Config{Domain: "home.arpa"})
	resolve := func(id string) string {
		t.Helper()
		resp, err := ask(t, "udp", s.Addr(), question(id+".home.arpa.", dnsmsg.TypeA))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Rcode == dnsmsg.RcodeNameError {
			return "NXDOMAIN"
		}
		if len(resp.Answer) != 1 {
			return fmt.Sprint(resp.Answer)
		}
		return resp.Answer[0].(*dnsmsg.A).A.String()
	}
	serial := func() uint32 { return s.soa().Serial }
	check := func(want map[string]string) {
		t.Helper()
		for id, addr := range want {
			if got := resolve(id); got != addr {
				t.Errorf("%s resolved to %s, want %s", id, got, addr)
			}
		}
	}
	a, b, c := netip.MustParseAddr("10.88.0.2"), netip.MustParseAddr("10.88.0.3"), netip.MustParseAddr("10.88.0.4")
	s0 := serial()
	if err := s.Set("a", a); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("b", b); err != nil {
		t.Fatal(err)
	}
	check(map[string]string{"a": "10.88.0.2", "b": "10.88.0.3", "c": "NXDOMAIN"})
	s.Delete("a")
	s.Delete("nobody")
	check(map[string]string{"a": "NXDOMAIN", "b": "10.88.0.3"})
	if err := s.Replace(map[string]netip.Addr{"c": c, "B": a}); err != nil {
		t.Fatal(err)
	}
	check(map[string]string{"a": "NXDOMAIN", "b": "10.88.0.2", "c": "10.88.0.4"})
	if serial() == s0 {
		t.Errorf("the SOA serial did not change with the table")
	}
	s1 := serial()
	if err := s.Replace(map[string]netip.Addr{"c": c, "b": a}); err != nil || serial() != s1 {
		t.Errorf("replacing the table by itself: %v, serial %d → %d", err, s1, serial())
	}

	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"empty id", func() error { return s.Set("", a) }},
		{"dotted id", func() error { return s.Set("a.b", a) }},
		{"leading hyphen", func() error { return s.Set("-a", a) }},
		{"long id", func() error { return s.Set(string(make([]byte, 64)), a) }},
		{"no address", func() error { return s.Set("x", netip.Addr{}) }},
		{"unspecified address", func() error { return s.Set("x", netip.IPv4Unspecified()) }},
		{"one bad entry in a replace", func() error {
			return s.Replace(map[string]netip.Addr{"good": a, "bad_one": b})
		}},
	} {
		if err := tc.do(); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want an invalid argument", tc.name, err)
		}
	}
	if got := s.Names(); len(got) != 2 || got["b"] != a || got["c"] != c {
		t.Errorf("after refused changes the table is %v", got)
	}

	if _, err := Listen(Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Domain: "bad..domain"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Listen with a bad domain: %v", err)
	}
	if _, err := Listen(Config{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Listen without an address: %v", err)
	}
}

// TestForward: names outside the domain go to the upstream and come back with the
// client's ID, over UDP and TCP; a truncated answer is asked again over TCP.
func TestForward(t *testing.T) {
	up := startUpstream(t, netip.MustParseAddrPort("127.0.0.1:0"))
	s := startServer(t, Config{Upstreams: []netip.AddrPort{up.addr}})
	for _, tc := range []struct {
		name      string
		q         *dnsmsg.Msg
		network   string
		rcode     int
		answers   int
		truncated bool
		udp, tcp  int32 // queries the upstream sees
	}{
		{"A over UDP", question("example.test.", dnsmsg.TypeA), "udp", dnsmsg.RcodeSuccess, 1, false, 1, 0},
		{"A over TCP", question("example.test.", dnsmsg.TypeA), "tcp", dnsmsg.RcodeSuccess, 1, false, 1, 0},
		{"NXDOMAIN passes", question("nobody.test.", dnsmsg.TypeA), "udp", dnsmsg.RcodeNameError, 0, false, 1, 0},
		{"truncated: asked again over TCP, truncated for a 512-byte client", question("big.example.test.", dnsmsg.TypeA), "udp", dnsmsg.RcodeSuccess, -1, true, 1, 1},
		{"truncated: whole over TCP", question("big.example.test.", dnsmsg.TypeA), "tcp", dnsmsg.RcodeSuccess, 40, false, 1, 1},
		{"truncated: whole for an EDNS client", func() *dnsmsg.Msg {
			m := question("big.example.test.", dnsmsg.TypeA)
			m.SetEdns0(4096, false)
			return m
		}(), "udp", dnsmsg.RcodeSuccess, 40, false, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			udp0, tcp0 := up.udp.Load(), up.tcp.Load()
			resp, err := ask(t, tc.network, s.Addr(), tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Id != tc.q.Id || resp.Rcode != tc.rcode || resp.Truncated != tc.truncated {
				t.Errorf("id %d rcode %s truncated %v; want id %d rcode %s truncated %v", resp.Id, dnsmsg.RcodeToString[resp.Rcode],
					resp.Truncated, tc.q.Id, dnsmsg.RcodeToString[tc.rcode], tc.truncated)
			}
			if tc.answers >= 0 && len(resp.Answer) != tc.answers {
				t.Errorf("%d answers, want %d", len(resp.Answer), tc.answers)
			}
			resp.Compress = true // as it went on the wire
			if n := resp.Len(); tc.network == "udp" && tc.q.IsEdns0() == nil && n > dnsmsg.MinMsgSize {
				t.Errorf("a %d-byte answer to a client that takes 512", n)
			}
			if udp, tcp := up.udp.Load()-udp0, up.tcp.Load()-tcp0; udp != tc.udp || tcp != tc.tcp {
				t.Errorf("upstream saw %d UDP and %d TCP queries, want %d and %d", udp, tcp, tc.udp, tc.tcp)
			}
		})
	}
}

// TestForwardFailures: an upstream that does not answer costs the timeout and gives
// SERVFAIL; so does having no upstream at all; a dead first upstream is passed over.
func TestForwardFailures(t *testing.T) {
	up := startUpstream(t, netip.MustParseAddrPort("127.0.0.1:0"))
	// A bound UDP port that never answers.
	mute, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	muteAddr := mute.LocalAddr().(*net.UDPAddr).AddrPort()
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name      string
		upstreams []netip.AddrPort
		q         string
		rcode     int
		after     time.Duration // at least
		within    time.Duration
	}{
		{"an upstream that never answers", []netip.AddrPort{up.addr}, "hold.example.test.", dnsmsg.RcodeServerFailure, timeout, 3 * timeout},
		{"no upstream", nil, "example.test.", dnsmsg.RcodeServerFailure, 0, 100 * time.Millisecond},
		{"the first upstream mute, the second answers", []netip.AddrPort{muteAddr, up.addr}, "example.test.", dnsmsg.RcodeSuccess, timeout, 3 * timeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{Upstreams: tc.upstreams, Timeout: timeout})
			start := time.Now()
			resp, err := ask(t, "udp", s.Addr(), question(tc.q, dnsmsg.TypeA))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dnsmsg.RcodeToString[resp.Rcode], dnsmsg.RcodeToString[tc.rcode])
			}
			if d := time.Since(start); d < tc.after || d > tc.within {
				t.Errorf("answered after %v, want between %v and %v", d, tc.after, tc.within)
			}
		})
	}
}

// TestForwardCap: past MaxForwards queries in flight, a query gets SERVFAIL at once;
// those in flight are answered when the upstream answers; names of the table are
// answered all along.
func TestForwardCap(t *testing.T) {
	up := startUpstream(t, netip.MustParseAddrPort("127.0.0.1:0"))
	s := startServer(t, Config{Upstreams: []netip.AddrPort{up.addr}, MaxForwards: 2, Timeout: 5 * time.Second})
	if err := s.Set("hello-pg", netip.MustParseAddr("10.88.0.2")); err != nil {
		t.Fatal(err)
	}
	type result struct {
		rcode int
		after time.Duration
	}
	results := make(chan result, 5)
	start := time.Now()
	for i := range 5 {
		go func() {
			resp, err := ask(t, "udp", s.Addr(), question("hold.example.test.", dnsmsg.TypeA))
			if err != nil {
				t.Errorf("query %d: %v", i, err)
				results <- result{-1, time.Since(start)}
				return
			}
			results <- result{resp.Rcode, time.Since(start)}
		}()
	}
	// Three SERVFAILs come at once; two queries wait for the upstream.
	for range 3 {
		r := <-results
		if r.rcode != dnsmsg.RcodeServerFailure || r.after > time.Second {
			t.Errorf("a query past the cap: rcode %d after %v, want SERVFAIL at once", r.rcode, r.after)
		}
	}
	if resp, err := ask(t, "udp", s.Addr(), question("hello-pg.hearth.internal.", dnsmsg.TypeA)); err != nil || len(resp.Answer) != 1 {
		t.Errorf("a table name while forwards are full: %v, %v", resp, err)
	}
	close(up.release)
	for range 2 {
		if r := <-results; r.rcode != dnsmsg.RcodeSuccess {
			t.Errorf("a query within the cap: rcode %d, want the upstream's answer", r.rcode)
		}
	}
}

// TestDrops: oversized, malformed and foreign packets; the server keeps answering.
func TestDrops(t *testing.T) {
	s := startServer(t, Config{Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err := s.Set("hello-pg", netip.MustParseAddr("10.88.0.2")); err != nil {
		t.Fatal(err)
	}
	good, _ := question("hello-pg.hearth.internal.", dnsmsg.TypeA).Pack()
	response := question("hello-pg.hearth.internal.", dnsmsg.TypeA)
	response.Response = true
	resp, _ := response.Pack()
	oversized := append(append([]byte{}, good...), make([]byte, maxUDPQuery)...)
	two := question("hello-pg.hearth.internal.", dnsmsg.TypeA)
	two.Question = append(two.Question, two.Question[0])
	twoQ, _ := two.Pack()
	notify := question("hello-pg.hearth.internal.", dnsmsg.TypeA)
	notify.Opcode = dnsmsg.OpcodeNotify
	notifyB, _ := notify.Pack()

	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tc := range []struct {
		name  string
		b     []byte
		rcode int // -1: no reply
	}{
		{"oversized", oversized, -1},
		{"a response", resp, -1},
		{"shorter than a header", []byte{1, 2, 3}, -1},
		{"a header, then garbage", append(good[:12:12], 0xff, 0xff, 0xff), dnsmsg.RcodeFormatError},
		{"two questions", twoQ, dnsmsg.RcodeFormatError},
		{"not a query", notifyB, dnsmsg.RcodeNotImplemented},
		{"a good query", good, dnsmsg.RcodeSuccess},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := conn.Write(tc.b); err != nil {
				t.Fatal(err)
			}
			wait := 2 * time.Second
			if tc.rcode < 0 {
				wait = 300 * time.Millisecond
			}
			conn.SetReadDeadline(time.Now().Add(wait))
			buf := make([]byte, 65536)
			n, err := conn.Read(buf)
			if tc.rcode < 0 {
				if err == nil {
					t.Errorf("a reply of %d bytes, want none", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m := new(dnsmsg.Msg)
			if err := m.Unpack(buf[:n]); err != nil && len(buf) >= 12 {
				// A FORMERR reply is a bare header; unpack reads it fine.
				t.Fatalf("reply does not parse: %v", err)
			}
			if m.Rcode != tc.rcode || m.Id != uint16(tc.b[0])<<8|uint16(tc.b[1]) || !m.Response {
				t.Errorf("reply rcode %s id %d, want %s id of the query", dnsmsg.RcodeToString[m.Rcode], m.Id, dnsmsg.RcodeToString[tc.rcode])
			}
		})
	}

	t.Run("a source outside Clients", func(t *testing.T) {
		only := startServer(t, Config{Clients: []netip.Prefix{netip.MustParsePrefix("10.88.0.0/16")}})
		c := &dnsmsg.Client{Net: "udp", Timeout: 300 * time.Millisecond}
		if resp, _, err := c.Exchange(question("x.hearth.internal.", dnsmsg.TypeA), only.Addr().String()); err == nil {
			t.Errorf("answered a client outside the allowed sources: %v", resp)
		}
		c.Net = "tcp"
		if resp, _, err := c.Exchange(question("x.hearth.internal.", dnsmsg.TypeA), only.Addr().String()); err == nil {
			t.Errorf("answered a TCP client outside the allowed sources: %v", resp)
		}
	})
}

func TestTCPLimits(t *testing.T) {
	s := startServer(t, Config{MaxTCPConns: 2, TCPIdle: 300 * time.Millisecond})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closed reports whether the server closed c within d.
	closed := func(c net.Conn, d time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
	}
	a, b := dial(), dial()
	time.Sleep(50 * time.Millisecond) // let the server accept both before the third
	third := dial()
	if !closed(third, 200*time.Millisecond) {
		t.Errorf("a third connection past the cap of two stayed open")
	}
	start := time.Now()
	if !closed(a, 2*time.Second) || !closed(b, 2*time.Second) {
		t.Errorf("idle connections stayed open")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("idle connections closed after %v, want about 300 ms", d)
	}
	// The slots are free again.
	if resp, err := ask(t, "tcp", s.Addr(), question("x.hearth.internal.", dnsmsg.TypeA)); err != nil || resp.Rcode != dnsmsg.RcodeNameError {
		t.Errorf("a query after idle connections closed: %v, %v", resp, err)
	}
}

func TestReadResolvConf(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"plain", "nameserver 192.0.2.53\n", []string{"192.0.2.53:53"}},
		{"several, comments, options, duplicates", "# generated\nsearch lan\nnameserver 192.0.2.1\noptions edns0 timeout:1\nnameserver 2001:db8::1\nnameserver 192.0.2.1\n",
			[]string{"192.0.2.1:53", "[2001:db8::1]:53"}},
		{"none", "search lan\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readResolvConf(path)
			if err != nil {
				t.Fatal(err)
			}
			var gotS []string
			for _, a := range got {
				gotS = append(gotS, a.String())
			}
			if !slices.Equal(gotS, tc.want) {
				t.Errorf("got %v, want %v", gotS, tc.want)
			}
		})
	}
}

func TestWithoutSelf(t *testing.T) {
	list := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:53"), netip.MustParseAddrPort("127.0.0.53:53"),
		netip.MustParseAddrPort("10.88.0.1:53"), netip.MustParseAddrPort("192.0.2.1:53"),
		netip.MustParseAddrPort("127.0.0.1:5300"),
	}
	for _, tc := range []struct {
		self string
		want []string
	}{
		{"10.88.0.1:53", []string{"127.0.0.1:53", "127.0.0.53:53", "192.0.2.1:53", "127.0.0.1:5300"}},
		{"127.0.0.1:53", []string{"127.0.0.53:53", "10.88.0.1:53", "192.0.2.1:53", "127.0.0.1:5300"}},
		{"0.0.0.0:53", []string{"10.88.0.1:53", "192.0.2.1:53", "127.0.0.1:5300"}},
	} {
		u := &upstreams{self: netip.MustParseAddrPort(tc.self), log: quiet}
		var got []string
		for _, a := range u.withoutSelf(list) {
			got = append(got, a.String())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("self %s: got %v, want %v", tc.self, got, tc.want)
		}
	}
}
