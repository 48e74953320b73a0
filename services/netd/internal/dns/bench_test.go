package dns

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	dnsmsg "github.com/miekg/dns"
)

// benchQueries sends b.N queries for name over one UDP socket, one after another, and
// reports the p50 and p99 of the time to the answer.
func benchQueries(b *testing.B, s *Server, name string) {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.Addr()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	q, _ := question(name, dnsmsg.TypeA).Pack()
	buf := make([]byte, 4096)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := conn.Write(q); err != nil {
			b.Fatal(err)
		}
		conn.SetReadDeadline(start.Add(3 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		m := new(dnsmsg.Msg)
		if err := m.Unpack(buf[:n]); err != nil || len(m.Answer) != 1 {
			b.Fatalf("answer %v: %v", m, err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkTableQuery: a container's query for a name of the table, over loopback UDP.
func BenchmarkTableQuery(b *testing.B) {
	s := startServer(b, Config{})
	if err := s.Set("hello-pg", netip.MustParseAddr("10.88.0.2")); err != nil {
		b.Fatal(err)
	}
	benchQueries(b, s, "hello-pg.hearth.internal.")
}

// BenchmarkForwardedQuery: a query for another name, forwarded to an upstream on
// loopback (no cache: each query goes to the upstream).
func BenchmarkForwardedQuery(b *testing.B) {
	up := startUpstream(b, netip.MustParseAddrPort("127.0.0.1:0"))
	s := startServer(b, Config{Upstreams: []netip.AddrPort{up.addr}})
	benchQueries(b, s, "example.test.")
}
