package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/dial"
	netv1 "hearth.dev/proto/hearth/net/v1"
)

// edgeLab is a lab with netd and certd on the lab's run directory (containerd-lite and
// netd find certd there).
type edgeLab struct {
	*lab
	br        []string
	gw        string
	netdArgs  []string
	certdArgs []string
	certd     *daemonProc
}

// newEdgeLab starts containerd-lite, certd (certdArgs) and netd (testBridge's flags and
// netdArgs).
func newEdgeLab(t *testing.T, l *lab, certdArgs []string, netdArgs ...string) *edgeLab {
	t.Helper()
	if l == nil {
		l = newLab(t)
	}
	e := &edgeLab{lab: l, br: testBridge(t), netdArgs: netdArgs, certdArgs: certdArgs}
	e.gw = gatewayOf(e.br)
	e.startCertd(t)
	e.startNetd(t)
	return e
}

// newACMEEdgeLab is newEdgeLab with certd getting public names' certificates from a
// Pebble of the test's own, which validates through netd's ports on the bridge's gateway.
func newACMEEdgeLab(t *testing.T, l *lab) (*edgeLab, *pebble) {
	t.Helper()
	br := testBridge(t)
	gw := gatewayOf(br)
	// The bridge's gateway exists once netd runs; Pebble only needs it when validating.
	p := startPebbleAt(t, false, gw, gw+":80", gw+":443")
	e := &edgeLab{lab: l, br: br, gw: gw, certdArgs: []string{"--acme-directory", p.Directory, "--acme-ca-roots", p.RootsFile,
		"--netd-challenges", filepath.Join(l.runDir, "netd.sock")}}
	e.startCertd(t)
	e.startNetd(t)
	return e, p
}

// startCertd starts certd on the lab's run directory with e.certdArgs; the test the lab
// lives as long as stops it.
func (e *edgeLab) startCertd(t *testing.T) {
	t.Helper()
	e.certd = startDaemonOwned(t, e.owner, "certd", filepath.Join(e.runDir, "certd.sock"),
		append([]string{"--run-dir", e.runDir, "--state-dir", filepath.Join(e.dir, "certd")}, e.certdArgs...)...)
}

func (e *edgeLab) startNetd(t *testing.T) {
	t.Helper()
	e.lab.startNetd(t, append(slices.Clone(e.br), e.netdArgs...))
}

