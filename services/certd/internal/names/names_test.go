package names

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"hearth.dev/internal/errdefs"
)

func TestParseDNS(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"Web.Local.", "web.local", ""},
		{" nas.local ", "nas.local", ""},
		{"*.app.local", "*.app.local", ""},
		{"xn--bcher-kva.local", "xn--bcher-kva.local", ""},
		{"", "", "empty"},
		{"*.local", "", "wildcard"},
		{"a.*.local", "", "wildcard"},
		{"a..local", "", "empty label"},
		{".local", "", "empty label"},
		{"-a.local", "", "hyphen"},
		{"a_b.local", "", "not allowed"},
		{"bücher.local", "", "punycode"},
		{"10.0.0.1", "", "IP address"},
		{strings.Repeat("a", 64) + ".local", "", "longer than 63"},
		{strings.Repeat("a.", 127) + "local", "", "longer than 253"},
	} {
		got, err := ParseDNS(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseDNS(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseDNS(%q) = %q, %v; want an invalid-argument error with %q", tc.in, got, err, tc.err)
		}
	}
}

func TestParseSortsAndDeduplicates(t *testing.T) {
	s, err := Parse([]string{"b.local", "A.local", "b.local."}, []string{"::ffff:10.0.0.2", "10.0.0.1", "10.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.local", "b.local", "10.0.0.1", "10.0.0.2"}; !slices.Equal(s.Strings(), want) {
		t.Errorf("Strings() = %q, want %q", s.Strings(), want)
	}
	for _, tc := range []struct {
		dns, ips []string
		err      string
	}{
		{nil, nil, "no names"},
		{nil, []string{"fe80::1%eth0"}, "plain IPv4"},
		{nil, []string{"nas.local"}, "plain IPv4"},
		{make([]string, MaxNames+1), nil, "at most"},
	} {
		if _, err := Parse(tc.dns, tc.ips); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Parse(%q, %q) = %v, want error with %q", tc.dns, tc.ips, err, tc.err)
		}
	}
}

func TestLocalConstraints(t *testing.T) {
	c, err := Local(DefaultInternalDomain)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dns, ips []string
		ok       bool
	}{
		{[]string{"nas.local"}, nil, true},
		{[]string{"local"}, nil, true},
		{[]string{"*.app.local"}, nil, true},
		{[]string{"db.pkg.hearth.internal"}, nil, true},
		{nil, []string{"192.168.1.10", "10.1.2.3", "172.31.255.255", "127.0.0.1", "fd12::1", "fe80::1", "::1"}, true},
		{[]string{"example.com"}, nil, false},
		{[]string{"nas.local", "example.com"}, nil, false},
		{[]string{"evil-local"}, nil, false},
		{[]string{"notlocal"}, nil, false},
		{[]string{"*.hearth.internal"}, nil, false},
		{[]string{"hearth.internal.example.com"}, nil, false},
		{nil, []string{"8.8.8.8"}, false},
		{nil, []string{"172.32.0.1"}, false},
		{nil, []string{"2001:db8::1"}, false},
	} {
		s, err := Parse(tc.dns, tc.ips)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Permits(s)
		if (err == nil) != tc.ok {
			t.Errorf("Permits(%v) = %v, want ok=%v", s.Strings(), err, tc.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Permits(%v) = %v, want ErrInvalidArgument", s.Strings(), err)
		}
	}
	if _, err := Local("bad domain"); err == nil {
		t.Error("Local accepted a bad internal domain")
	}
	nets := c.X509Ranges()
	if len(nets) != len(PrivateRanges) || nets[0].String() != "10.0.0.0/8" || len(nets[0].IP) != 4 || nets[4].String() != "fc00::/7" {
		t.Errorf("X509Ranges = %v", nets)
	}
	if d := c.X509Domains(); !slices.Equal(d, []string{"local", ".local", "hearth.internal", ".hearth.internal"}) {
		t.Errorf("X509Domains = %q", d)
	}
}

