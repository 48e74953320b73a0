package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/dial"
	certv1 "hearth.dev/proto/hearth/cert/v1"
)

// certdEnv is one certd started by a test, with its own run and state directories.
type certdEnv struct {
	runDir, stateDir string
	args             []string
	d                *daemonProc
	cl               certv1.CertificateServiceClient
}

// startCertd starts bin/certd; the test's own group may call it, so that it runs as any
// user.
func startCertd(t *testing.T, args ...string) *certdEnv {
	t.Helper()
	dir := tempDir(t)
	e := &certdEnv{runDir: filepath.Join(dir, "run"), stateDir: filepath.Join(dir, "state")}
	e.args = append([]string{"--run-dir", e.runDir, "--state-dir", e.stateDir, "--group", strconv.Itoa(os.Getgid())}, args...)
	e.start(t)
	return e
}

func (e *certdEnv) start(t *testing.T) {
	t.Helper()
	e.d = startDaemon(t, "certd", filepath.Join(e.runDir, "certd.sock"), e.args...)
	conn, err := dial.Unix(e.d.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.cl = certv1.NewCertificateServiceClient(conn)
}

// restart stops certd and starts it again on the same state.
func (e *certdEnv) restart(t *testing.T) {
	t.Helper()
	e.d.stop(syscall.SIGTERM)
	e.start(t)
}

func (e *certdEnv) ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return hearthctl(t, e.runDir, args...)
}

// watch streams certd's events into a channel until the test ends. It returns once the
// stream is live: it asks for the existing certificates and waits for the first, so at
// least one certificate must exist.
func (e *certdEnv) watch(t *testing.T, owner string) <-chan *certv1.WatchCertificatesResponse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := e.cl.WatchCertificates(ctx, &certv1.WatchCertificatesRequest{IncludeExisting: true, Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *certv1.WatchCertificatesResponse, 64)
	go func() {
		defer close(ch)
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			ch <- ev
		}
	}()
	waitEvent(t, ch, certv1.Event_EVENT_EXISTING, "")
	return ch
}

// waitEvent waits for an event of the kind (for certificate id, unless empty).
func waitEvent(t *testing.T, ch <-chan *certv1.WatchCertificatesResponse, kind certv1.Event, id string) *certv1.WatchCertificatesResponse {
	t.Helper()
	deadline := time.After(90 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch ended while waiting for %v of %q", kind, id)
			}
			if ev.GetEvent() == kind && (id == "" || ev.GetCertificate().GetId() == id) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %v event for %q in 90s", kind, id)
		}
	}
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// verifyLocal checks a chain (leaf first) for name against exactly the given root, with
// Go's x509 and with openssl verify.
func verifyLocal(t *testing.T, chainPEM []byte, name string, root *x509.Certificate) error {
	t.Helper()
	certs := parseCerts(t, chainPEM)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, goErr := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name})
	sslErr := opensslVerify(t, certs, name, root)
	if (goErr == nil) != (sslErr == nil) {
		t.Errorf("Go and openssl disagree on %s: Go %v, openssl %v", name, goErr, sslErr)
	}
	return errors.Join(goErr, sslErr)
}

// opensslVerify runs openssl verify on the leaf with the rest of the chain untrusted.
func opensslVerify(t *testing.T, chain []*x509.Certificate, name string, root *x509.Certificate) error {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl not found: deploy/install-deps.sh installs it")
	}
	dir := t.TempDir()
	args := []string{"verify", "-CAfile", writeFile(t, filepath.Join(dir, "root.pem"), pemCert(root))}
	if len(chain) > 1 {
		var rest []byte
		for _, c := range chain[1:] {
			rest = append(rest, pemCert(c)...)
		}
		args = append(args, "-untrusted", writeFile(t, filepath.Join(dir, "untrusted.pem"), rest))
	}
	if ip := net.ParseIP(name); ip != nil {
		args = append(args, "-verify_ip", name)
	} else {
		args = append(args, "-verify_hostname", name)
	}
	args = append(args, writeFile(t, filepath.Join(dir, "leaf.pem"), pemCert(chain[0])))
	out, err := exec.Command(openssl, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		return fmt.Errorf("openssl verify: %v: %s", err, out)
	}
	return nil
}

