package firewall

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"

	"hearth.dev/internal/errdefs"
)

const testTable = "hearth_test"

func newFirewall(t testing.TB, l *lab) *Firewall {
	t.Helper()
	f, err := New(Config{Table: testTable, NetNS: int(l.host), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// otherTable makes a table of someone else's in the host, with a base chain and a rule.
func otherTable(t *testing.T, l *lab) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(l.host)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Name: "someone_else", Family: nftables.TableFamilyINet})
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "forward", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(5), Policy: &policy})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: append(l4proto(TCP), append(dport(1), accept()...)...),
		UserData: userdata.AppendString(nil, userdata.TypeComment, "not netd's")})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestIsolationNATAndReconcile(t *testing.T) {
	needRoot(t)
	start := time.Now()
	l := newLab(t)
	a := l.addContainer(t, "a", "10.77.0.2")
	b := l.addContainer(t, "b", "10.77.0.3")
	serve(t, l.wan, "198.51.100.2:9000", "wan")
	serve(t, a, ":8080", "a8080")
	serve(t, a, ":9090", "a9090")
	serve(t, b, ":8080", "b8080")
	serve(t, b, ":9090", "b9090")
	serve(t, l.host, "10.77.0.1:1053", "host-service")
	serve(t, l.host, "10.77.0.1:2222", "host-other")
	otherTable(t, l)
	otherBefore := dumpTable(t, l.host, nftables.TableFamilyINet, "someone_else", true)

	// Before: the bridge passes everything, and the host forwards nothing.
	if got, err := dialOpen(t, a, "10.77.0.3:9090"); err != nil || !strings.HasPrefix(got, "b9090 ") {
		t.Fatalf("before the firewall, a -> b:9090 = %q, %v; want it open (the lab is wrong)", got, err)
	}
	if _, err := dial(t, a, "198.51.100.2:9000"); err == nil {
		t.Fatal("before the firewall, a reached the WAN (the lab is wrong)")
	}

	state := State{
		Bridge:   l.bridge,
		Subnet:   l.subnet,
		Services: []Port{{TCP, 1053}, {UDP, 1053}},
		Containers: []Container{
			{Name: "a", Addr: l.addrs["a"], Interfaces: []Port{{TCP, 8080}}},
			{Name: "b", Addr: l.addrs["b"], Interfaces: []Port{{TCP, 8080}}},
		},
		Forwards: []Forward{{Proto: TCP, HostPort: 18080, Container: "b", Port: 8080}},
	}
	f := newFirewall(t, l)
	t.Cleanup(func() { _ = f.Remove() })
	ch, err := f.Apply(state)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !ch.TableCreated || ch.RulesAdded != 18 || !ch.BridgeFlags || !ch.Forwarding {
		t.Fatalf("first Apply: %+v", ch)
	}

	open := func(from, addr, tag, peer string) func(t *testing.T) {
		return func(t *testing.T) {
			got, err := dialOpen(t, l.ns(from), addr)
			if err != nil {
				t.Fatalf("%s -> %s: %v", from, addr, err)
			}
			if want := tag + " " + peer + ":"; !strings.HasPrefix(got, want) {
				t.Fatalf("%s -> %s: answer %q, want %q...", from, addr, got, want)
			}
		}
	}
	blocked := func(from, addr string) func(t *testing.T) {
		return func(t *testing.T) {
			got, err := dial(t, l.ns(from), addr)
			if err == nil {
				t.Fatalf("%s -> %s: answered %q, want it dropped", from, addr, got)
			}
			if !isTimeout(err) {
				t.Fatalf("%s -> %s: %v, want it dropped without an answer", from, addr, err)
			}
		}
	}
	checks := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"a reaches the WAN through NAT, seen from the uplink's address", open("a", "198.51.100.2:9000", "wan", "198.51.100.1")},
		{"a reaches b's interface", open("a", "10.77.0.3:8080", "b8080", "10.77.0.2")},
		{"a cannot reach b's other port", blocked("a", "10.77.0.3:9090")},
		{"b reaches a's interface", open("b", "10.77.0.2:8080", "a8080", "10.77.0.3")},
		{"b cannot reach a's other port", blocked("b", "10.77.0.2:9090")},
		{"the WAN reaches b's interface through the host port", open("wan", "198.51.100.1:18080", "b8080", "198.51.100.2")},
		{"a reaches the host port too, masqueraded to the gateway", open("a", "198.51.100.1:18080", "b8080", "10.77.0.1")},
		{"the host itself reaches its host port", open("host", "198.51.100.1:18080", "b8080", "198.51.100.1")},
		{"the WAN cannot reach a container directly", blocked("wan", "10.77.0.3:8080")},
		{"a reaches a gateway service", open("a", "10.77.0.1:1053", "host-service", "10.77.0.2")},
		{"a cannot reach another port of the host", blocked("a", "10.77.0.1:2222")},
		{"nor the host's other address", blocked("a", "198.51.100.1:1053")},
	}
	for _, c := range checks {
		t.Run(c.name, c.check)
	}

	// The same state, again and again, by this Firewall and by a new one (a restart):
	// nothing is sent, and the table lists the same, handles included.
	before := dumpTable(t, l.host, nftables.TableFamilyINet, testTable, true)
	beforeNft := nftList(t, l.host, "inet", testTable)
	t.Logf("the table:\n%s", beforeNft)
	shuffled := state
	shuffled.Containers = slices.Clone(state.Containers)
	slices.Reverse(shuffled.Containers)
	for i, s := range []State{state, state, state, shuffled, state} {
		fw := f
		if i%2 == 1 {
			fw = newFirewall(t, l)
		}
		if ch, err := fw.Apply(s); err != nil || !ch.None() {
			t.Fatalf("Apply #%d of the same state: %+v, %v; want no change", i+2, ch, err)
		}
	}
	if after := dumpTable(t, l.host, nftables.TableFamilyINet, testTable, true); after != before {
		t.Fatalf("the table changed:\n%s\nwas:\n%s", after, before)
	}
	if after := nftList(t, l.host, "inet", testTable); after != beforeNft {
		t.Fatalf("nft lists another table:\n%s\nwas:\n%s", after, beforeNft)
	}

	// What a crash could leave (a rule written twice, a stranger's rule in a base
	// chain) is repaired, and the table is as before, handles aside.
	injectDuplicates(t, l, find(mustRuleset(t, state), chainFlows, "flow b "))
	ch, err = f.Apply(state)
	if err != nil || ch.RulesDeleted != 1+7 || ch.RulesAdded != 6 {
		t.Fatalf("Apply over a duplicate and a stray rule: %+v, %v", ch, err)
	}
	clean := dumpTable(t, l.host, nftables.TableFamilyINet, testTable, false)
	if want := dumpWithoutHandles(before); clean != want {
		t.Fatalf("repaired table:\n%s\nwant:\n%s", clean, want)
	}

	// b goes: every rule naming it or its address goes, a's stay.
	gone := state
	gone.Containers = state.Containers[:1]
	gone.Forwards = nil
	ch, err = f.Apply(gone)
	if err != nil || ch.RulesDeleted != 2 || ch.RulesAdded != 0 {
		t.Fatalf("Apply without b: %+v, %v; want its flow and its forward deleted", ch, err)
	}
	dump := dumpTable(t, l.host, nftables.TableFamilyINet, testTable, false)
	if strings.Contains(dump, `"flow b `) || strings.Contains(dump, `"forward tcp/18080`) || !strings.Contains(dump, `"flow a tcp/8080`) {
		t.Fatalf("table without b:\n%s", dump)
	}
	if list := nftList(t, l.host, "inet", testTable); list != "" && (strings.Contains(list, "10.77.0.3") || !strings.Contains(list, "10.77.0.2")) {
		t.Fatalf("nft lists b's address, or not a's, after b went:\n%s", list)
	}
	t.Run("b's interface is closed once b's flows are gone", blocked("a", "10.77.0.3:8080"))
	t.Run("and its host port leads to b no more", func(t *testing.T) {
		// The host itself answers now (it refuses: nothing listens there).
		if got, err := dial(t, l.wan, "198.51.100.1:18080"); err == nil {
			t.Fatalf("wan -> host port 18080 answered %q after the forward went", got)
		}
	})
	t.Run("a's interface is still open", open("b", "10.77.0.2:8080", "a8080", "10.77.0.3"))

	// b comes back: the table is as it was.
	if _, err := f.Apply(state); err != nil {
		t.Fatal(err)
	}
	if got := dumpTable(t, l.host, nftables.TableFamilyINet, testTable, false); got != clean {
		t.Fatalf("table after b came back:\n%s\nwant:\n%s", got, clean)
	}

	// Remove: no table left, someone else's untouched (handles included); twice is fine.
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if tableExists(t, l.host, nftables.TableFamilyINet, testTable) {
		t.Fatal("the table is still there after Remove")
	}
	if got := dumpTable(t, l.host, nftables.TableFamilyINet, "someone_else", true); got != otherBefore || !strings.Contains(got, "not netd's") {
		t.Fatalf("someone else's table changed:\n%s\nwas:\n%s", got, otherBefore)
	}
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

