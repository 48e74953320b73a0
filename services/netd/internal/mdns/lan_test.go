package mdns

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Bounds of the steps (RFC timings: probing takes 0.75-1 s).
const (
	publishTimeout = 5 * time.Second
	answerTimeout  = 3 * time.Second
	silence        = 1500 * time.Millisecond // how long "no answer" is listened for
)

// TestLANResolve: a responder publishes hello-pg; a LAN client resolves hello-pg.local
// with real mDNS queries of each kind and gets the right kind of answer.
func TestLANResolve(t *testing.T) {
	l := newLab(t, "hearth", "client")
	hearth, lanClient := l.host("hearth"), l.host("client")
	r := l.startResponder(hearth)
	start := time.Now()
	r.command("publish hello-pg")
	ev := r.wait(EventPublished, "hello-pg.local", publishTimeout)
	published := time.Now()
	t.Logf("probe to published: %v as the responder counts it, %v from the publish command", ev.Elapsed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if ev.Elapsed < probes*probeInterval {
		t.Errorf("published after %v: probing takes at least %v", ev.Elapsed, probes*probeInterval)
	}

	oneShot := l.openClient(lanClient, 0)
	full := l.openClient(lanClient, Port)
	for _, tc := range []struct {
		name   string
		c      *client
		qtype  uint16
		qu     bool
		to     netip.Addr // where the answer goes: the group or the client
		answer uint16
		ttl    uint32
		class  uint16
	}{
		{"one-shot A", oneShot, dns.TypeA, false, lanClient.addr, dns.TypeA, legacyTTL, dns.ClassINET},
		{"QM A from 5353", full, dns.TypeA, false, groupAddr, dns.TypeA, ttl, dns.ClassINET | cacheFlush},
		{"QU A from 5353", full, dns.TypeA, true, lanClient.addr, dns.TypeA, ttl, dns.ClassINET | cacheFlush},
		{"QU AAAA from 5353: NSEC", full, dns.TypeAAAA, true, lanClient.addr, dns.TypeNSEC, ttl, dns.ClassINET | cacheFlush},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.to == groupAddr {
				// A record is multicast at most once a second (RFC 6762 section 6):
				// let the second announcement's second pass, so that what the client
				// hears is the answer to its query.
				time.Sleep(time.Until(published.Add(announceWait + 1100*time.Millisecond)))
			}
			q := query("hello-pg.local.", tc.qtype, tc.qu)
			h := tc.c.ask(q, answerTimeout)
			if h == nil {
				t.Fatalf("no answer within %v", answerTimeout)
			}
			if h.after > 500*time.Millisecond {
				t.Errorf("answered after %v: not an answer to the query", h.after)
			}
			if h.src != netip.AddrPortFrom(hearth.addr, Port) || h.dst != tc.to {
				t.Errorf("answer from %v to %v, want from %v:%d to %v", h.src, h.dst, hearth.addr, Port, tc.to)
			}
			if tc.c == oneShot && (h.msg.Id != q.Id || len(h.msg.Question) != 1) {
				t.Errorf("one-shot answer with id %d and question %v, want id %d and the question", h.msg.Id, h.msg.Question, q.Id)
			}
			if len(h.msg.Answer) != 1 {
				t.Fatalf("answers %v", h.msg.Answer)
			}
			rr := h.msg.Answer[0]
			if rr.Header().Rrtype != tc.answer || rr.Header().Ttl != tc.ttl || rr.Header().Class != tc.class {
				t.Errorf("answer %v, want type %d TTL %d class %#x", rr, tc.answer, tc.ttl, tc.class)
			}
			if a, ok := addrOf(rr); tc.answer == dns.TypeA && (!ok || a != hearth.addr) {
				t.Errorf("answer %v, want %v", rr, hearth.addr)
			}
			t.Logf("answered in %v", h.after)
		})
	}
	if a, _ := l.resolve(oneShot, "nobody.local.", silence); a.IsValid() {
		t.Errorf("nobody.local resolved to %v", a)
	}

	// Latency of answers: one-shot queries, one after another.
	const n = 50
	var lat []time.Duration
	for range n {
		a, after := l.resolve(oneShot, "hello-pg.local.", answerTimeout)
		if a != hearth.addr {
			t.Fatalf("hello-pg.local resolved to %v, want %v", a, hearth.addr)
		}
		lat = append(lat, after)
	}
	slices.Sort(lat)
	t.Logf("query answer latency over %d one-shot queries: p50 %v, p99 %v, max %v", n, lat[n/2], lat[n*99/100], lat[n-1])
}

// TestLANRenameWhenTaken: a host on the LAN already has hello-pg.local; our responder
// probes, hears it, takes hello-pg-2.local and says so. Both names resolve, each to its
// own host.
func TestLANRenameWhenTaken(t *testing.T) {
	l := newLab(t, "hearth", "client", "rival")
	hearth, rivalHost := l.host("hearth"), l.host("rival")
	rival := l.startResponder(rivalHost)
	rival.command("publish hello-pg")
	rival.wait(EventPublished, "hello-pg.local", publishTimeout)

	r := l.startResponder(hearth)
	r.command("publish hello-pg")
	ev := r.wait(EventRenamed, "hello-pg-2.local", publishTimeout)
	if ev.From != "hello-pg.local" || ev.Name.Requested != "hello-pg" {
		t.Errorf("renamed event %+v, want from hello-pg.local", ev)
	}
	r.wait(EventPublished, "hello-pg-2.local", publishTimeout)

	c := l.openClient(l.host("client"), 0)
	for name, want := range map[string]netip.Addr{"hello-pg.local.": rivalHost.addr, "hello-pg-2.local.": hearth.addr} {
		if a, _ := l.resolve(c, name, answerTimeout); a != want {
			t.Errorf("%s resolved to %v, want %v", name, a, want)
		}
	}
}

