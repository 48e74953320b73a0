package mdns

import (
	"bytes"
	"net/netip"
	"sort"

	"github.com/miekg/dns"
)

const (
	// ttl of the address records, as RFC 6762 section 10 advises for host names.
	ttl = 120
	// legacyTTL caps the TTL in answers to one-shot queries (RFC 6762 section 6.7).
	legacyTTL = 10
	// cacheFlush is the top bit of an answer's class: this record replaces every other
	// record of its name and type (RFC 6762 section 10.2).
	cacheFlush = 1 << 15
	// unicastResponse is the top bit of a question's class: "QU", answer me directly
	// (RFC 6762 section 5.4).
	unicastResponse = 1 << 15
)

// aRecord is the address record of host (a fully qualified, lower-case name).
func aRecord(host string, addr netip.Addr, class uint16, ttl uint32) *dns.A {
	return &dns.A{Hdr: dns.RR_Header{Name: host, Rrtype: dns.TypeA, Class: class, Ttl: ttl}, A: addr.AsSlice()}
}

// nsec says host has an A record and nothing else (RFC 6762 section 6.1).
func nsec(host string, class uint16, ttl uint32) *dns.NSEC {
	return &dns.NSEC{Hdr: dns.RR_Header{Name: host, Rrtype: dns.TypeNSEC, Class: class, Ttl: ttl},
		NextDomain: host, TypeBitMap: []uint16{dns.TypeA}}
}

// probe is the query that claims host with addr (RFC 6762 section 8.1): a QU question
// of type ANY for the name, the proposed record in the authority section.
func probe(host string, addr netip.Addr) *dns.Msg {
	m := new(dns.Msg)
	m.Question = []dns.Question{{Name: host, Qtype: dns.TypeANY, Qclass: dns.ClassINET | unicastResponse}}
	m.Ns = []dns.RR{aRecord(host, addr, dns.ClassINET, ttl)}
	return m
}

// announcement is the unsolicited response that says host is at addr; with ttl 0 it is
// a goodbye (RFC 6762 sections 8.3 and 10.1).
func announcement(host string, addr netip.Addr, ttl uint32) *dns.Msg {
	m := new(dns.Msg)
	m.Response, m.Authoritative = true, true
	m.Answer = []dns.RR{aRecord(host, addr, dns.ClassINET|cacheFlush, ttl)}
	if ttl > 0 {
		m.Extra = []dns.RR{nsec(host, dns.ClassINET|cacheFlush, ttl)}
	}
	return m
}

// rdata returns rr's data as it goes on the wire, names uncompressed.
func rdata(rr dns.RR) []byte {
	buf := make([]byte, dns.Len(rr)+16)
	end, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		return nil
	}
	start, err := dns.PackDomainName(rr.Header().Name, buf, 0, nil, false)
	if err != nil || start+10 > end {
		return nil
	}
	return buf[start+10 : end]
}

// compareRecords orders two sets of records as RFC 6762 section 8.2 does to break the tie
// between simultaneous probes: each set sorted by class (without the cache-flush bit),
// type and data; then compared pairwise; the first difference decides; a set that runs
// out first is the earlier. It returns -1 when ours is earlier (we lose), 0 when the sets
// are the same, 1 when ours is later (we win).
func compareRecords(ours, theirs []dns.RR) int {
	type key struct {
		class, rrtype uint16
		data          []byte
	}
	keys := func(rrs []dns.RR) []key {
		out := make([]key, 0, len(rrs))
		for _, rr := range rrs {
			h := rr.Header()
			out = append(out, key{h.Class &^ cacheFlush, h.Rrtype, rdata(rr)})
		}
		sort.Slice(out, func(i, j int) bool {
			return less(out[i].class, out[i].rrtype, out[i].data, out[j].class, out[j].rrtype, out[j].data)
		})
		return out
	}
	a, b := keys(ours), keys(theirs)
	for i := 0; i < len(a) && i < len(b); i++ {
		if less(a[i].class, a[i].rrtype, a[i].data, b[i].class, b[i].rrtype, b[i].data) {
			return -1
		}
		if less(b[i].class, b[i].rrtype, b[i].data, a[i].class, a[i].rrtype, a[i].data) {
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

func less(c1, t1 uint16, d1 []byte, c2, t2 uint16, d2 []byte) bool {
	if c1 != c2 {
		return c1 < c2
	}
	if t1 != t2 {
		return t1 < t2
	}
	return bytes.Compare(d1, d2) < 0
}

// addrOf returns the address an A record of class IN holds.
func addrOf(rr dns.RR) (netip.Addr, bool) {
	a, ok := rr.(*dns.A)
	if !ok || a.Hdr.Class&^cacheFlush != dns.ClassINET {
		return netip.Addr{}, false
	}
	addr, ok := netip.AddrFromSlice(a.A)
	return addr.Unmap(), ok
}
