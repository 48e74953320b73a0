package integration

import (
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// testBridge returns netd flags for a bridge and subnet of the test's own, and removes
// the bridge when the test ends. netd announces no LAN names (no traffic leaves the
// machine) and its proxy listens on the bridge's gateway, ports 443 and 80.
func testBridge(t testing.TB) []string {
	t.Helper()
	n := rand.Intn(200) + 20
	name := fmt.Sprintf("hbt%d", n)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", name).Run()
		exec.Command("nft", "delete", "table", "inet", name).Run() // netd's table, kept across its restarts
	})
	gw := fmt.Sprintf("10.231.%d.1", n)
	return []string{"--bridge", name, "--subnet", fmt.Sprintf("10.231.%d.0/24", n),
		"--lan-interfaces", "none", "--https-addr", gw + ":443", "--http-addr", gw + ":80"}
}

// gatewayOf is the gateway of testBridge's flags.
func gatewayOf(br []string) string { return strings.TrimSuffix(br[3], "0/24") + "1" }

// startNetd starts netd on the lab's run directory (so containerd-lite finds it); the lab
// stops it.
func (l *lab) startNetd(t testing.TB, bridge []string) {
	t.Helper()
	l.netd = startDaemonOwned(t, nil, "netd", filepath.Join(l.runDir, "netd.sock"),
		append([]string{"--run-dir", l.runDir, "--state-dir", filepath.Join(l.dir, "netd")}, bridge...)...)
}

// TestContainerNetworking: with netd running, a container gets eth0 on netd's bridge with
// an address and a default route; restarts of containerd-lite and netd keep it; stopping
// the container removes its veth.
func TestContainerNetworking(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	br := testBridge(t)
	l.startNetd(t, br)
	bridge, subnet := br[1], strings.TrimSuffix(br[3], "0/24")
	gateway := subnet + "1"
	for _, n := range []string{"net1", "net2"} {
		if _, err := hearthctl(t, l.runDir, "container", "create", n); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hearthctl(t, l.runDir, "container", "rm", "--force", n) })
		if _, err := hearthctl(t, l.runDir, "container", "start", n); err != nil {
			t.Fatal(err)
		}
	}
	c1 := l.inspect(t, "net1").GetContainer()
	c2 := l.inspect(t, "net2").GetContainer()
	if c1.GetAddress() != subnet+"2" || c2.GetAddress() != subnet+"3" {
		t.Fatalf("addresses %q and %q, want %s2 and %s3", c1.GetAddress(), c2.GetAddress(), subnet, subnet)
	}
	out, err := l.inside(t, "net1", nil, "ip", "-4", "addr", "show", "eth0")
	if err != nil || !strings.Contains(out, c1.GetAddress()+"/24") {
		t.Errorf("eth0 inside: %v\n%s", err, out)
	}
	if out, err := l.inside(t, "net1", nil, "ip", "route"); err != nil || !strings.Contains(out, "default via "+gateway) {
		t.Errorf("routes inside: %v\n%s", err, out)
	}
	// Containers have no raw sockets (no ping): reach netd's proxy on the gateway (port
	// 80 redirects to HTTPS). Any other port of the host is closed to containers.
	reach := func(addr string) (string, error) {
		return l.inside(t, "net1", nil, "sh", "-c", "printf 'GET / HTTP/1.0\\r\\nHost: x.local\\r\\n\\r\\n' | nc -w 2 "+strings.Replace(addr, ":", " ", 1))
	}
	if out, err := reach(gateway + ":80"); err != nil || !strings.Contains(out, "308") {
		t.Errorf("reach the gateway from inside: %q %v", out, err)
	}
	srv := listenHTTP(t, gateway+":0")
	if out, _ := reach(srv); strings.Contains(out, "ok") {
		t.Errorf("a container reached a port of the host that netd does not serve (%s): %q", srv, out)
	}
	if out, err := run(t, "busybox", "ping", "-c", "1", "-W", "2", c2.GetAddress()); err != nil {
		t.Errorf("ping net2 from the host: %v\n%s", err, out)
	}
	veth := func(c string) string {
		out, _ := run(t, "ip", "-o", "link", "show", "master", bridge)
		return out
	}
	if v := veth(""); strings.Count(v, "hv") != 2 {
		t.Errorf("veths on %s: %s", bridge, v)
	}

	// Daemons come and go; the network stays.
	l.cld.stop(syscall.SIGKILL)
	l.start(t)
	l.netd.stop(syscall.SIGTERM)
	l.startNetd(t, br)
	if got := l.inspect(t, "net1").GetContainer().GetAddress(); got != c1.GetAddress() {
		t.Errorf("net1's address after restarts: %q, was %q", got, c1.GetAddress())
	}
	if out, err := reach(gateway + ":80"); err != nil || !strings.Contains(out, "308") {
		t.Errorf("reach the gateway after restarts: %q %v", out, err)
	}

	if _, err := hearthctl(t, l.runDir, "container", "stop", "net1"); err != nil {
		t.Fatal(err)
	}
	if v := veth(""); strings.Count(v, "hv") != 1 {
		t.Errorf("veths after net1 stopped: %s", v)
	}
	if got := l.inspect(t, "net1").GetContainer(); got.GetAddress() != "" || got.GetState() != containerv1.ContainerState_CONTAINER_STATE_STOPPED {
		t.Errorf("net1 after stop: %v", got)
	}
	// Started again, it gets the lowest free address back.
	if _, err := hearthctl(t, l.runDir, "container", "start", "net1"); err != nil {
		t.Fatal(err)
	}
	if got := l.inspect(t, "net1").GetContainer().GetAddress(); got != subnet+"2" {
		t.Errorf("net1's address after restart: %q", got)
	}
}

// listenHTTP serves a tiny page on addr until the test ends and returns its address.
func listenHTTP(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
