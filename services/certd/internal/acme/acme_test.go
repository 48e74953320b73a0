package acme

import (
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	legoacme "github.com/go-acme/lego/v4/acme"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/registration"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/certd/internal/leaf"
	"hearth.dev/services/certd/internal/names"
	"hearth.dev/services/certd/internal/solver"
	"hearth.dev/services/certd/internal/store"
)

func newIssuer(t *testing.T, solvers map[string]solver.Solver, ari time.Duration) *Issuer {
	t.Helper()
	st, err := store.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	local, err := names.Local(names.DefaultInternalDomain)
	if err != nil {
		t.Fatal(err)
	}
	i, err := New(Options{Directory: "https://127.0.0.1:1/dir", Storage: st, Solvers: solvers, Local: local, ARIInterval: ari})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestCheckRefusesBeforeAskingTheCA(t *testing.T) {
	var ch solver.Challenges
	i := newIssuer(t, map[string]solver.Solver{HTTP01: ch.HTTP01()}, 0)
	for _, tc := range []struct {
		dns, ips  []string
		challenge string
		err       string
		kind      error
	}{
		{[]string{"www.example.org"}, nil, "", "", nil},
		{[]string{"www.example.org"}, nil, HTTP01, "", nil},
		{[]string{"www.example.org"}, []string{"203.0.113.5"}, "", "not addresses", errdefs.ErrInvalidArgument},
		{[]string{"nas.local"}, nil, "", "LAN name", errdefs.ErrInvalidArgument},
		{[]string{"db.x.hearth.internal"}, nil, "", "LAN name", errdefs.ErrInvalidArgument},
		{[]string{"www.example.org"}, nil, TLSALPN01, "--tlsalpn01-addr", errdefs.ErrFailedPrecondition},
		{[]string{"www.example.org"}, nil, DNS01, "--dns01-provider", errdefs.ErrFailedPrecondition},
	} {
		s, err := names.Parse(tc.dns, tc.ips)
		if err != nil {
			t.Fatal(err)
		}
		err = i.check(leaf.Request{Names: s, Kind: leaf.ACME, Challenge: tc.challenge})
		if tc.err == "" {
			if err != nil {
				t.Errorf("check(%v %v %q) = %v", tc.dns, tc.ips, tc.challenge, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, tc.kind) {
			t.Errorf("check(%v %v %q) = %v, want %v with %q", tc.dns, tc.ips, tc.challenge, err, tc.kind, tc.err)
		}
	}
	if _, err := New(Options{Directory: "https://x/dir"}); err == nil || !strings.Contains(err.Error(), "--http01-addr") {
		t.Errorf("New without solvers: %v", err)
	}
}

func TestSchedule(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	notAfter := now.Add(90 * 24 * time.Hour)
	window := func(start, end time.Duration, retry time.Duration) *certificate.RenewalInfoResponse {
		return &certificate.RenewalInfoResponse{
			RenewalInfoResponse: legoacme.RenewalInfoResponse{SuggestedWindow: legoacme.Window{Start: now.Add(start), End: now.Add(end)}},
			RetryAfter:          retry,
		}
	}
	for _, tc := range []struct {
		name              string
		info              *certificate.RenewalInfoResponse
		current           time.Time
		ari               time.Duration
		renewMin, renewTo time.Duration // renewAt within [now+renewMin, now+renewTo]
		check             time.Duration // 0: no check before renewing
	}{
		{"window ahead, CA's Retry-After", window(60*24*time.Hour, 62*24*time.Hour, 6*time.Hour), time.Time{}, 0, 60 * 24 * time.Hour, 62 * 24 * time.Hour, 6 * time.Hour},
		{"window ahead, no Retry-After", window(60*24*time.Hour, 62*24*time.Hour, 0), time.Time{}, 0, 60 * 24 * time.Hour, 62 * 24 * time.Hour, DefaultARIInterval},
		{"window ahead, our interval", window(60*24*time.Hour, 62*24*time.Hour, 6*time.Hour), time.Time{}, time.Second, 60 * 24 * time.Hour, 62 * 24 * time.Hour, time.Second},
		{"current inside the window is kept", window(60*24*time.Hour, 62*24*time.Hour, 0), now.Add(61 * 24 * time.Hour), 0, 61 * 24 * time.Hour, 61 * 24 * time.Hour, DefaultARIInterval},
		{"window in the past: now", window(-2*time.Hour, -time.Hour, 0), now.Add(50 * 24 * time.Hour), 0, 0, 0, 0},
		{"window open now", window(-time.Hour, time.Nanosecond, 0), time.Time{}, 0, 0, time.Nanosecond, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := &Issuer{opts: Options{ARIInterval: tc.ari}}
			renewAt, checkAt := i.schedule(tc.info, tc.current, notAfter, now)
			if renewAt.Before(now.Add(tc.renewMin)) || renewAt.After(now.Add(tc.renewTo)) {
				t.Errorf("renewAt %v, want within [%v, %v]", renewAt.Sub(now), tc.renewMin, tc.renewTo)
			}
			if tc.check == 0 && !checkAt.IsZero() || tc.check != 0 && !checkAt.Equal(now.Add(tc.check)) {
				t.Errorf("checkAt %v, want now+%v", checkAt.Sub(now), tc.check)
			}
		})
	}
}

func TestAccountStoredPerDirectory(t *testing.T) {
	dir := t.TempDir()
	st, err := store.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := loadAccount(st, "https://ca.example/dir", "me@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if a.Registration != nil || a.key == nil {
		t.Fatalf("new account: registration %v, key %v", a.Registration, a.key)
	}
	// Before registering, a reload keeps the key (the CA knows the account by it).
	b, err := loadAccount(st, "https://ca.example/dir", "me@example.org")
	if err != nil || !a.key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(b.key.Public()) {
		t.Fatalf("reload before registration: %v, same key %v", err, err == nil)
	}
	a.Registration = &registration.Resource{URI: "https://ca.example/acct/1"}
	if err := storeAccount(st, a); err != nil {
		t.Fatal(err)
	}
	c, err := loadAccount(st, "https://ca.example/dir", "")
	if err != nil || c.Registration == nil || c.Registration.URI != "https://ca.example/acct/1" || c.Email != "me@example.org" {
		t.Fatalf("reload: %+v, %v", c, err)
	}
	other, err := loadAccount(st, "https://other.example/dir", "")
	if err != nil || other.Registration != nil || other.key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(a.key.Public()) {
		t.Errorf("another directory shares the account: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, AccountDir("https://ca.example/dir"), "account.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("account key: %v, mode %v", err, fi.Mode())
	}
}
