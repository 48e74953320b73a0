package firewall

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"hearth.dev/internal/errdefs"
)

func validState() State {
	return State{
		Bridge:   "hearth0",
		Subnet:   netip.MustParsePrefix("10.88.0.0/24"),
		Services: []Port{{UDP, 53}, {TCP, 53}, {TCP, 443}},
		Containers: []Container{
			{Name: "web", Addr: netip.MustParseAddr("10.88.0.2"), Interfaces: []Port{{TCP, 8080}}},
			{Name: "db", Addr: netip.MustParseAddr("10.88.0.3"), Interfaces: []Port{{TCP, 5432}, {TCP, 5432}}},
		},
		Forwards: []Forward{{Proto: TCP, HostPort: 15432, Container: "db", Port: 5432}},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*State)
		want   string // a piece of the error; "" for none
	}{
		{"valid", func(*State) {}, ""},
		{"no bridge", func(s *State) { s.Bridge = "" }, "bridge name"},
		{"long bridge", func(s *State) { s.Bridge = "abcdefghijklmnop" }, "bridge name"},
		{"IPv6 subnet", func(s *State) { s.Subnet = netip.MustParsePrefix("fd00::/64") }, "IPv4 subnet"},
		{"tiny subnet", func(s *State) { s.Subnet = netip.MustParsePrefix("10.88.0.0/31") }, "IPv4 subnet"},
		{"bad service", func(s *State) { s.Services = []Port{{Proto(1), 53}} }, "tcp or udp"},
		{"service port 0", func(s *State) { s.Services = []Port{{TCP, 0}} }, "1 to 65535"},
		{"nameless container", func(s *State) { s.Containers[0].Name = "" }, "has no name"},
		{"outside the subnet", func(s *State) { s.Containers[0].Addr = netip.MustParseAddr("10.89.0.2") }, "not a host address"},
		{"at the gateway", func(s *State) { s.Containers[0].Addr = netip.MustParseAddr("10.88.0.1") }, "not a host address"},
		{"network address", func(s *State) { s.Containers[0].Addr = netip.MustParseAddr("10.88.0.0") }, "not a host address"},
		{"same name", func(s *State) { s.Containers[1].Name = "web" }, "listed twice"},
		{"same address", func(s *State) { s.Containers[1].Addr = s.Containers[0].Addr }, "both have address"},
		{"bad interface", func(s *State) { s.Containers[0].Interfaces = []Port{{UDP, 0}} }, `container "web": interface`},
		{"forward to nobody", func(s *State) { s.Forwards[0].Container = "gone" }, `no container "gone"`},
		{"forward to a closed port", func(s *State) { s.Forwards[0].Port = 22 }, "not an interface"},
		{"forward of another protocol", func(s *State) { s.Forwards[0].Proto = UDP }, "not an interface"},
		{"forward host port 0", func(s *State) { s.Forwards[0].HostPort = 0 }, "host port"},
		{"two forwards, one host port", func(s *State) {
			s.Forwards = append(s.Forwards, Forward{Proto: TCP, HostPort: 15432, Container: "web", Port: 8080})
		}, "share host port"},
		{"the same forward twice", func(s *State) { s.Forwards = append(s.Forwards, s.Forwards[0]) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validState()
			tt.change(&s)
			err := s.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error saying %q", err, tt.want)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Validate = %v, want an invalid argument", err)
			}
		})
	}
}

// comments lists a ruleset as "chain: comment" lines.
func comments(t *testing.T, s State) []string {
	t.Helper()
	n, err := s.normalize()
	if err != nil {
		t.Fatal(err)
	}
	chains, err := ruleset(n)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range chains {
		for _, r := range c.rules {
			out = append(out, c.name+": "+r.comment)
		}
	}
	return out
}

func TestRulesetOrderFree(t *testing.T) {
	a := validState()
	b := validState()
	slices.Reverse(b.Containers)
	slices.Reverse(b.Services)
	b.Forwards = append(b.Forwards, b.Forwards[0])
	ca, cb := comments(t, a), comments(t, b)
	if !slices.Equal(ca, cb) {
		t.Fatalf("the same state in another order gives other rules:\n%s\n--\n%s", strings.Join(ca, "\n"), strings.Join(cb, "\n"))
	}
	// One rule per service, interface (deduplicated) and forward, and the base chains'.
	for _, want := range []string{
		"services: service udp/53 #", "services: service tcp/53 #", "services: service tcp/443 #",
		"flows: flow web tcp/8080 #", "flows: flow db tcp/5432 #", "forwards: forward tcp/15432 db:5432 #",
		"forward: forward drop #", "postrouting: masquerade out #",
	} {
		n := 0
		for _, c := range ca {
			if strings.HasPrefix(c, want) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d rules start with %q, want 1:\n%s", n, want, strings.Join(ca, "\n"))
		}
	}
	if len(ca) != 3+2+1+3+6+1+1+2 {
		t.Errorf("%d rules, want %d:\n%s", len(ca), 3+2+1+3+6+1+1+2, strings.Join(ca, "\n"))
	}
}

func TestRuleHashFollowsExpressions(t *testing.T) {
	a := validState()
	b := validState()
	b.Containers[0].Addr = netip.MustParseAddr("10.88.0.9") // same labels, other expressions
	ca, cb := comments(t, a), comments(t, b)
	var differ []string
	for i := range ca {
		if ca[i] != cb[i] {
			differ = append(differ, ca[i])
		}
	}
	if len(differ) != 1 || !strings.HasPrefix(differ[0], "flows: flow web tcp/8080 #") {
		t.Fatalf("rules that differ: %q, want only web's flow", differ)
	}
}

func TestLongNamesKeepShortComments(t *testing.T) {
	s := validState()
	s.Containers[0].Name = strings.Repeat("x", 300)
	s.Forwards = append(s.Forwards, Forward{Proto: TCP, HostPort: 18080, Container: s.Containers[0].Name, Port: 8080})
	seen := map[string]bool{}
	for _, c := range comments(t, s) {
		if len(c) > len("forwards: ")+128 {
			t.Errorf("comment of %d bytes: %s", len(c), c)
		}
		if seen[c] {
			t.Errorf("two rules with comment %s", c)
		}
		seen[c] = true
	}
}
