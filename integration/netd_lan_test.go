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
	"net/http/httptrace"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	certv1 "hearth.dev/proto/hearth/cert/v1"
	netv1 "hearth.dev/proto/hearth/net/v1"
)

// testLAN is a LAN of the test's own: a bridge on the host (198.18.42.1/24, from the
// benchmarking range, which no real LAN uses) and a "LAN client" network namespace joined
// to it by a veth (198.18.42.10/24).
type testLAN struct {
	bridge, client string
	hostAddr       string
}

func newTestLAN(t *testing.T) *testLAN {
	t.Helper()
	n := rand.Intn(1000)
	lan := &testLAN{bridge: fmt.Sprintf("hlan%d", n), client: fmt.Sprintf("hlanc%d", n), hostAddr: "198.18.42.1"}
	if out, _ := run(t, "ip", "-o", "addr"); strings.Contains(out, " 198.18.42.") {
		t.Fatalf("198.18.42.0/24 is in use on this machine: the test LAN needs it\n%s", out)
	}
	veth := fmt.Sprintf("hlv%d", n)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", veth).Run()
		exec.Command("ip", "link", "del", lan.bridge).Run()
		exec.Command("ip", "netns", "del", lan.client).Run()
	})
	for _, args := range [][]string{
		{"link", "add", lan.bridge, "type", "bridge"},
		{"addr", "add", "198.18.42.1/24", "dev", lan.bridge},
		{"link", "set", lan.bridge, "up"},
		{"netns", "add", lan.client},
		{"link", "add", veth, "master", lan.bridge, "type", "veth", "peer", "name", "eth0", "netns", lan.client},
		{"link", "set", veth, "up"},
		{"-n", lan.client, "addr", "add", "198.18.42.10/24", "dev", "eth0"},
		{"-n", lan.client, "link", "set", "eth0", "up"},
		{"-n", lan.client, "link", "set", "lo", "up"},
		{"-n", lan.client, "route", "add", "default", "via", "198.18.42.1"},
	} {
		if out, err := run(t, "ip", args...); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	return lan
}

// inClient runs f on a thread inside the LAN client's namespace; sockets f makes stay there.
func (lan *testLAN) inClient(f func() error) error {
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		ns, err := os.Open("/var/run/netns/" + lan.client)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// resolveMDNS asks the LAN for name's A record with a one-shot mDNS query from the LAN
// client (RFC 6762 5.1: the answer comes back to the query's port), as a phone would.
func (lan *testLAN) resolveMDNS(name string, within time.Duration) (netip.Addr, error) {
	var got netip.Addr
	err := lan.inClient(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{})
		if err != nil {
			return err
		}
		defer c.Close()
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		q.Id = 0
		wire, err := q.Pack()
		if err != nil {
			return err
		}
		deadline := time.Now().Add(within)
		buf := make([]byte, 9000)
		for time.Now().Before(deadline) {
			if _, err := c.WriteToUDP(wire, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}); err != nil {
				return err
			}
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			for {
				n, _, err := c.ReadFromUDP(buf)
				if err != nil {
					break
				}
				m := new(dns.Msg)
				if m.Unpack(buf[:n]) != nil {
					continue
				}
				for _, rr := range append(m.Answer, m.Extra...) {
					if a, ok := rr.(*dns.A); ok && strings.EqualFold(a.Hdr.Name, dns.Fqdn(name)) {
						got, _ = netip.AddrFromSlice(a.A.To4())
						return nil
					}
				}
			}
		}
		return fmt.Errorf("no mDNS answer for %s in %v", name, within)
	})
	return got, err
}