// TestLANDefendThenYield: our responder has hello-pg.local. A well-behaved newcomer
// probes for it, our responder defends it, and the newcomer takes hello-pg-2. Then a
// rogue announces hello-pg.local without probing and answers for it: our responder
// probes again, hears the rogue, and moves on: hello-pg-2 is taken by the newcomer, so
// it ends at hello-pg-3.local.
func TestLANDefendThenYield(t *testing.T) {
	l := newLab(t, "hearth", "client", "newcomer", "rogue")
	hearth := l.host("hearth")
	r := l.startResponder(hearth)
	r.command("publish hello-pg")
	r.wait(EventPublished, "hello-pg.local", publishTimeout)

	newcomer := l.startResponder(l.host("newcomer"))
	newcomer.command("publish hello-pg")
	newcomer.wait(EventRenamed, "hello-pg-2.local", publishTimeout)
	newcomer.wait(EventPublished, "hello-pg-2.local", publishTimeout)
	for _, ev := range r.history() {
		if ev.Kind == EventRenamed || ev.Kind == EventConflict {
			t.Errorf("our responder gave way to a newcomer that probed: %+v", ev)
		}
	}

	l.rogue(l.host("rogue"), "hello-pg.local.")
	r.wait(EventConflict, "hello-pg.local", publishTimeout)
	r.wait(EventRenamed, "hello-pg-2.local", publishTimeout)
	r.wait(EventRenamed, "hello-pg-3.local", publishTimeout)
	r.wait(EventPublished, "hello-pg-3.local", publishTimeout)

	c := l.openClient(l.host("client"), 0)
	if a, _ := l.resolve(c, "hello-pg-3.local.", answerTimeout); a != hearth.addr {
		t.Errorf("hello-pg-3.local resolved to %v, want %v", a, hearth.addr)
	}
}

// TestLANSimultaneousProbe: two responders probe for the same name at the same moment;
// the tie-break gives it to one, the other takes hello-pg-2.
func TestLANSimultaneousProbe(t *testing.T) {
	l := newLab(t, "a", "b")
	ra, rb := l.startResponder(l.host("a")), l.startResponder(l.host("b"))
	ra.command("publish hello-pg")
	rb.command("publish hello-pg")
	got := []string{
		ra.wait(EventPublished, "", 2*publishTimeout).Name.Host,
		rb.wait(EventPublished, "", 2*publishTimeout).Name.Host,
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"hello-pg-2.local", "hello-pg.local"}) {
		t.Errorf("published %v, want hello-pg.local and hello-pg-2.local", got)
	}
}

// TestLANGoodbye: unpublishing sends a goodbye (TTL 0) that a listening client hears,
// and the name is answered no more.
func TestLANGoodbye(t *testing.T) {
	l := newLab(t, "hearth", "client")
	r := l.startResponder(l.host("hearth"))
	r.command("publish hello-pg")
	r.wait(EventPublished, "hello-pg.local", publishTimeout)
	listener := l.openClient(l.host("client"), Port)
	oneShot := l.openClient(l.host("client"), 0)
	if a, _ := l.resolve(oneShot, "hello-pg.local.", answerTimeout); a != l.host("hearth").addr {
		t.Fatalf("before the goodbye hello-pg.local resolved to %v", a)
	}
	r.command("unpublish hello-pg")
	deadline := time.Now().Add(answerTimeout)
	var goodbye *heard
	for goodbye == nil && time.Now().Before(deadline) {
		h := listener.listen("hello-pg.local.", time.Until(deadline))
		if h != nil && len(h.msg.Answer) == 1 && h.msg.Answer[0].Header().Ttl == 0 {
			goodbye = h
		}
	}
	if goodbye == nil {
		t.Fatalf("no goodbye (TTL 0) heard within %v", answerTimeout)
	}
	r.wait(EventWithdrawn, "hello-pg.local", answerTimeout)
	if a, _ := l.resolve(oneShot, "hello-pg.local.", silence); a.IsValid() {
		t.Errorf("after the goodbye hello-pg.local resolved to %v", a)
	}
}

// TestLANRestart: a responder that exits (with goodbyes) or is killed (without) and
// starts again gets its name back, not a "-2" (what netd needs across restarts), and the
// LAN resolves it.
func TestLANRestart(t *testing.T) {
	l := newLab(t, "hearth", "client")
	c := l.openClient(l.host("client"), 0)
	for _, how := range []string{"exit", "kill -9"} {
		t.Run(how, func(t *testing.T) {
			r := l.startResponder(l.host("hearth"))
			r.command("publish hello-pg")
			r.wait(EventPublished, "hello-pg.local", publishTimeout)
			if how == "exit" {
				r.stop()
			} else {
				r.kill()
			}
			again := l.startResponder(l.host("hearth"))
			again.command("publish hello-pg")
			again.wait(EventPublished, "hello-pg.local", publishTimeout)
			for _, ev := range again.history() {
				if ev.Kind == EventRenamed {
					t.Errorf("renamed after a restart: %+v", ev)
				}
			}
			if a, _ := l.resolve(c, "hello-pg.local.", answerTimeout); a != l.host("hearth").addr {
				t.Errorf("after the restart hello-pg.local resolved to %v", a)
			}
			again.stop()
		})
	}
}
