package ca

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/certd/internal/names"
	"hearth.dev/services/certd/internal/store"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func openCA(t *testing.T, dir string, clk *clock) *CA {
	t.Helper()
	st, err := store.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := names.Local(names.DefaultInternalDomain)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(Options{Storage: st, Constraints: cons, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustSet(t *testing.T, dns, ips []string) names.Set {
	t.Helper()
	s, err := names.Parse(dns, ips)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verify checks a chain against exactly the given roots at time at.
func verify(iss *Issued, at time.Time, name string, roots ...*x509.Certificate) error {
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range iss.Chain[1:] {
		inter.AddCert(c)
	}
	_, err := iss.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: name, CurrentTime: at})
	return err
}

func TestOpenCreatesConstrainedCAAndReloads(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{time.Now()}
	c := openCA(t, dir, clk)
	roots := c.Roots()
	if len(roots) != 1 || !roots[0].Current {
		t.Fatalf("Roots() = %+v, want one current root", roots)
	}
	root := roots[0].Cert
	if !root.IsCA || root.PublicKeyAlgorithm != x509.ECDSA || root.NotAfter.Sub(root.NotBefore) < 9*365*24*time.Hour {
		t.Errorf("root: CA %v, key %v, life %v", root.IsCA, root.PublicKeyAlgorithm, root.NotAfter.Sub(root.NotBefore))
	}
	for _, cert := range []*x509.Certificate{root, c.inter} {
		var critical bool
		for _, e := range cert.Extensions {
			if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 30}) {
				critical = e.Critical
			}
		}
		if !critical || !cert.PermittedDNSDomainsCritical {
			t.Errorf("%s: name constraints missing or not critical", cert.Subject.CommonName)
		}
		if got := strings.Join(cert.PermittedDNSDomains, " "); got != "local .local hearth.internal .hearth.internal" {
			t.Errorf("%s: permitted DNS %q", cert.Subject.CommonName, got)
		}
		if len(cert.PermittedIPRanges) != len(names.PrivateRanges) {
			t.Errorf("%s: permitted IP ranges %v", cert.Subject.CommonName, cert.PermittedIPRanges)
		}
	}
	// Every file 0600, every directory 0700; keys are where the layout says.
	for _, p := range []string{"ca/index.json", "ca/" + rootID(root) + "/root.key", "ca/" + rootID(root) + "/intermediate-1.key"} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %o, want 600", p, fi.Mode().Perm())
		}
	}
	again := openCA(t, dir, clk)
	if Fingerprint(again.Roots()[0].Cert) != Fingerprint(root) || Fingerprint(again.inter) != Fingerprint(c.inter) {
		t.Error("a second Open made a new CA instead of loading the stored one")
	}
}

func TestIssueWithinConstraints(t *testing.T) {
	clk := &clock{time.Now()}
	c := openCA(t, t.TempDir(), clk)
	iss, err := c.Issue(mustSet(t, []string{"nas.local", "db.pkg.hearth.internal"}, []string{"192.168.1.10", "fd00::10"}), 72*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	root := c.Roots()[0].Cert
	for _, name := range []string{"nas.local", "db.pkg.hearth.internal", "192.168.1.10", "fd00::10"} {
		if err := verify(iss, clk.t, name, root); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if got := iss.Leaf.NotAfter.Sub(clk.t); got <= 72*time.Hour-time.Second || got > 72*time.Hour {
		t.Errorf("leaf lifetime %v, want 72h (to the second)", got)
	}
	if iss.Leaf.IsCA || len(iss.Chain) != 2 {
		t.Errorf("leaf IsCA %v, chain length %d", iss.Leaf.IsCA, len(iss.Chain))
	}
	for _, tc := range []struct{ dns, ips []string }{
		{[]string{"example.com"}, nil},
		{[]string{"nas.local", "example.com"}, nil},
		{nil, []string{"8.8.8.8"}},
	} {
		_, err := c.Issue(mustSet(t, tc.dns, tc.ips), time.Hour)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "outside") && !strings.Contains(err.Error(), "not a private address") {
			t.Errorf("Issue(%v %v) = %v, want a refusal naming the constraints", tc.dns, tc.ips, err)
		}
	}
}

// A leaf signed by our intermediate for a name outside the constraints (as a thief of the
// intermediate's key would make it) does not verify.
func TestForgedLeafOutsideConstraintsFails(t *testing.T) {
	clk := &clock{time.Now()}
	c := openCA(t, t.TempDir(), clk)
	for _, tc := range []struct {
		name string
		tmpl x509.Certificate
	}{
		{"example.com", x509.Certificate{DNSNames: []string{"example.com"}}},
		{"8.8.8.8", x509.Certificate{IPAddresses: []net.IP{net.ParseIP("8.8.8.8")}}},
	} {
		tmpl := tc.tmpl
		tmpl.SerialNumber = big.NewInt(99)
		tmpl.NotBefore, tmpl.NotAfter = clk.t.Add(-time.Minute), clk.t.Add(time.Hour)
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, c.inter, c.inter.PublicKey, c.interKey)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		err = verify(&Issued{Leaf: leaf, Chain: []*x509.Certificate{leaf, c.inter}}, clk.t, tc.name, c.root)
		var inv x509.CertificateInvalidError
		if !errors.As(err, &inv) || inv.Reason != x509.CANotAuthorizedForThisName {
			t.Errorf("forged leaf for %s: Verify = %v, want CANotAuthorizedForThisName", tc.name, err)
		}
	}
}

