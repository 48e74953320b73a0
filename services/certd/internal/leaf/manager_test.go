package leaf

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/certd/internal/ca"
	"hearth.dev/services/certd/internal/names"
	"hearth.dev/services/certd/internal/store"
)

type fixture struct {
	dir string
	st  store.Storage
	ca  *ca.CA
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := names.Local(names.DefaultInternalDomain)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Open(ca.Options{Storage: st, Constraints: cons})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, st: st, ca: c}
}

// manager opens a Manager on the fixture's storage with the local issuer and extra issuers.
func (f *fixture) manager(t testing.TB, lifetime time.Duration, extra map[Kind]Issuer) *Manager {
	t.Helper()
	iss := map[Kind]Issuer{Local: LocalIssuer{CA: f.ca, Lifetime: lifetime}}
	for k, v := range extra {
		iss[k] = v
	}
	m, err := New(Options{Storage: f.st, Issuers: iss, CA: f.ca, Policy: names.Policy{InternalDomain: names.DefaultInternalDomain},
		RetryBase: 100 * time.Millisecond, RetryMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func req(t testing.TB, kind Kind, owner string, ns ...string) Request {
	t.Helper()
	var dns, ips []string
	for _, n := range ns {
		if strings.Trim(n, "0123456789.:abcdef") == "" && strings.ContainsAny(n, ".:") && !strings.Contains(n, "local") {
			ips = append(ips, n)
		} else {
			dns = append(dns, n)
		}
	}
	s, err := names.Parse(dns, ips)
	if err != nil {
		t.Fatal(err)
	}
	return Request{Names: s, Kind: kind, Owner: owner}
}

// run runs m.Run until the test ends, and waits for it to return.
func run(t *testing.T, m *Manager) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return ctx
}

// runAndIssue runs m, subscribes to it and issues r, for tests of the renewal loop.
func runAndIssue(t *testing.T, m *Manager, r Request) (context.Context, *Sub, *Record) {
	t.Helper()
	ctx := run(t, m)
	sub := m.Subscribe()
	t.Cleanup(sub.Close)
	first, err := m.Issue(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, sub, first
}

// next waits for the next event of one of the kinds, skipping others.
func next(t *testing.T, sub *Sub, kinds ...EventKind) Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				t.Fatalf("subscription ended: %v", sub.Err())
			}
			for _, k := range kinds {
				if ev.Kind == k {
					return ev
				}
			}
		case <-deadline:
			t.Fatalf("no event of kinds %v in 20s", kinds)
		}
	}
}

func TestIssueCachesStoresAndReloads(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, 72*time.Hour, nil)
	ctx := context.Background()
	sub := m.Subscribe()
	defer sub.Close()
	r := req(t, Local, "", "nas.local", "192.168.1.10")
	first, err := m.Issue(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, sub, EventIssued); ev.Record.Serial != first.Serial {
		t.Errorf("issued event for serial %s, want %s", ev.Record.Serial, first.Serial)
	}
	if !strings.HasPrefix(first.ID, "nas.local-") || first.Leaf.DNSNames[0] != "nas.local" || len(first.KeyPEM) == 0 {
		t.Errorf("record: id %q, names %v, key %d bytes", first.ID, first.Leaf.DNSNames, len(first.KeyPEM))
	}
	if want := RenewTime(first.IssuedAt, first.NotAfter); !first.RenewAt.Equal(want) {
		t.Errorf("RenewAt %v, want two thirds into the life: %v", first.RenewAt, want)
	}
	again, err := m.Issue(ctx, r)
	if err != nil || again.Serial != first.Serial {
		t.Errorf("second Issue: serial %s, %v; want the cached %s", again.Serial, err, first.Serial)
	}
	other, err := m.Issue(ctx, req(t, Local, "nas", "nas.local", "192.168.1.10"))
	if err == nil {
		t.Errorf("owner nas got 192.168.1.10 without a grant: %s", other.ID)
	}
	owned, err := m.Issue(ctx, req(t, Local, "nas", "nas.local"))
	if err != nil || owned.ID == first.ID || owned.Owner != "nas" {
		t.Fatalf("owner's certificate: %+v, %v", owned, err)
	}
	if got := m.List("nas"); len(got) != 1 || got[0].ID != owned.ID {
		t.Errorf("List(nas) = %d records", len(got))
	}
	if _, err := m.Get(first.ID, "nas"); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("Get of another's certificate: %v, want ErrPermissionDenied", err)
	}
	if _, err := m.Get("nope", ""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get(nope): %v, want ErrNotFound", err)
	}
	if _, err := m.Issue(ctx, req(t, ACME, "", "example.org")); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "--acme-directory") {
		t.Errorf("ACME without an ACME CA: %v", err)
	}
	if _, err := m.Issue(ctx, req(t, Local, "", "example.com")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("local certificate for example.com: %v, want ErrInvalidArgument", err)
	}

	renewed, err := m.Renew(ctx, first.ID, "")
	if err != nil || renewed.Serial == first.Serial {
		t.Fatalf("Renew: %v, serial %s", err, renewed.Serial)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "certs", first.ID, first.Serial+".key")); !os.IsNotExist(err) {
		t.Errorf("the replaced key is still stored: %v", err)
	}
	fi, err := os.Stat(filepath.Join(f.dir, "certs", first.ID, renewed.Serial+".key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v", err, fi.Mode())
	}

	// A new Manager on the same storage has the same certificates.
	m2 := f.manager(t, 72*time.Hour, nil)
	got, err := m2.Get(first.ID, "")
	if err != nil || got.Serial != renewed.Serial || string(got.KeyPEM) != string(renewed.KeyPEM) || got.Leaf == nil {
		t.Fatalf("after reload: %v, serial %s, want %s", err, got.Serial, renewed.Serial)
	}
	if len(m2.List("")) != 2 {
		t.Errorf("after reload %d records, want 2", len(m2.List("")))
	}
	// A damaged record is skipped, not fatal.
	if err := f.st.Store("certs/broken-00000000/meta.json", []byte("{")); err != nil {
		t.Fatal(err)
	}
	if m3 := f.manager(t, time.Hour, nil); len(m3.List("")) != 2 {
		t.Errorf("with a damaged record: %d records, want 2", len(m3.List("")))
	}
}