func root(t *testing.T, e *certdEnv) []*x509.Certificate {
	t.Helper()
	resp, err := e.cl.GetRoot(context.Background(), &certv1.GetRootRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for _, p := range resp.GetRootsPem() {
		out = append(out, parseCerts(t, p)[0])
	}
	return out
}

func TestCertdLocalChainAndNameConstraints(t *testing.T) {
	e := startCertd(t)
	dir := t.TempDir()

	// The root, as PEM and DER, with instructions for trusting it.
	out, err := e.ctl(t, "cert", "root", "--out", filepath.Join(dir, "root.pem"))
	if err != nil || !strings.Contains(out, "update-ca-certificates") || !strings.Contains(out, "certutil") || !strings.Contains(out, "security add-trusted-cert") {
		t.Fatalf("cert root: %v\n%s", err, out)
	}
	pemData, _ := os.ReadFile(filepath.Join(dir, "root.pem"))
	rootCert := parseCerts(t, pemData)[0]
	if _, err := e.ctl(t, "cert", "root", "--format", "der", "--out", filepath.Join(dir, "root.der")); err != nil {
		t.Fatal(err)
	}
	der, _ := os.ReadFile(filepath.Join(dir, "root.der"))
	if !bytes.Equal(der, rootCert.Raw) {
		t.Error("the DER export differs from the PEM one")
	}
	stdoutPEM, err := e.ctl(t, "cert", "root")
	if err != nil || stdoutPEM != string(pemData) {
		t.Errorf("cert root to stdout: %v; differs from --out: %v", err, stdoutPEM != string(pemData))
	}
	if !rootCert.IsCA || !rootCert.PermittedDNSDomainsCritical || len(rootCert.PermittedIPRanges) == 0 || rootCert.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("root: CA %v, constraints critical %v, IP ranges %v, key %v", rootCert.IsCA, rootCert.PermittedDNSDomainsCritical, rootCert.PermittedIPRanges, rootCert.PublicKeyAlgorithm)
	}

	// A leaf for a LAN name and a private address verifies with Go and openssl.
	chainFile, keyFile := filepath.Join(dir, "nas.pem"), filepath.Join(dir, "nas.key")
	if _, err := e.ctl(t, "cert", "issue", "nas.local", "192.168.1.10", "--cert-out", chainFile, "--key-out", keyFile); err != nil {
		t.Fatal(err)
	}
	chain, _ := os.ReadFile(chainFile)
	key, _ := os.ReadFile(keyFile)
	if _, err := tls.X509KeyPair(chain, key); err != nil {
		t.Errorf("chain and key do not pair: %v", err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("--key-out file: %v, mode %v", err, fi.Mode())
	}
	for _, name := range []string{"nas.local", "192.168.1.10"} {
		if err := verifyLocal(t, chain, name, rootCert); err != nil {
			t.Errorf("leaf for %s: %v", name, err)
		}
	}
	if err := verifyLocal(t, chain, "other.local", rootCert); err == nil {
		t.Error("the leaf verified for a name it does not carry")
	}

	// Names outside the constraints are refused, with the reason.
	for _, tc := range []struct{ name, want string }{
		{"example.com", "outside the local CA's name constraints"},
		{"8.8.8.8", "not a private address"},
	} {
		out, err := e.ctl(t, "cert", "issue", tc.name)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "InvalidArgument") {
			t.Errorf("issue %s: %v\n%s", tc.name, err, out)
		}
	}

	// A leaf forged outside the constraints with the intermediate's own key fails.
	interKeys, _ := filepath.Glob(filepath.Join(e.stateDir, "ca", "*", "intermediate-*.key"))
	if len(interKeys) != 1 {
		t.Fatalf("intermediate keys in the state: %v", interKeys)
	}
	keyPEM, _ := os.ReadFile(interKeys[0])
	interPEM, _ := os.ReadFile(strings.TrimSuffix(interKeys[0], ".key") + ".pem")
	kb, _ := pem.Decode(keyPEM)
	interKey, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	inter := parseCerts(t, interPEM)[0]
	for _, tc := range []struct {
		name string
		tmpl x509.Certificate
	}{
		{"example.com", x509.Certificate{DNSNames: []string{"example.com"}}},
		{"8.8.8.8", x509.Certificate{IPAddresses: []net.IP{net.ParseIP("8.8.8.8")}}},
	} {
		leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := tc.tmpl
		tmpl.SerialNumber = big.NewInt(4242)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, inter, leafKey.Public(), interKey)
		if err != nil {
			t.Fatal(err)
		}
		forged := parseCerts(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))[0]
		roots, inters := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(rootCert)
		inters.AddCert(inter)
		_, err = forged.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: tc.name})
		var inv x509.CertificateInvalidError
		if !errors.As(err, &inv) || inv.Reason != x509.CANotAuthorizedForThisName {
			t.Errorf("forged leaf for %s, Go: %v, want CANotAuthorizedForThisName", tc.name, err)
		}
		err = opensslVerify(t, []*x509.Certificate{forged, inter}, tc.name, rootCert)
		if err == nil || !strings.Contains(err.Error(), "permitted subtree violation") {
			t.Errorf("forged leaf for %s, openssl: %v, want a permitted subtree violation", tc.name, err)
		}
	}

	// Every file of the state is 0600, every directory 0700.
	err = filepath.Walk(e.stateDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCertdOwnerGetsOwnNamesOnly(t *testing.T) {
	e := startCertd(t, "--grant", "nextcloud=cloud.local,192.168.1.20")
	ctx := testCtx(t, time.Minute)
	issue := func(owner string, dns ...string) (*certv1.Certificate, error) {
		resp, err := e.cl.IssueCertificate(ctx, &certv1.IssueCertificateRequest{Owner: owner, DnsNames: dns})
		return resp.GetCertificate(), err
	}
	own, err := issue("nextcloud", "nextcloud.local", "www.nextcloud.local", "nextcloud.hearth.internal", "cloud.local")
	if err != nil {
		t.Fatalf("own and granted names: %v", err)
	}
	if own.GetOwner() != "nextcloud" || len(own.GetKeyPem()) == 0 {
		t.Errorf("owner %q, key %d bytes", own.GetOwner(), len(own.GetKeyPem()))
	}
	for _, n := range []string{"gitea.local", "nextcloud.local.example.com"} {
		if _, err := issue("nextcloud", n); status.Code(err) != codes.PermissionDenied {
			t.Errorf("nextcloud asked for %s: %v, want PermissionDenied", n, err)
		}
	}
	out, err := e.ctl(t, "cert", "issue", "--owner", "gitea", "nextcloud.local")
	if err == nil || !strings.Contains(err.Error(), "gitea.local") || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Errorf("hearthctl issue for another package's name: %v\n%s", err, out)
	}
	if _, err := e.cl.GetCertificate(ctx, &certv1.GetCertificateRequest{Id: own.GetId(), Owner: "gitea", IncludeKey: true}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("gitea read nextcloud's certificate: %v", err)
	}
	if _, err := issue("Bad Owner", "x.local"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad owner id: %v", err)
	}
	// The administrator (no owner) may have any name inside the constraints.
	if _, err := issue("", "gitea.local"); err != nil {
		t.Errorf("administrative issue: %v", err)
	}
	list, err := e.cl.ListCertificates(ctx, &certv1.ListCertificatesRequest{Owner: "nextcloud"})
	if err != nil || len(list.GetCertificates()) != 1 || list.GetCertificates()[0].GetId() != own.GetId() || len(list.GetCertificates()[0].GetKeyPem()) != 0 {
		t.Errorf("list of nextcloud's certificates: %v %v", list, err)
	}
}