// netdClient is a BindingService client on netd's socket.
func (e *edgeLab) netdClient(t *testing.T) netv1.BindingServiceClient {
	t.Helper()
	conn, err := dial.Unix(e.netd.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return netv1.NewBindingServiceClient(conn)
}

// ruleset is netd's nftables table as nft lists it, without the handles.
func (e *edgeLab) ruleset(t *testing.T) string {
	t.Helper()
	out, err := run(t, "nft", "list", "table", "inet", e.br[1])
	if err != nil {
		t.Fatalf("nft list table: %v\n%s", err, out)
	}
	return out
}

// importEcho imports the echo app (integration/echoapp) as the image echo:1.
func importEcho(t *testing.T, l *lab) { importAppImage(t, l, "./echoapp", "echo:1") }

// echoManifest runs the echo app: HTTP on 8080 and line echo on 7000 (both interfaces),
// and a second HTTP server on 9090 that is no interface.
func echoManifest(name string) string {
	return fmt.Sprintf(`
id: %[1]s
version: 0.1.0
images:
  app: {ref: "echo:1"}
daemons:
  web:
    image: app
    command: [/app/server, -http, ":8080", -tcp, ":7000", -name, %[1]s]
    ready: {tcp: 8080, interval: 100ms}
  secret:
    image: app
    command: [/app/server, -http, ":9090", -name, %[1]s-secret]
    ready: {tcp: 9090, interval: 100ms}
interfaces:
  web: {daemon: web, port: 8080, protocol: http, expose: [lan, tor, domain]}
  line: {daemon: web, port: 7000, protocol: tcp, expose: [lan, tor]}
`, name)
}

// startEcho starts an echo container and waits for its daemons.
func (e *edgeLab) startEcho(t *testing.T, name string) string {
	t.Helper()
	e.startManifest(t, name, echoManifest(name))
	e.waitDaemons(t, name, "web and secret ready", 30*time.Second, allReady("web", "secret"))
	return e.inspect(t, name).GetContainer().GetAddress()
}

// fetchFrom sends a plain HTTP/1.0 GET from inside a container to host:port with nc and
// returns what came back ("" when nothing answered within 2 s).
func (e *edgeLab) fetchFrom(t *testing.T, container, hostPort, host string) string {
	t.Helper()
	h, p, _ := net.SplitHostPort(hostPort)
	out, _ := e.inside(t, container, nil, "sh", "-c", fmt.Sprintf("printf 'GET / HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n' | nc -w 2 %s %s", host, h, p))
	return out
}

// wanNS makes a network namespace standing for the internet, joined to the host by a
// veth (host 203.0.113.1/24, namespace 203.0.113.2/24), and removes both when t ends.
func wanNS(t *testing.T) string {
	t.Helper()
	n := rand.Intn(1000)
	ns, veth := fmt.Sprintf("hwan%d", n), fmt.Sprintf("hwan%d", n)
	if out, _ := run(t, "ip", "-o", "addr"); strings.Contains(out, " 203.0.113.") {
		t.Fatalf("203.0.113.0/24 is in use on this machine: the test WAN needs it\n%s", out)
	}
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", veth).Run()
		exec.Command("ip", "netns", "del", ns).Run()
	})
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"addr", "add", "203.0.113.1/24", "dev", veth},
		{"link", "set", veth, "up"},
		{"-n", ns, "addr", "add", "203.0.113.2/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	} {
		if out, err := run(t, "ip", args...); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	return ns
}

// listenIn listens on addr inside the named network namespace (the socket stays there).
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result)
	go func() {
		// The thread enters the namespace and is never used again: it ends with the goroutine.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		l, err := net.Listen("tcp", addr)
		ch <- result{l, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen in %s: %v", ns, r.err)
	}
	t.Cleanup(func() { r.l.Close() })
	return r.l
}