func TestPolicyAllow(t *testing.T) {
	p := Policy{InternalDomain: "hearth.internal"}
	if err := p.ParseGrant("nextcloud=cloud.local,192.168.1.20"); err != nil {
		t.Fatal(err)
	}
	if err := p.ParseGrant("nextcloud=files.example.org"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		owner    string
		dns, ips []string
		ok       bool
		held     []string
	}{
		{"", []string{"anything.local"}, []string{"10.0.0.1"}, true, nil},
		{"nextcloud", []string{"nextcloud.local", "www.nextcloud.local", "*.nextcloud.local", "nextcloud.hearth.internal"}, nil, true, nil},
		{"nextcloud", []string{"cloud.local", "a.cloud.local", "files.example.org"}, []string{"192.168.1.20"}, true, nil},
		{"nextcloud", []string{"other.local"}, nil, false, nil},
		{"nextcloud", []string{"xnextcloud.local"}, nil, false, nil},
		{"nextcloud", []string{"nextcloud.local.evil.com"}, nil, false, nil},
		{"nextcloud", nil, []string{"192.168.1.21"}, false, nil},
		{"gitea", []string{"nextcloud.local"}, nil, false, nil},
		{"gitea", []string{"cloud.local"}, nil, false, nil},
		// Names the caller vouches the owner holds: exactly those, not below them.
		{"gitea", []string{"gitea-2.local", "git.example.org"}, nil, true, []string{"gitea-2.local", "git.example.org"}},
		{"gitea", []string{"www.git.example.org"}, nil, false, []string{"git.example.org"}},
		{"gitea", []string{"other.example.org"}, nil, false, []string{"git.example.org"}},
		{"gitea", nil, []string{"192.168.1.20"}, false, []string{"192.168.1.20"}},
	} {
		s, err := Parse(tc.dns, tc.ips)
		if err != nil {
			t.Fatal(err)
		}
		err = p.Allow(tc.owner, s, tc.held...)
		if (err == nil) != tc.ok {
			t.Errorf("Allow(%q, %v) = %v, want ok=%v", tc.owner, s.Strings(), err, tc.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("Allow(%q, %v) = %v, want ErrPermissionDenied", tc.owner, s.Strings(), err)
		}
	}
	if got := p.Grants["nextcloud"].IPs; !slices.Equal(got, []netip.Addr{netip.MustParseAddr("192.168.1.20")}) {
		t.Errorf("grant IPs = %v", got)
	}
	for _, bad := range []string{"nextcloud", "=a.local", "Bad Owner=a.local", "x=a..local"} {
		if err := p.ParseGrant(bad); err == nil {
			t.Errorf("ParseGrant(%q) accepted", bad)
		}
	}
	for _, o := range []string{"UPPER", "-x", "a.b", strings.Repeat("a", 64)} {
		if err := CheckOwner(o); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("CheckOwner(%q) = %v, want ErrInvalidArgument", o, err)
		}
	}
}

// FuzzParseDNS: whatever comes in, an accepted name is canonical (parsing it again gives
// itself) and made only of the allowed characters.
func FuzzParseDNS(f *testing.F) {
	for _, s := range []string{"web.local", "*.a.local", "A.B.", "xn--x.local", "..", "-", "10.0.0.1", "a*b.local"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n, err := ParseDNS(in)
		if err != nil {
			return
		}
		again, err := ParseDNS(n)
		if err != nil || again != n {
			t.Fatalf("ParseDNS(%q) = %q, but ParseDNS(%q) = %q, %v", in, n, n, again, err)
		}
		if strings.Trim(n, "abcdefghijklmnopqrstuvwxyz0123456789-.*") != "" || len(n) > 253 {
			t.Fatalf("ParseDNS(%q) = %q has characters outside the allowed set", in, n)
		}
	})
}