func TestCertdRenewsShortLivedCertificateAndWatchReportsIt(t *testing.T) {
	e := startCertd(t, "--leaf-lifetime", "6s")
	out, err := e.ctl(t, "-o", "json", "cert", "issue", "web.local")
	if err != nil {
		t.Fatal(err)
	}
	var resp certv1.IssueCertificateResponse
	hearthctlJSON(t, e.runDir, &resp, "cert", "issue", "web.local")
	first := resp.GetCertificate()
	if first.GetId() == "" || !strings.Contains(out, first.GetSerial()) {
		t.Fatalf("issue twice gave different certificates (not cached):\n%s\n%v", out, first)
	}
	events := e.watch(t, "")
	// No one calls certd from here on: the renewal is its own.
	ev := waitEvent(t, events, certv1.Event_EVENT_RENEWED, first.GetId())
	c := ev.GetCertificate()
	if c.GetSerial() == first.GetSerial() || !c.GetNotAfter().AsTime().After(first.GetNotAfter().AsTime()) {
		t.Errorf("renewed certificate: serial %s (was %s), not after %v (was %v)", c.GetSerial(), first.GetSerial(), c.GetNotAfter().AsTime(), first.GetNotAfter().AsTime())
	}
	if renewedAt := time.Now(); renewedAt.Before(first.GetRenewAt().AsTime()) {
		t.Errorf("renewed at %v, before it was due (%v)", renewedAt, first.GetRenewAt().AsTime())
	}
	if len(c.GetKeyPem()) != 0 {
		t.Error("watch sent a private key without include_key")
	}
	if err := verifyLocal(t, c.GetChainPem(), "web.local", root(t, e)[0]); err != nil {
		t.Errorf("renewed chain: %v", err)
	}
	// And again: renewal keeps going.
	ev2 := waitEvent(t, events, certv1.Event_EVENT_RENEWED, first.GetId())
	if ev2.GetCertificate().GetSerial() == c.GetSerial() {
		t.Error("second renewal kept the serial")
	}
}

