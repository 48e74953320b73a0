package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// toolPath finds a pinned tool: on PATH (make test puts bin/tools there), else in
// bin/tools beside the binaries.
func toolPath(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := filepath.Join(binDir, "tools", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Fatalf("%s not found on PATH nor in %s: run 'make tools' (it builds Pebble from tools/go.mod) and put bin/tools on PATH", name, filepath.Join(binDir, "tools"))
	return ""
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a helper process a test started; it is stopped (by PID) when the test ends.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

func startProc(t testing.TB, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(name), log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", p.name, p.log.String())
		}
	})
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// pebble is a Pebble ACME CA with pebble-challtestsrv as its DNS, both on 127.0.0.1.
type pebble struct {
	// Directory is the ACME directory URL; RootsFile the PEM that Pebble's HTTPS
	// certificate verifies against (certd's --acme-ca-roots).
	Directory string
	RootsFile string
	// HTTP01Addr and TLSALPN01Addr are where Pebble's validator connects for HTTP-01 and
	// TLS-ALPN-01: certd's solvers listen there.
	HTTP01Addr    string
	TLSALPN01Addr string
	// DNSAddr is challtestsrv's DNS server; ChallMgmt its management API.
	DNSAddr   string
	ChallMgmt string
	mgmt      string
	client    *http.Client
	proc      *proc
}

// startPebble starts pebble-challtestsrv (resolving every name to 127.0.0.1) and Pebble
// with PEBBLE_VA_NOSLEEP, and with PEBBLE_VA_ALWAYS_VALID when alwaysValid; env adds to
// Pebble's environment.
func startPebble(t testing.TB, alwaysValid bool, env ...string) *pebble {
	t.Helper()
	return startPebbleAt(t, alwaysValid, "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t)), env...)
}

// startPebbleAt is startPebble with every name resolving to ip, and the validator
// connecting to the ports of http01 and tlsalpn01 there (netd's 80 and 443).
func startPebbleAt(t testing.TB, alwaysValid bool, ip, http01, tlsalpn01 string, env ...string) *pebble {
	t.Helper()
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := pebbleTLS(t)
	p := &pebble{
		RootsFile:     filepath.Join(dir, "pebble-https-ca.pem"),
		HTTP01Addr:    http01,
		TLSALPN01Addr: tlsalpn01,
		DNSAddr:       fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		ChallMgmt:     fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mgmt := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p.Directory, p.mgmt = "https://"+listen+"/dir", "https://"+mgmt
	for name, data := range map[string][]byte{"pebble-https-ca.pem": caPEM, "cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := func(addr string) int {
		_, s, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(s)
		return n
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    filepath.Join(dir, "cert.pem"),
		"privateKey":                     filepath.Join(dir, "key.pem"),
		"httpPort":                       port(p.HTTP01Addr),
		"tlsPort":                        port(p.TLSALPN01Addr),
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"profiles":                       map[string]any{"default": map[string]any{"description": "test", "validityPeriod": 7776000}},
	}}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "pebble.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	startProc(t, nil, toolPath(t, "pebble-challtestsrv"),
		"-management", p.ChallMgmt[len("http://"):], "-dns01", p.DNSAddr,
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-defaultIPv4", ip, "-defaultIPv6", "")
	env = append(env, "PEBBLE_VA_NOSLEEP=1")
	if alwaysValid {
		env = append(env, "PEBBLE_VA_ALWAYS_VALID=1")
	}
	p.proc = startProc(t, env, toolPath(t, "pebble"), "-config", filepath.Join(dir, "pebble.json"), "-dnsserver", p.DNSAddr)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	p.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := p.client.Get(p.Directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Pebble's directory %s did not answer in 20s: %v\n%s", p.Directory, err, p.proc.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := waitTCP(p.ChallMgmt[len("http://"):], 10*time.Second); err != nil {
		t.Fatalf("pebble-challtestsrv: %v", err)
	}
	return p
}

func waitTCP(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %v: %w", addr, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Roots returns the roots Pebble issues under, from its management interface
// (/roots/0); they change with every start of Pebble.
func (p *pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/roots/0: %d %v", p.mgmt, resp.StatusCode, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no PEM root from %s/roots/0:\n%s", p.mgmt, b)
	}
	return pool
}

// SetRenewalInfo makes Pebble answer renewal information (ARI) for the certificate with
// a window from start to end.
func (p *pebble) SetRenewalInfo(t testing.TB, certPEM []byte, start, end time.Time) {
	t.Helper()
	ari, _ := json.Marshal(map[string]any{"suggestedWindow": map[string]string{"start": start.UTC().Format(time.RFC3339), "end": end.UTC().Format(time.RFC3339)}})
	body, _ := json.Marshal(map[string]string{"certificate": string(certPEM), "ariResponse": string(ari)})
	resp, err := p.client.Post(p.mgmt+"/set-renewal-info/", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("set-renewal-info: %d %s", resp.StatusCode, b)
	}
}

// pebbleTLS makes a CA and, under it, the certificate Pebble serves HTTPS with (for
// 127.0.0.1 and localhost). It returns the CA, certificate and key, PEM.
func pebbleTLS(t testing.TB) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA for Pebble's HTTPS"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "pebble"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// verifyACME checks an ACME chain (leaf first, PEM) against Pebble's roots for name.
func verifyACME(t testing.TB, p *pebble, chainPEM []byte, name string) *x509.Certificate {
	t.Helper()
	certs := parseCerts(t, chainPEM)
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: p.Roots(t), Intermediates: inter, DNSName: name}); err != nil {
		t.Errorf("ACME certificate for %s does not verify against Pebble's root: %v", name, err)
	}
	return certs[0]
}

func parseCerts(t testing.TB, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("no PEM certificate")
	}
	return out
}

// ctx returns a context that ends with the test or after d.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
