package mdns

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"hearth.dev/internal/errdefs"
)

func TestCompareRecords(t *testing.T) {
	a := func(s string) dns.RR { return aRecord("x.local.", netip.MustParseAddr(s), dns.ClassINET, ttl) }
	aaaa := &dns.AAAA{Hdr: dns.RR_Header{Name: "x.local.", Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl},
		AAAA: netip.MustParseAddr("fe80::1").AsSlice()}
	flushed := aRecord("x.local.", netip.MustParseAddr("192.168.77.1"), dns.ClassINET|cacheFlush, ttl)
	for _, tc := range []struct {
		name         string
		ours, theirs []dns.RR
		want         int
	}{
		{"same", []dns.RR{a("192.168.77.1")}, []dns.RR{a("192.168.77.1")}, 0},
		{"cache-flush bit ignored", []dns.RR{a("192.168.77.1")}, []dns.RR{flushed}, 0},
		{"ours earlier", []dns.RR{a("192.168.77.1")}, []dns.RR{a("192.168.77.200")}, -1},
		{"ours later", []dns.RR{a("192.168.77.200")}, []dns.RR{a("192.168.77.1")}, 1},
		{"bytes, not text", []dns.RR{a("10.0.0.9")}, []dns.RR{a("10.0.0.10")}, -1},
		{"type decides before data", []dns.RR{a("255.255.255.255")}, []dns.RR{aaaa}, -1},
		{"more records win", []dns.RR{a("192.168.77.1")}, []dns.RR{a("192.168.77.1"), aaaa}, -1},
		{"sorted before comparing", []dns.RR{a("192.168.77.5"), a("192.168.77.1")}, []dns.RR{a("192.168.77.1"), a("192.168.77.4")}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := compareRecords(tc.ours, tc.theirs); got != tc.want {
				t.Errorf("compareRecords = %d, want %d", got, tc.want)
			}
			if got := compareRecords(tc.theirs, tc.ours); got != -tc.want {
				t.Errorf("swapped: compareRecords = %d, want %d", got, -tc.want)
			}
		})
	}
}

func TestHostName(t *testing.T) {
	long := strings.Repeat("a", 62) + "b"
	for _, tc := range []struct {
		name   string
		suffix int
		want   string
	}{
		{"hello-pg", 0, "hello-pg.local."},
		{"hello-pg", 2, "hello-pg-2.local."},
		{"hello-pg", 13, "hello-pg-13.local."},
		{long, 0, long + ".local."},
		{long, 2, strings.Repeat("a", 61) + "-2.local."},
		{strings.Repeat("a", 59) + "-bcd", 10, strings.Repeat("a", 59) + "-10.local."}, // cut at the hyphen: no "--"
	} {
		got := hostName(tc.name, tc.suffix)
		if got != tc.want {
			t.Errorf("hostName(%q, %d) = %q, want %q", tc.name, tc.suffix, got, tc.want)
		}
		if label := strings.TrimSuffix(got, ".local."); len(label) > 63 {
			t.Errorf("hostName(%q, %d): label of %d bytes", tc.name, tc.suffix, len(label))
		}
	}
}

func TestCheckLabel(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"hello-pg", true},
		{"a", true},
		{"x1-2-3", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-a", false},
		{"a-", false},
		{"a.b", false},
		{"a_b", false},
		{"héllo", false},
		{"Hello", false}, // Publish lowers the case before checking
	} {
		err := checkLabel(tc.name)
		if tc.ok != (err == nil) {
			t.Errorf("checkLabel(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("checkLabel(%q) = %v, not an invalid argument", tc.name, err)
		}
	}
}