func TestRunRenewsAtTwoThirds(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, 1500*time.Millisecond, nil)
	_, sub, first := runAndIssue(t, m, req(t, Local, "", "web.local"))
	ev := next(t, sub, EventRenewed)
	if ev.Record.ID != first.ID || ev.Record.Serial == first.Serial {
		t.Errorf("renewed event: id %s serial %s; first serial %s", ev.Record.ID, ev.Record.Serial, first.Serial)
	}
	if ev.Record.IssuedAt.Before(first.RenewAt) {
		t.Errorf("renewed at %v, before it was due at %v", ev.Record.IssuedAt, first.RenewAt)
	}
	if ev.Record.NotAfter.Before(first.NotAfter) {
		t.Errorf("renewed certificate ends %v, before the first %v", ev.Record.NotAfter, first.NotAfter)
	}
}

// flaky fails its first fails issues.
type flaky struct {
	LocalIssuer
	fails int32
	calls atomic.Int32
}

func (f *flaky) Issue(ctx context.Context, r Request, prev *Record) (*Obtained, error) {
	if n := f.calls.Add(1); n > 1 && n <= 1+f.fails {
		return nil, fmt.Errorf("CA unreachable (call %d)", n)
	}
	return f.LocalIssuer.Issue(ctx, r, prev)
}

func TestRunBacksOffAfterFailures(t *testing.T) {
	f := newFixture(t)
	fl := &flaky{LocalIssuer: LocalIssuer{CA: f.ca, Lifetime: 3 * time.Second}, fails: 3}
	m := f.manager(t, time.Hour, map[Kind]Issuer{Local: fl})
	ctx, sub, first := runAndIssue(t, m, req(t, Local, "", "web.local"))
	// Times are judged against the records' own RetryAt: this test may read an event
	// late (a loaded machine), which must not pass for a retry that came early.
	var retryAt time.Time
	for i := 1; i <= 3; i++ {
		ev := next(t, sub, EventRenewalFailed, EventRenewed)
		if ev.Kind != EventRenewalFailed || ev.Record.Failures != i || !strings.Contains(ev.Record.LastError, "CA unreachable") {
			t.Fatalf("event %d: kind %v failures %d error %q", i, ev.Kind, ev.Record.Failures, ev.Record.LastError)
		}
		// The retry happened before this test read it, so before now: if now is still
		// before the last failure's RetryAt, the retry came early.
		if i > 1 && time.Now().Before(retryAt.Add(-20*time.Millisecond)) {
			t.Errorf("retry %d came %v before its backoff ended", i, time.Until(retryAt))
		}
		if time.Until(ev.Record.RetryAt) > Backoff(i, 100*time.Millisecond, time.Second) {
			t.Errorf("failure %d: RetryAt %v from now, want at most its backoff %v", i, time.Until(ev.Record.RetryAt), Backoff(i, 100*time.Millisecond, time.Second))
		}
		retryAt = ev.Record.RetryAt
		// While failing, Issue hands out the still valid certificate without asking the
		// CA (judged only while the backoff surely lasts, before and after the call).
		calls := fl.calls.Load()
		got, err := m.Issue(ctx, req(t, Local, "", "web.local"))
		if err == nil && got.NotAfter.After(time.Now()) && fl.calls.Load() != calls && time.Now().Before(retryAt) {
			t.Errorf("Issue asked the CA during the backoff")
		}
	}
	ev := next(t, sub, EventRenewed)
	if ev.Record.Failures != 0 || ev.Record.LastError != "" || ev.Record.Serial == first.Serial {
		t.Errorf("after recovery: failures %d, error %q", ev.Record.Failures, ev.Record.LastError)
	}
}