// rival claims name.local with addr on the LAN from the client's namespace: it announces
// the name every 250 ms and answers every query for it, as another device holding the
// name would. It stops when t ends.
func (lan *testLAN) rival(t *testing.T, name, addr string) {
	t.Helper()
	var conn *net.UDPConn
	err := lan.inClient(func() error {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			})
			return serr
		}}
		pc, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:5353")
		if err != nil {
			return err
		}
		conn = pc.(*net.UDPConn)
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		mreq := &unix.IPMreqn{Multiaddr: [4]byte{224, 0, 0, 251}, Ifindex: int32(ifi.Index)}
		rc, _ := conn.SyscallConn()
		var jerr error
		rc.Control(func(fd uintptr) {
			jerr = unix.SetsockoptIPMreqn(int(fd), unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq)
		})
		return jerr
	})
	if err != nil {
		t.Fatalf("rival responder: %v", err)
	}
	answer := new(dns.Msg)
	answer.Response, answer.Authoritative = true, true
	answer.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET | 0x8000, Ttl: 120}, A: net.ParseIP(addr).To4()}}
	wire, err := answer.Pack()
	if err != nil {
		t.Fatal(err)
	}
	group := &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); conn.Close() })
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(250 * time.Millisecond):
				conn.WriteToUDP(wire, group)
			}
		}
	}()
	go func() {
		buf := make([]byte, 9000)
		for {
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			m := new(dns.Msg)
			if m.Unpack(buf[:n]) != nil || m.Response {
				continue
			}
			for _, q := range m.Question {
				if strings.EqualFold(q.Name, dns.Fqdn(name)) {
					conn.WriteToUDP(wire, group)
				}
			}
		}
	}()
}

// curlFromLAN runs curl in the LAN client's namespace.
func (lan *testLAN) curl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", lan.client, "curl", "-sS", "--max-time", "10"}, args...)...)
}

// waitFor polls cond every 100 ms until it holds or within passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// addresses returns what `hearthctl addresses` says of a package, by binding id.
func (e *edgeLab) addresses(t *testing.T, pkg string) map[string]*netv1.Binding {
	t.Helper()
	var out netv1.ListBindingsResponse
	hearthctlJSON(t, e.runDir, &out, "addresses", pkg)
	m := map[string]*netv1.Binding{}
	for _, b := range out.GetBindings() {
		m[b.GetId()] = b
	}
	return m
}

