package integration

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hearth.dev/internal/testtool"
	netv1 "hearth.dev/proto/hearth/net/v1"
)

// torExpandedKey reads an onion key netd stored (PKCS #8 PEM of the ed25519 seed) and
// returns tor's form of it: SHA-512 of the seed, clamped (what ADD_ONION and a
// HiddenServiceDir's hs_ed25519_secret_key hold).
func torExpandedKey(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	h := sha512.Sum512(k.(ed25519.PrivateKey).Seed())
	h[0] &= 248
	h[31] &= 127
	h[31] |= 64
	return h[:]
}

// torHostname has Debian's tor itself derive the onion address of an expanded key: a
// tor off the network with the key in a HiddenServiceDir writes its hostname file.
func torHostname(t *testing.T, expanded []byte) string {
	t.Helper()
	dir := t.TempDir()
	hs := filepath.Join(dir, "hs")
	must(t, os.Mkdir(hs, 0o700))
	must(t, os.WriteFile(filepath.Join(hs, "hs_ed25519_secret_key"), append([]byte("== ed25519v1-secret: type0 ==\x00\x00\x00"), expanded...), 0o600))
	empty := filepath.Join(dir, "torrc")
	must(t, os.WriteFile(empty, nil, 0o600))
	cmd := exec.Command("tor", "-f", empty, "--defaults-torrc", empty, "--DisableNetwork", "1", "--SocksPort", "0",
		"--DataDirectory", filepath.Join(dir, "data"), "--HiddenServiceDir", hs, "--HiddenServicePort", "80 127.0.0.1:9", "--Log", "notice stderr")
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(hs, "hostname")); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("tor wrote no hostname in 30s:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// torControl is a control connection to the tor netd manages, authenticated with its cookie.
type torControl struct {
	c net.Conn
	r *bufio.Reader
}

func dialTorControl(t *testing.T, torDir string) *torControl {
	t.Helper()
	c, err := net.DialTimeout("unix", filepath.Join(torDir, "control.sock"), 5*time.Second)
	if err != nil {
		t.Fatalf("tor's control socket: %v", err)
	}
	tc := &torControl{c: c, r: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	cookie, err := os.ReadFile(filepath.Join(torDir, "data", "control_auth_cookie"))
	if err != nil {
		t.Fatal(err)
	}
	if reply := tc.cmd(t, "AUTHENTICATE "+hex.EncodeToString(cookie)); !strings.HasPrefix(reply, "250") {
		t.Fatalf("AUTHENTICATE: %s", reply)
	}
	return tc
}

// cmd sends one command and returns tor's reply lines, joined.
func (tc *torControl) cmd(t *testing.T, line string) string {
	t.Helper()
	tc.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(tc.c, "%s\r\n", line); err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		l, err := tc.r.ReadString('\n')
		if err != nil {
			t.Fatalf("tor's reply to %.20s: %v", line, err)
		}
		l = strings.TrimRight(l, "\r\n")
		out = append(out, l)
		if len(l) >= 4 && l[3] == ' ' {
			return strings.Join(out, "\n")
		}
	}
}

// TestNetdTor: with a private tor that netd runs (DisableNetwork 1), a container's
// interface exposed over Tor gets an onion service: its key is stored 0600, the address
// netd shows is the one tor derives from that key, tor holds the service, and after tor
// dies netd's supervisor starts it again and the service is added again.
func TestNetdTor(t *testing.T) {
	requireRoot(t)
	testtool.Need(t, "tor")
	e := newEdgeLab(t, nil, nil, "--tor", "managed", "--tor-disable-network")
	importEcho(t, e.lab)
	e.startEcho(t, "onion") // its manifest exposes web and line over Tor: the start binds them
	torDir := filepath.Join(e.dir, "netd", "tor")
	keyFile := filepath.Join(e.dir, "netd", "onion-keys", "onion.web.key")

	cl := e.netdClient(t)
	ctx := testCtx(t, time.Minute)
	var web *netv1.Binding
	waitFor(t, "onion/web/tor has its address and no status", 30*time.Second, func() bool {
		resp, err := cl.ListBindings(ctx, &netv1.ListBindingsRequest{Container: "onion"})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range resp.GetBindings() {
			if b.GetId() == "onion/web/tor" {
				web = b
			}
		}
		return web != nil && web.GetStatus() == "" && strings.HasSuffix(web.GetAddress(), ".onion")
	})
	info, err := os.Stat(keyFile)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("onion key %s: %v %v; want mode 0600", keyFile, info, err)
	}
	expanded := torExpandedKey(t, keyFile)
	want := torHostname(t, expanded)
	if web.GetAddress() != "http://"+want {
		t.Errorf("netd shows %s; tor derives %s from the stored key", web.GetAddress(), want)
	}

	// tor holds the service: adding the same key on another control connection collides.
	holds := func() bool {
		tc := dialTorControl(t, torDir)
		reply := tc.cmd(t, "ADD_ONION ED25519-V3:"+base64.StdEncoding.EncodeToString(expanded)+" Flags=DiscardPK Port=80,127.0.0.1:9")
		return strings.Contains(reply, "collision")
	}
	if !holds() {
		t.Fatal("tor does not hold netd's onion service")
	}

	// tor dies; netd starts it again and adds the service again.
	pidText, err := os.ReadFile(filepath.Join(torDir, "tor.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill tor %d: %v", pid, err)
	}
	waitFor(t, "a new tor holds the service again", 60*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(torDir, "tor.pid"))
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || n == pid || n == 0 {
			return false
		}
		if _, err := os.Stat(filepath.Join(torDir, "control.sock")); err != nil {
			return false
		}
		return holds()
	})
	// The address stays: the key was made once.
	resp, err := cl.ListBindings(ctx, &netv1.ListBindingsRequest{Container: "onion"})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range resp.GetBindings() {
		if b.GetId() == "onion/web/tor" && b.GetAddress() != web.GetAddress() {
			t.Errorf("after tor's restart the address is %s, was %s", b.GetAddress(), web.GetAddress())
		}
	}
}