func (l *lab) ns(name string) netns.NsHandle {
	if name == "wan" {
		return l.wan
	}
	if name == "host" {
		return l.host
	}
	return l.containers[name]
}

// injectDuplicates adds, as a crash between two writes could leave them, a second copy
// of rule r in flows and a rule of no one's at the top of the forward chain.
func injectDuplicates(t testing.TB, l *lab, r ruleSpec) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(l.host)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Name: testTable, Family: nftables.TableFamilyINet}
	c.AddRule(&nftables.Rule{Table: tbl, Chain: &nftables.Chain{Name: chainFlows, Table: tbl}, Exprs: r.exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, r.comment)})
	c.InsertRule(&nftables.Rule{Table: tbl, Chain: &nftables.Chain{Name: chainForward, Table: tbl},
		Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

// dumpWithoutHandles drops the "[handle]" column of a dumpTable.
func dumpWithoutHandles(d string) string {
	lines := strings.Split(d, "\n")
	for i, line := range lines {
		if rest, ok := strings.CutPrefix(line, "  ["); ok {
			if j := strings.Index(rest, "]"); j >= 0 {
				lines[i] = rest[j+1:]
			}
		}
	}
	return strings.Join(lines, "\n")
}

func TestApplyRefusesWithoutTheBridge(t *testing.T) {
	needRoot(t)
	host := newNS(t)
	f, err := New(Config{Table: testTable, NetNS: int(host), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Apply(State{Bridge: "nosuchbr", Subnet: netip.MustParsePrefix("10.77.0.0/24")})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !errors.Is(err, errNoBridge) {
		t.Fatalf("Apply without the bridge = %v, want a failed precondition naming the bridge", err)
	}
	if tableExists(t, host, nftables.TableFamilyINet, testTable) {
		t.Fatal("Apply made the table though it refused")
	}
}

func hundred(l *lab) State {
	s := State{Bridge: l.bridge, Subnet: l.subnet, Services: []Port{{UDP, 53}, {TCP, 53}, {TCP, 443}}}
	for i := range 100 {
		name := fmt.Sprintf("pkg%03d", i)
		s.Containers = append(s.Containers, Container{Name: name, Addr: netip.AddrFrom4([4]byte{10, 77, 0, byte(2 + i)}),
			Interfaces: []Port{{TCP, 8080}, {UDP, 5000}}})
		s.Forwards = append(s.Forwards, Forward{Proto: TCP, HostPort: uint16(20000 + i), Container: name, Port: 8080})
	}
	return s
}

// BenchmarkApplyHundred: Apply with 100 containers from nothing (after a Remove), when
// nothing changed, and when one container comes and goes.
func BenchmarkApplyHundred(b *testing.B) {
	needRoot(b)
	l := newLab(b)
	s := hundred(l)
	one := s
	one.Containers, one.Forwards = s.Containers[1:], s.Forwards[1:]
	f := newFirewall(b, l)
	b.Cleanup(func() { _ = f.Remove() })
	apply := func(b *testing.B, s State) {
		if _, err := f.Apply(s); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("from-nothing", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			if err := f.Remove(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			apply(b, s)
		}
	})
	b.Run("unchanged", func(b *testing.B) {
		apply(b, s)
		for b.Loop() {
			apply(b, s)
		}
	})
	b.Run("one-container-toggled", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if i++; i%2 == 1 {
				apply(b, one)
			} else {
				apply(b, s)
			}
		}
	})
}

// TestApplyHundred times Apply with 100 containers (two interfaces and a host port
// each): from nothing, again (nothing to do), and with one container gone.
func TestApplyHundred(t *testing.T) {
	needRoot(t)
	l := newLab(t)
	s := hundred(l)
	f := newFirewall(t, l)
	timed := func(what string, s State) Changes {
		t.Helper()
		start := time.Now()
		ch, err := f.Apply(s)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("Apply, 100 containers, %s: %v (%+v)", what, time.Since(start).Round(10*time.Microsecond), ch)
		return ch
	}
	if ch := timed("from nothing", s); ch.RulesAdded != 3+200+100+13 {
		t.Fatalf("rules added: %d, want %d", ch.RulesAdded, 3+200+100+13)
	}
	for range 3 {
		if ch := timed("the same again", s); !ch.None() {
			t.Fatalf("the same state changed %+v", ch)
		}
	}
	one := s
	one.Containers = s.Containers[1:]
	one.Forwards = s.Forwards[1:]
	if ch := timed("one container gone", one); ch.RulesDeleted != 3 || ch.RulesAdded != 0 {
		t.Fatalf("one container gone: %+v, want 3 rules deleted", ch)
	}
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
}