// TestNetdLAN: hello-pg, installed, is announced as hello-pg.local on the test's LAN; a
// LAN client resolves it over mDNS and fetches https://hello-pg.local/rows trusting only
// Hearth's root CA; port 80 redirects; a renewed certificate is served to new connections
// while an open one goes on; restarts of netd (SIGTERM, kill -9) keep the binding, the
// name and the ruleset; a rival holding the name makes netd rename to hello-pg-2.local
// and say so; a TCP interface gets a host port, and its unbind takes its rule away.
func TestNetdLAN(t *testing.T) {
	l, ex := installLab(t, "hello-pg")
	lan := newTestLAN(t)
	e := newEdgeLab(t, l, nil, "--lan-interfaces", lan.bridge,
		"--https-addr", lan.hostAddr+":443", "--http-addr", lan.hostAddr+":80")
	importHelloPG(t, l)
	if _, err := hearthctl(t, l.runDir, "--timeout", "5m", "install", filepath.Join(ex, "hello-pg-1.0.0.hpkg")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hearthctl(t, l.runDir, "uninstall", "hello-pg") })
	l.waitDaemons(t, "hello-pg", "ready", 2*time.Minute, settledJobs)

	rootPEM, err := hearthctl(t, l.runDir, "cert", "root")
	if err != nil {
		t.Fatal(err)
	}
	rootFile := writeFile(t, filepath.Join(t.TempDir(), "hearth-root.pem"), []byte(rootPEM))
	fetchRows := func(name string) (string, error) {
		addr, err := lan.resolveMDNS(name, 10*time.Second)
		if err != nil {
			return "", err
		}
		return lan.curl(t, "--cacert", rootFile, "--resolve", name+":443:"+addr.String(), "https://"+name+"/rows")
	}

	t.Run("LAN client", func(t *testing.T) {
		addr, err := lan.resolveMDNS("hello-pg.local", 15*time.Second)
		if err != nil || addr.String() != lan.hostAddr {
			t.Fatalf("mDNS hello-pg.local from the LAN = %v, %v; want %s", addr, err, lan.hostAddr)
		}
		out, err := fetchRows("hello-pg.local")
		if err != nil || !strings.Contains(out, `"rows":[`) {
			t.Fatalf("https://hello-pg.local/rows from the LAN: %v\n%s", err, out)
		}
		out, err = lan.curl(t, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "--resolve", "hello-pg.local:80:"+lan.hostAddr, "http://hello-pg.local/rows?x=1")
		if err != nil || out != "308 https://hello-pg.local/rows?x=1" {
			t.Errorf("http://hello-pg.local/rows: %q %v; want a 308 to https", out, err)
		}
		b := e.addresses(t, "hello-pg")["hello-pg/web/lan"]
		if b.GetAddress() != "https://hello-pg.local" || b.GetStatus() != "" {
			t.Errorf("addresses: %v; want https://hello-pg.local and no status", b)
		}
	})

	t.Run("renewed certificate, open connection kept", func(t *testing.T) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(rootPEM))
		dialer := &net.Dialer{}
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool},
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, "tcp", lan.hostAddr+":443")
			}}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		get := func(c *http.Client) (serial string, reused bool) {
			t.Helper()
			req, _ := http.NewRequest("GET", "https://hello-pg.local/rows", nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.TLS.PeerCertificates[0].SerialNumber.Text(16), reused
		}
		first, _ := get(client)
		var certs certv1.ListCertificatesResponse
		hearthctlJSON(t, l.runDir, &certs, "cert", "ls")
		id := ""
		for _, c := range certs.GetCertificates() {
			if len(c.GetDnsNames()) == 1 && c.GetDnsNames()[0] == "hello-pg.local" {
				id = c.GetId()
			}
		}
		if id == "" {
			t.Fatalf("no certificate for hello-pg.local in cert ls: %v", certs.GetCertificates())
		}
		if _, err := hearthctl(t, l.runDir, "cert", "renew", id); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "netd serves the renewed certificate", 10*time.Second, func() bool {
			return strings.Contains(l.netd.log.String(), "serving a renewed certificate")
		})
		serial, reused := get(client)
		if !reused || serial != first {
			t.Errorf("the open connection: reused %v, serial %s; want it kept, with the first serial %s", reused, serial, first)
		}
		fresh := &http.Client{Transport: tr.Clone(), Timeout: 10 * time.Second}
		if serial, _ := get(fresh); serial == first {
			t.Errorf("a new connection got the old certificate (%s)", serial)
		}
	})

	t.Run("TCP interface on a host port", func(t *testing.T) {
		importEcho(t, l)
		before := e.ruleset(t)
		e.startEcho(t, "echo")
		b := e.addresses(t, "hello-pg") // hello-pg's are unchanged
		if len(b) == 0 {
			t.Fatal("hello-pg lost its bindings")
		}
		cl := e.netdClient(t)
		ctx := testCtx(t, 30*time.Second)
		resp, err := cl.ListBindings(ctx, &netv1.ListBindingsRequest{Container: "echo"})
		if err != nil {
			t.Fatal(err)
		}
		var line *netv1.Binding
		for _, b := range resp.GetBindings() {
			if b.GetId() == "echo/line/lan" {
				line = b
			}
		}
		if line == nil || line.GetHostPort() < 30000 || line.GetAddress() != fmt.Sprintf("echo.local:%d", line.GetHostPort()) {
			t.Fatalf("echo's TCP binding: %v; want a host port from 30000 and its address", line)
		}
		out, err := run(t, "ip", "netns", "exec", lan.client, "sh", "-c", fmt.Sprintf("echo hi | busybox nc -w 2 %s %d", lan.hostAddr, line.GetHostPort()))
		if err != nil || !strings.Contains(out, "echo echo: hi") {
			t.Errorf("LAN client → host port %d: %q %v", line.GetHostPort(), out, err)
		}
		if !strings.Contains(e.ruleset(t), fmt.Sprintf("dport %d", line.GetHostPort())) {
			t.Errorf("no rule for host port %d:\n%s", line.GetHostPort(), e.ruleset(t))
		}
		// Unbinding both of echo's LAN bindings (and stopping it) leaves the table as it was.
		if _, err := cl.DeleteBinding(ctx, &netv1.DeleteBindingRequest{Container: "echo"}); err != nil {
			t.Fatal(err)
		}
		if out, _ := run(t, "ip", "netns", "exec", lan.client, "sh", "-c", fmt.Sprintf("echo hi | busybox nc -w 2 %s %d", lan.hostAddr, line.GetHostPort())); strings.Contains(out, "echo") {
			t.Errorf("unbound host port still answers: %q", out)
		}
		if _, err := hearthctl(t, l.runDir, "container", "rm", "--force", "echo"); err != nil {
			t.Fatal(err)
		}
		if after := e.ruleset(t); after != before {
			t.Errorf("after unbind and removal, the table differs:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})

	t.Run("restarts", func(t *testing.T) {
		before := e.ruleset(t)
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			e.netd.stop(sig)
			e.startNetd(t)
			if after := e.ruleset(t); after != before {
				t.Errorf("after netd's %v and start, the ruleset differs:\nbefore:\n%s\nafter:\n%s", sig, before, after)
			}
			out, err := fetchRows("hello-pg.local")
			if err != nil || !strings.Contains(out, `"rows":[`) {
				t.Errorf("after netd's %v: https://hello-pg.local/rows: %v\n%s", sig, err, out)
			}
			if b := e.addresses(t, "hello-pg")["hello-pg/web/lan"]; b.GetName() != "hello-pg.local" {
				t.Errorf("after netd's %v the name is %q; want hello-pg.local (a second name would be a duplicate)", sig, b.GetName())
			}
			if strings.Contains(e.netd.log.String(), "renamed") {
				t.Errorf("after netd's %v netd renamed a name it held itself:\n%s", sig, e.netd.log.String())
			}
		}
	})

	t.Run("rival on the LAN", func(t *testing.T) {
		lan.rival(t, "hello-pg.local", "198.18.42.99")
		waitFor(t, "netd renames hello-pg.local", 20*time.Second, func() bool {
			return e.addresses(t, "hello-pg")["hello-pg/web/lan"].GetName() == "hello-pg-2.local"
		})
		if log := e.netd.log.String(); !strings.Contains(log, "another host on the LAN holds the name: renamed") || !strings.Contains(log, "now=hello-pg-2.local") {
			t.Errorf("netd's log does not say it renamed:\n%s", log)
		}
		b := e.addresses(t, "hello-pg")["hello-pg/web/lan"]
		if b.GetAddress() != "https://hello-pg-2.local" {
			t.Errorf("addresses after the rename: %v", b)
		}
		waitFor(t, "hello-pg-2.local answers", 15*time.Second, func() bool {
			out, err := fetchRows("hello-pg-2.local")
			return err == nil && strings.Contains(out, `"rows":[`)
		})
	})

	t.Run("uninstall removes the bindings", func(t *testing.T) {
		if _, err := hearthctl(t, l.runDir, "uninstall", "hello-pg"); err != nil {
			t.Fatal(err)
		}
		resp, err := e.netdClient(t).ListBindings(testCtx(t, 10*time.Second), &netv1.ListBindingsRequest{Container: "hello-pg"})
		if err != nil || len(resp.GetBindings()) != 0 {
			t.Errorf("hello-pg's bindings after its uninstall: %v %v", resp.GetBindings(), err)
		}
		if _, err := lan.resolveMDNS("hello-pg-2.local", 2*time.Second); err == nil {
			t.Error("hello-pg-2.local still answers on the LAN after the uninstall")
		}
	})
}