func TestRunEndsWatchesWhenItStops(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, time.Hour, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	sub := m.Subscribe()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-sub.C:
		if ok || sub.Err() != nil {
			t.Errorf("subscription after Run stopped: open %v, err %v", ok, sub.Err())
		}
	case <-time.After(5 * time.Second):
		t.Error("subscription still open after Run stopped")
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {6, 32 * time.Second}, {7, time.Minute}, {50, time.Minute}} {
		if got := Backoff(tc.n, time.Second, time.Minute); got != tc.want {
			t.Errorf("Backoff(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

// advising renews when its advice says so, long before two thirds of the life.
type advising struct {
	LocalIssuer
	advised atomic.Int32
}

func (a *advising) Issue(ctx context.Context, r Request, prev *Record) (*Obtained, error) {
	o, err := a.LocalIssuer.Issue(ctx, r, prev)
	if err == nil {
		o.CheckAt = time.Now().Add(200 * time.Millisecond)
	}
	return o, err
}

func (a *advising) Advise(_ context.Context, rec *Record) (time.Time, time.Time, error) {
	a.advised.Add(1)
	return time.Now(), time.Now().Add(time.Hour), nil
}

func TestRunFollowsAdvice(t *testing.T) {
	f := newFixture(t)
	adv := &advising{LocalIssuer: LocalIssuer{CA: f.ca, Lifetime: time.Hour}}
	m := f.manager(t, time.Hour, map[Kind]Issuer{ACME: adv})
	_, sub, first := runAndIssue(t, m, req(t, ACME, "", "web.local"))
	ev := next(t, sub, EventRenewed)
	if ev.Record.Serial == first.Serial || adv.advised.Load() == 0 {
		t.Errorf("renewed without advice (advised %d times)", adv.advised.Load())
	}
	if time.Since(first.IssuedAt) > 30*time.Minute {
		t.Error("renewal waited for two thirds of the life instead of the advice")
	}
}

func TestRotateRootReissuesLocal(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, time.Hour, nil)
	ctx := context.Background()
	oldRoot := f.ca.Roots()[0].Cert
	sub := m.Subscribe()
	defer sub.Close()
	a, err := m.Issue(ctx, req(t, Local, "", "a.local"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Issue(ctx, req(t, Local, "b", "b.local")); err != nil {
		t.Fatal(err)
	}
	n, err := m.RotateRoot(ctx, time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("RotateRoot = %d, %v; want 2 re-issued", n, err)
	}
	if ev := next(t, sub, EventRootRotated); len(ev.Roots) != 2 {
		t.Errorf("rotation event with %d roots, want 2", len(ev.Roots))
	}
	ev := next(t, sub, EventReissued)
	if ev.Record.Leaf.AuthorityKeyId == nil || string(ev.Record.Leaf.AuthorityKeyId) == string(a.Leaf.AuthorityKeyId) {
		t.Error("re-issued leaf is signed by the old intermediate")
	}
	newRoot := f.ca.Roots()[0].Cert
	got, _ := m.Get(a.ID, "")
	for _, root := range []*x509.Certificate{newRoot, oldRoot} {
		pool := x509.NewCertPool()
		pool.AddCert(root)
		inter := x509.NewCertPool()
		for _, c := range mustCerts(t, got.ChainPEM)[1:] {
			inter.AddCert(c)
		}
		if _, err := got.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: "a.local"}); err != nil {
			t.Errorf("re-issued leaf against %s: %v", root.Subject.CommonName, err)
		}
	}
}

func TestHubDropsSlowWatcher(t *testing.T) {
	var h Hub
	slow := h.Subscribe()
	fast := h.Subscribe()
	for i := 0; i < subBuffer+1; i++ {
		h.Publish(Event{Kind: EventIssued})
		<-fast.C
	}
	n := 0
	for range slow.C {
		n++
	}
	if n != subBuffer || !errors.Is(slow.Err(), ErrLagged) || !errors.Is(slow.Err(), errdefs.ErrResourceExhausted) {
		t.Errorf("slow watcher got %d events, err %v", n, slow.Err())
	}
	fast.Close()
	if _, ok := <-fast.C; ok || fast.Err() != nil {
		t.Errorf("closed subscription: open %v, err %v", ok, fast.Err())
	}
}