func TestCertdRootRotationWithOverlap(t *testing.T) {
	e := startCertd(t)
	if _, err := e.ctl(t, "cert", "issue", "web.local"); err != nil {
		t.Fatal(err)
	}
	oldRoot := root(t, e)[0]
	events := e.watch(t, "")
	var rot certv1.RotateRootResponse
	hearthctlJSON(t, e.runDir, &rot, "cert", "root", "--rotate", "--overlap", "1h")
	if rot.GetReissued() != 1 || len(rot.GetRoots()) != 2 || !rot.GetRoots()[0].GetCurrent() || rot.GetRoots()[1].GetCurrent() {
		t.Fatalf("rotate: %v", &rot)
	}
	if until := rot.GetRoots()[1].GetPublishedUntil().AsTime(); until.Before(time.Now().Add(59*time.Minute)) || until.After(time.Now().Add(61*time.Minute)) {
		t.Errorf("old root published until %v, want in an hour", until)
	}
	if ev := waitEvent(t, events, certv1.Event_EVENT_ROOT_ROTATED, ""); len(ev.GetRoots()) != 2 {
		t.Errorf("rotation event with %d roots", len(ev.GetRoots()))
	}
	ev := waitEvent(t, events, certv1.Event_EVENT_REISSUED, "")
	roots := root(t, e)
	if len(roots) != 2 || !roots[1].Equal(oldRoot) || roots[0].Equal(oldRoot) {
		t.Fatalf("GetRoot after rotation: %d roots", len(roots))
	}
	// The re-issued leaf verifies for devices that trust either root.
	for _, r := range roots {
		if err := verifyLocal(t, ev.GetCertificate().GetChainPem(), "web.local", r); err != nil {
			t.Errorf("re-issued leaf against %s: %v", r.Subject.CommonName, err)
		}
	}
	pemAll, err := e.ctl(t, "cert", "root", "--all")
	if err != nil || len(parseCerts(t, []byte(pemAll))) != 2 {
		t.Errorf("cert root --all: %v", err)
	}
	// Both roots are still published after a restart.
	e.restart(t)
	if r := root(t, e); len(r) != 2 || !r[0].Equal(roots[0]) {
		t.Errorf("after restart: %d roots", len(r))
	}
}

