package dns

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	dnsmsg "github.com/miekg/dns"

	"hearth.dev/services/netd/internal/netnstest"
)

var inNetns = netnstest.InNetns

const helperEnv = "HEARTH_DNS_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "serve" {
		os.Exit(helperServe())
	}
	os.Exit(m.Run())
}

// helperServe runs a server as netd would, in whatever network namespace it was started
// in: on the address and with the resolv.conf its environment names, with hello-pg in the
// table. It says "ready" on stdout and serves until its stdin closes.
func helperServe() int {
	s, err := Listen(Config{Addr: netip.MustParseAddrPort(os.Getenv(helperEnv + "_ADDR")),
		ResolvConf: os.Getenv(helperEnv + "_RESOLV"), Timeout: 500 * time.Millisecond})
	if err == nil {
		err = s.Set("hello-pg", netip.MustParseAddr("10.88.0.2"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	s.Close()
	return 0
}

// TestPort53InNamespace: in a network namespace of its own, the server (a process of its
// own there, as netd is on the host) listens on port 53; the resolv.conf it reads names
// the server itself, which it refuses (SERVFAIL at once, no loop); when resolv.conf
// changes to name a resolver, names are forwarded there.
func TestPort53InNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a network namespace")
	}
	name := fmt.Sprintf("hdns%04x", rand.N(0x10000))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns := "/run/netns/" + name
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	resolvConf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolvConf, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The upstream: sockets opened in the namespace, served from here.
	if err := inNetns(ns, func() error {
		_, stop, err := newUpstream(netip.MustParseAddrPort("127.0.0.2:53"))
		if err == nil {
			t.Cleanup(stop)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// The server.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	server := netip.MustParseAddrPort("127.0.0.1:53")
	cmd := exec.Command("nsenter", "--net="+ns, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=serve", helperEnv+"_ADDR="+server.String(), helperEnv+"_RESOLV="+resolvConf)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan string, 1)
	go func() {
		b := make([]byte, 6)
		n, _ := io.ReadFull(stdout, b)
		ready <- string(b[:n])
	}()
	select {
	case r := <-ready:
		if r != "ready\n" {
			t.Fatalf("the server did not start: %q", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not start within 10 s")
	}

	query := func(network, name string) (*dnsmsg.Msg, time.Duration) {
		t.Helper()
		var resp *dnsmsg.Msg
		start := time.Now()
		err := inNetns(ns, func() error {
			c := &dnsmsg.Client{Net: network, Timeout: 3 * time.Second}
			var err error
			resp, _, err = c.Exchange(question(name, dnsmsg.TypeA), server.String())
			return err
		})
		if err != nil {
			t.Fatalf("%s %s: %v", network, name, err)
		}
		return resp, time.Since(start)
	}
	for _, network := range []string{"udp", "tcp"} {
		if resp, _ := query(network, "hello-pg.hearth.internal."); len(resp.Answer) != 1 {
			t.Errorf("%s: hello-pg.hearth.internal: %v", network, resp)
		}
	}
	if resp, d := query("udp", "example.test."); resp.Rcode != dnsmsg.RcodeServerFailure || d > 200*time.Millisecond {
		t.Errorf("forwarding with only itself in resolv.conf: rcode %s after %v, want SERVFAIL at once",
			dnsmsg.RcodeToString[resp.Rcode], d)
	}

	if err := os.WriteFile(resolvConf, []byte("nameserver 127.0.0.1\nnameserver 127.0.0.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	for {
		resp, _ := query("udp", "example.test.")
		if resp.Rcode == dnsmsg.RcodeSuccess && len(resp.Answer) == 1 {
			t.Logf("forwarding to the new resolver %v after resolv.conf changed", time.Since(changed).Round(time.Millisecond))
			break
		}
		if time.Since(changed) > 3*time.Second {
			t.Fatalf("resolv.conf changed 3 s ago and forwarding still gives %v", resp)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