func TestRotateWithOverlap(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{time.Now()}
	c := openCA(t, dir, clk)
	oldRoot := c.Roots()[0].Cert
	before, err := c.Issue(mustSet(t, []string{"web.local"}, nil), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Rotate(48 * time.Hour); err != nil {
		t.Fatal(err)
	}
	roots := c.Roots()
	if len(roots) != 2 || !roots[0].Current || roots[1].Current || Fingerprint(roots[1].Cert) != Fingerprint(oldRoot) {
		t.Fatalf("Roots() after rotation = %+v, want new current then old", roots)
	}
	if !roots[1].PublishedUntil.Equal(clk.t.Add(48 * time.Hour)) {
		t.Errorf("old root published until %v, want %v", roots[1].PublishedUntil, clk.t.Add(48*time.Hour))
	}
	newRoot := roots[0].Cert
	after, err := c.Issue(mustSet(t, []string{"web.local"}, nil), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// During the overlap a new leaf verifies for devices trusting either root.
	if err := verify(after, clk.t, "web.local", newRoot); err != nil {
		t.Errorf("new leaf against the new root: %v", err)
	}
	if err := verify(after, clk.t, "web.local", oldRoot); err != nil {
		t.Errorf("new leaf against the old root (through the cross certificate): %v", err)
	}
	if err := verify(before, clk.t, "web.local", oldRoot); err != nil {
		t.Errorf("old leaf against the old root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca", rootID(oldRoot), "root.key")); !os.IsNotExist(err) {
		t.Errorf("old root key still stored: %v", err)
	}
	// The rotation survives a restart.
	again := openCA(t, dir, clk)
	if r := again.Roots(); len(r) != 2 || Fingerprint(r[0].Cert) != Fingerprint(newRoot) {
		t.Fatalf("reloaded roots = %d, want the rotated pair", len(r))
	}
	// After the overlap the old root is no longer published nor kept, and new leaves
	// chain to the new root alone.
	clk.t = clk.t.Add(49 * time.Hour)
	if next := again.NextMaintenance(); next.After(clk.t) {
		t.Errorf("NextMaintenance %v is after the overlap's end", next)
	}
	if err := again.Maintain(); err != nil {
		t.Fatal(err)
	}
	if r := again.Roots(); len(r) != 1 || Fingerprint(r[0].Cert) != Fingerprint(newRoot) {
		t.Errorf("roots after the overlap = %d, want the new root only", len(r))
	}
	if _, err := os.Stat(filepath.Join(dir, "ca", rootID(oldRoot))); !os.IsNotExist(err) {
		t.Errorf("old root directory still there: %v", err)
	}
	late, err := again.Issue(mustSet(t, []string{"web.local"}, nil), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(late.Chain) != 2 {
		t.Errorf("chain after the overlap has %d certificates, want leaf and intermediate", len(late.Chain))
	}
	if err := verify(late, clk.t, "web.local", oldRoot); err == nil {
		t.Error("after the overlap a new leaf still verifies against the old root")
	}
}

func TestRotateWithoutOverlapDropsOldRoot(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{time.Now()}
	c := openCA(t, dir, clk)
	old := c.Roots()[0].Cert
	if err := c.Rotate(0); err != nil {
		t.Fatal(err)
	}
	if r := c.Roots(); len(r) != 1 || Fingerprint(r[0].Cert) == Fingerprint(old) {
		t.Errorf("Roots() = %d roots, want only a new one", len(r))
	}
	if _, err := os.Stat(filepath.Join(dir, "ca", rootID(old))); !os.IsNotExist(err) {
		t.Errorf("old root directory still there: %v", err)
	}
	if err := c.Rotate(-time.Hour); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Rotate(-1h) = %v, want ErrInvalidArgument", err)
	}
}

func TestMaintainRenewsIntermediate(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{time.Now()}
	c := openCA(t, dir, clk)
	first := c.inter
	if err := c.Maintain(); err != nil {
		t.Fatal(err)
	}
	if c.inter != first {
		t.Fatal("Maintain renewed a fresh intermediate")
	}
	clk.t = clk.t.Add(DefaultIntermediateLifetime * 2 / 3)
	if next := c.NextMaintenance(); next.After(clk.t) {
		t.Errorf("NextMaintenance %v, want by %v", next, clk.t)
	}
	if err := c.Maintain(); err != nil {
		t.Fatal(err)
	}
	if c.inter == first || c.idx.Intermediate != 2 {
		t.Fatalf("intermediate not renewed at two thirds of its life (index %d)", c.idx.Intermediate)
	}
	iss, err := c.Issue(mustSet(t, []string{"nas.local"}, nil), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(iss, clk.t, "nas.local", c.root); err != nil {
		t.Errorf("leaf under the renewed intermediate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca", c.idx.Current, "intermediate-1.key")); !os.IsNotExist(err) {
		t.Errorf("old intermediate key still stored: %v", err)
	}
	if again := openCA(t, dir, clk); Fingerprint(again.inter) != Fingerprint(c.inter) {
		t.Error("the renewed intermediate was not loaded after a restart")
	}
}