func TestCertdRestartKeepsCALeavesAndACMEAccount(t *testing.T) {
	p := startPebble(t, true)
	e := startCertd(t, "--acme-directory", p.Directory, "--acme-ca-roots", p.RootsFile, "--acme-email", "admin@hearth.test",
		"--http01-addr", p.HTTP01Addr)
	ctx := testCtx(t, 2*time.Minute)
	local, err := e.cl.IssueCertificate(ctx, &certv1.IssueCertificateRequest{DnsNames: []string{"nas.local"}})
	if err != nil {
		t.Fatal(err)
	}
	// Always-valid mode: Pebble issues without validating.
	acme, err := e.cl.IssueCertificate(ctx, &certv1.IssueCertificateRequest{DnsNames: []string{"always.hearth.test"}, Issuer: certv1.Issuer_ISSUER_ACME})
	if err != nil {
		t.Fatal(err)
	}
	verifyACME(t, p, acme.GetCertificate().GetChainPem(), "always.hearth.test")
	accounts, _ := filepath.Glob(filepath.Join(e.stateDir, "acme", "accounts", "*", "account.json"))
	if len(accounts) != 1 {
		t.Fatalf("account files: %v", accounts)
	}
	account, _ := os.ReadFile(accounts[0])
	roots := root(t, e)

	e.restart(t)
	if r := root(t, e); len(r) != 1 || !r[0].Equal(roots[0]) {
		t.Error("the root changed across a restart")
	}
	for _, want := range []*certv1.Certificate{local.GetCertificate(), acme.GetCertificate()} {
		got, err := e.cl.GetCertificate(ctx, &certv1.GetCertificateRequest{Id: want.GetId(), IncludeKey: true})
		if err != nil {
			t.Fatalf("after restart, %s: %v", want.GetId(), err)
		}
		c := got.GetCertificate()
		if c.GetSerial() != want.GetSerial() || !bytes.Equal(c.GetKeyPem(), want.GetKeyPem()) || !bytes.Equal(c.GetChainPem(), want.GetChainPem()) {
			t.Errorf("after restart %s changed: serial %s, was %s", want.GetId(), c.GetSerial(), want.GetSerial())
		}
	}
	// Asking again returns the cached certificate, not a new one.
	again, err := e.cl.IssueCertificate(ctx, &certv1.IssueCertificateRequest{DnsNames: []string{"always.hearth.test"}, Issuer: certv1.Issuer_ISSUER_ACME})
	if err != nil || again.GetCertificate().GetSerial() != acme.GetCertificate().GetSerial() {
		t.Errorf("issue after restart: %v, serial %s", err, again.GetCertificate().GetSerial())
	}
	// The stored account still works: a renewal goes through without registering anew.
	out, err := e.ctl(t, "cert", "renew", acme.GetCertificate().GetId())
	if err != nil {
		t.Fatalf("renew after restart: %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(accounts[0]); !bytes.Equal(after, account) {
		t.Errorf("the ACME account changed:\n%s\nwas\n%s", after, account)
	}
	if log := e.d.log.String(); !strings.Contains(log, "using the stored ACME account") || strings.Contains(log, "registered an ACME account") {
		t.Errorf("certd did not reuse the stored account:\n%s", log)
	}
}

func TestCertdACMEWithPebble(t *testing.T) {
	p := startPebble(t, false)
	// DNS-01 through lego's exec provider, which sets the TXT record in challtestsrv.
	script := writeFile(t, filepath.Join(t.TempDir(), "dns01.sh"), []byte(`#!/bin/sh
# lego's exec provider: $1 is present or cleanup, $2 the record's name, $3 its value.
set -e
case "$1" in
present) curl -sf -X POST -d "{\"host\":\"$2\",\"value\":\"$3\"}" `+p.ChallMgmt+`/set-txt ;;
cleanup) curl -sf -X POST -d "{\"host\":\"$2\"}" `+p.ChallMgmt+`/clear-txt ;;
esac
`))
	if err := os.Chmod(script, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl not found: deploy/install-deps.sh installs it")
	}
	t.Setenv("EXEC_PATH", script)
	t.Setenv("EXEC_POLLING_INTERVAL", "1")
	t.Setenv("EXEC_PROPAGATION_TIMEOUT", "30")
	e := startCertd(t, "--acme-directory", p.Directory, "--acme-ca-roots", p.RootsFile,
		"--http01-addr", p.HTTP01Addr, "--tlsalpn01-addr", p.TLSALPN01Addr,
		"--dns01-provider", "exec", "--dns01-resolvers", p.DNSAddr, "--dns01-propagation", "recursive",
		"--ari-interval", "1s")

	for _, tc := range []struct {
		challenge, name, answered string
	}{
		{"http-01", "www.http.hearth.test", "answered an http-01 challenge"},
		{"tls-alpn-01", "www.alpn.hearth.test", "answered a tls-alpn-01 challenge"},
		{"dns-01", "www.dns.hearth.test", ""},
	} {
		t.Run(tc.challenge, func(t *testing.T) {
			var resp certv1.IssueCertificateResponse
			hearthctlJSON(t, e.runDir, &resp, "cert", "issue", tc.name, "--acme", "--challenge", tc.challenge)
			c := resp.GetCertificate()
			if c.GetIssuer() != certv1.Issuer_ISSUER_ACME || c.GetChallenge() == certv1.Challenge_CHALLENGE_UNSPECIFIED {
				t.Errorf("issuer %v, challenge %v", c.GetIssuer(), c.GetChallenge())
			}
			leaf := verifyACME(t, p, c.GetChainPem(), tc.name)
			if leaf.PublicKeyAlgorithm != x509.ECDSA {
				t.Errorf("ACME key %v, want ECDSA", leaf.PublicKeyAlgorithm)
			}
			if tc.answered != "" && !strings.Contains(e.d.log.String(), tc.answered) {
				t.Errorf("certd's log does not show that it %s: Pebble validated someone else", tc.answered)
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"nas.local", "--acme"}, "LAN name"},
			{[]string{"www.example.org", "203.0.113.9", "--acme"}, "not addresses"},
		} {
			out, err := e.ctl(t, append([]string{"cert", "issue"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("issue %v: %v\n%s", tc.args, err, out)
			}
		}
		// Pebble cannot reach a name that resolves nowhere we answer: the error says so.
		resp, err := http.Post(p.ChallMgmt+"/set-default-ipv4", "application/json", strings.NewReader(`{"ip":"127.0.0.2"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		t.Cleanup(func() {
			r, err := http.Post(p.ChallMgmt+"/set-default-ipv4", "application/json", strings.NewReader(`{"ip":"127.0.0.1"}`))
			if err == nil {
				r.Body.Close()
			}
		})
		out, err := e.ctl(t, "cert", "issue", "unreachable.hearth.test", "--acme", "--challenge", "http-01")
		if err == nil || !strings.Contains(err.Error(), "Unavailable") {
			t.Errorf("issue for a name validated elsewhere: %v\n%s", err, out)
		}
	})

	t.Run("renewal information", func(t *testing.T) {
		var resp certv1.IssueCertificateResponse
		hearthctlJSON(t, e.runDir, &resp, "cert", "issue", "www.ari.hearth.test", "--acme", "--challenge", "http-01")
		first := resp.GetCertificate()
		if d := time.Until(first.GetRenewAt().AsTime()); d < 24*time.Hour {
			t.Errorf("a 90-day certificate is due for renewal in %v", d)
		}
		events := e.watch(t, "")
		// The CA now says: renew, the window closes in two seconds (as after a revocation).
		// certd asks every second and picks its time inside the window.
		p.SetRenewalInfo(t, first.GetChainPem(), time.Now().Add(-time.Hour), time.Now().Add(2*time.Second))
		ev := waitEvent(t, events, certv1.Event_EVENT_RENEWED, first.GetId())
		if ev.GetCertificate().GetSerial() == first.GetSerial() {
			t.Error("renewed with the same serial")
		}
		verifyACME(t, p, ev.GetCertificate().GetChainPem(), "www.ari.hearth.test")
		if !strings.Contains(e.d.log.String(), "the ACME CA moved the renewal") {
			t.Error("certd's log does not show the renewal moved by the CA's renewal information")
		}
	})
}

// BenchmarkACMEIssuePebble measures one ACME issuance through certd (gRPC, lego, the
// account's order, finalization) against Pebble in always-valid mode without sleeps, and
// without the bad nonces Pebble injects to test clients (5% of requests by default).
func BenchmarkACMEIssuePebble(b *testing.B) {
	p := startPebble(b, true, "PEBBLE_WFE_NONCEREJECT=0")
	dir := tempDir(b)
	runDir := filepath.Join(dir, "run")
	d := startDaemon(b, "certd", filepath.Join(runDir, "certd.sock"), "--run-dir", runDir, "--state-dir", filepath.Join(dir, "state"),
		"--group", strconv.Itoa(os.Getgid()), "--acme-directory", p.Directory, "--acme-ca-roots", p.RootsFile, "--http01-addr", p.HTTP01Addr)
	conn, err := dial.Unix(d.socket)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	cl := certv1.NewCertificateServiceClient(conn)
	ctx := context.Background()
	// The account is registered by the first issuance; keep that out of the timing.
	if _, err := cl.IssueCertificate(ctx, &certv1.IssueCertificateRequest{DnsNames: []string{"warmup.bench.test"}, Issuer: certv1.Issuer_ISSUER_ACME}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("n%d-%d.bench.test", time.Now().UnixNano(), i)
		if _, err := cl.IssueCertificate(ctx, &certv1.IssueCertificateRequest{DnsNames: []string{name}, Issuer: certv1.Issuer_ISSUER_ACME}); err != nil {
			b.Fatal(err)
		}
	}
}