// TestNetdIsolationNATAndDNS: a container reaches a server on the "internet" through NAT
// (the server sees the host's address); another package's interface port is reachable
// and its other ports are not; <id>.hearth.internal resolves inside another container,
// whose resolver is netd on the gateway.
func TestNetdIsolationNATAndDNS(t *testing.T) {
	requireRoot(t)
	e := newEdgeLab(t, nil, nil)
	importEcho(t, e.lab)
	alpha := e.startEcho(t, "alpha")
	e.startEcho(t, "beta")

	t.Run("NAT to the WAN", func(t *testing.T) {
		ns := wanNS(t)
		l := listenIn(t, ns, "203.0.113.2:8000")
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "wan saw %s", r.RemoteAddr) })}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		out := e.fetchFrom(t, "beta", "203.0.113.2:8000", "wan")
		if !strings.Contains(out, "wan saw 203.0.113.1:") {
			t.Errorf("from beta to the WAN: %q; want the server to see the host's address (masquerade)", out)
		}
	})

	t.Run("interface ports only", func(t *testing.T) {
		if out := e.fetchFrom(t, "beta", alpha+":8080", "alpha"); !strings.Contains(out, "alpha host=alpha") {
			t.Errorf("beta → alpha's interface port 8080: %q", out)
		}
		if out, _ := e.inside(t, "beta", nil, "sh", "-c", "echo hi | nc -w 2 "+alpha+" 7000"); !strings.Contains(out, "alpha echo: hi") {
			t.Errorf("beta → alpha's TCP interface port 7000: %q", out)
		}
		if out := e.fetchFrom(t, "beta", alpha+":9090", "alpha"); out != "" {
			t.Errorf("beta reached alpha's port 9090, which is no interface: %q", out)
		}
		// The port is open: the host (not a container) reaches it.
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + alpha + ":9090/")
		if err != nil {
			t.Fatalf("the host → alpha:9090: %v", err)
		}
		resp.Body.Close()
		// Inside its own container, every port is open (one network namespace per package).
		if out := e.fetchFrom(t, "alpha", "127.0.0.1:9090", "self"); !strings.Contains(out, "alpha-secret") {
			t.Errorf("alpha → its own 9090: %q", out)
		}
	})

	t.Run("internal DNS", func(t *testing.T) {
		out, err := e.inside(t, "beta", nil, "cat", "/etc/resolv.conf")
		if err != nil || !strings.Contains(out, "nameserver "+e.gw) {
			t.Errorf("beta's resolv.conf: %v\n%s; want nameserver %s", err, out, e.gw)
		}
		out, err = e.inside(t, "beta", nil, "nslookup", "alpha.hearth.internal")
		if err != nil || !strings.Contains(out, alpha) {
			t.Errorf("nslookup alpha.hearth.internal in beta: %v\n%s; want %s", err, out, alpha)
		}
		if out := e.fetchFrom(t, "beta", "alpha.hearth.internal:8080", "alpha"); !strings.Contains(out, "alpha host=alpha") {
			t.Errorf("beta → alpha.hearth.internal:8080: %q", out)
		}
		out, _ = e.inside(t, "beta", nil, "nslookup", "nobody.hearth.internal")
		if !strings.Contains(out, "NXDOMAIN") {
			t.Errorf("a name no container has: %s; want NXDOMAIN", out)
		}
	})

	t.Run("a container that goes takes its rules", func(t *testing.T) {
		before := e.ruleset(t)
		if !strings.Contains(before, alpha) {
			t.Fatalf("netd's table names no rule for alpha (%s):\n%s", alpha, before)
		}
		if _, err := hearthctl(t, e.runDir, "container", "stop", "alpha"); err != nil {
			t.Fatal(err)
		}
		if after := e.ruleset(t); strings.Contains(after, alpha) {
			t.Errorf("alpha stopped, its rules stay:\n%s", after)
		}
		out, _ := e.inside(t, "beta", nil, "nslookup", "alpha.hearth.internal")
		if !strings.Contains(out, "NXDOMAIN") {
			t.Errorf("alpha stopped, its name still resolves: %s\n%s", out, e.ruleset(t))
		}
	})
}

// TestNetdBadInput: each wrong request gets a clear error and changes nothing.
func TestNetdBadInput(t *testing.T) {
	l, ex := installLab(t, "busybox")
	e := newEdgeLab(t, l, nil)
	if _, err := hearthctl(t, l.runDir, "install", filepath.Join(ex, "busybox-1.0.0.hpkg")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hearthctl(t, l.runDir, "uninstall", "busybox") })
	before := e.ruleset(t)
	beforeList, _ := hearthctl(t, l.runDir, "addresses", "busybox")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"undeclared interface", []string{"bind", "busybox", "admin", "--lan"}, `busybox has no interface "admin" (it has: web)`},
		{"not a domain", []string{"bind", "busybox", "web", "--domain", "not a domain"}, `domain "not a domain" has a single label: give a public name such as example.org`},
		{"an address", []string{"bind", "busybox", "web", "--domain", "192.168.1.10"}, "ends in a number"},
		{"a LAN name as domain", []string{"bind", "busybox", "web", "--domain", "nas.local"}, "under .local"},
		{"ACME not configured", []string{"bind", "busybox", "web", "--domain", "cloud.example.org"}, "ACME"},
		{"Tor not configured", []string{"bind", "busybox", "web", "--tor"}, "tor is not configured on this host"},
		{"where, twice", []string{"bind", "busybox", "web", "--lan", "--tor"}, "say where, once"},
		{"no such package", []string{"bind", "nope", "web", "--lan"}, "nope"},
		{"unbind what is not bound", []string{"unbind", "busybox", "web", "--domain", "cloud.example.org"}, "is bound to no domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := hearthctl(t, l.runDir, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("hearthctl %v: %v\n%s; want an error saying %q", tc.args, err, out, tc.want)
			}
		})
	}
	// A second binding of a bound domain: netd refuses it, naming the holder. (Bound
	// with passthrough, the first needs no certificate.)
	cl := e.netdClient(t)
	ctx := testCtx(t, 30*time.Second)
	req := &netv1.CreateBindingRequest{Container: "busybox", Interface: "web", Port: 8080, Protocol: netv1.Protocol_PROTOCOL_HTTP,
		Exposure: netv1.Exposure_EXPOSURE_DOMAIN, Domain: "cloud.example.org", Passthrough: true}
	if _, err := cl.CreateBinding(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.Container = "other"
	if _, err := cl.CreateBinding(ctx, req); err == nil || !strings.Contains(err.Error(), "domain cloud.example.org is bound to busybox/web already") {
		t.Errorf("second binding of a domain: %v", err)
	}
	if _, err := cl.DeleteBinding(ctx, &netv1.DeleteBindingRequest{Id: "busybox/web/cloud.example.org"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []*netv1.CreateBindingRequest{
		{Container: "busybox", Interface: "web", Port: 0, Protocol: netv1.Protocol_PROTOCOL_HTTP, Exposure: netv1.Exposure_EXPOSURE_LAN},
		{Container: "busybox", Interface: "web", Port: 8080, Exposure: netv1.Exposure_EXPOSURE_LAN},
		{Container: "../etc", Interface: "web", Port: 8080, Protocol: netv1.Protocol_PROTOCOL_HTTP, Exposure: netv1.Exposure_EXPOSURE_LAN},
		{Container: "busybox", Interface: "web", Port: 8080, Protocol: netv1.Protocol_PROTOCOL_HTTP},
	} {
		if _, err := cl.CreateBinding(ctx, bad); err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
			t.Errorf("CreateBinding(%v) = %v; want InvalidArgument", bad, err)
		}
	}
	if after := e.ruleset(t); after != before {
		t.Errorf("refused requests changed netd's table:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if afterList, _ := hearthctl(t, l.runDir, "addresses", "busybox"); afterList != beforeList {
		t.Errorf("refused requests changed the bindings:\nbefore:\n%s\nafter:\n%s", beforeList, afterList)
	}
}

// TestNetdBeforeCertd: netd started while certd is not there yet (a boot where certd comes
// up late, a certd restarted) serves a LAN name once certd is there, within seconds and
// with nothing else happening: no restart, no binding changed.
func TestNetdBeforeCertd(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	e := &edgeLab{lab: l, br: testBridge(t)}
	e.gw = gatewayOf(e.br)
	e.startNetd(t)
	importEcho(t, l)
	e.startEcho(t, "early")
	cl := e.netdClient(t)
	lanStatus := func() (string, bool) {
		resp, err := cl.ListBindings(context.Background(), &netv1.ListBindingsRequest{Container: "early"})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range resp.GetBindings() {
			if b.GetInterface() == "web" && b.GetExposure() == netv1.Exposure_EXPOSURE_LAN {
				return b.GetStatus(), true
			}
		}
		return "", false
	}
	waitFor(t, "early's LAN binding waiting for its certificate", 20*time.Second, func() bool {
		st, ok := lanStatus()
		return ok && st == "waiting for its certificate"
	})
	e.startCertd(t)
	t0 := time.Now()
	waitFor(t, "early's LAN binding served once certd is there", 20*time.Second, func() bool {
		st, ok := lanStatus()
		return ok && st == ""
	})
	t.Logf("certd up: the LAN name served %v later", time.Since(t0).Round(time.Millisecond))
	rootPEM, err := hearthctl(t, l.runDir, "cert", "root")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(rootPEM))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "early.local"}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "https://"+e.gw+":443/", nil)
	req.Host = "early.local"
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("https://early.local through netd's proxy: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "early") {
		t.Fatalf("https://early.local: %s %q", resp.Status, body)
	}
}
