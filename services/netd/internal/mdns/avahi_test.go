package mdns

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hearth.dev/internal/testtool"
)

// avahi is an avahi-daemon of the lab's client host, with a D-Bus system bus of its own
// for avahi-resolve and avahi-publish.
type avahi struct {
	l   *lab
	h   *host
	env []string
}

// startAvahi runs dbus-daemon and avahi-daemon for h (skipping the test when they are not
// installed), stopped when the test ends. avahi-daemon runs in a mount namespace of its
// own with a tmpfs on /run, where it keeps its pid file and socket.
func (l *lab) startAvahi(h *host) *avahi {
	t := l.t
	t.Helper()
	for _, tool := range []string{"dbus-daemon", "avahi-daemon", "avahi-resolve", "avahi-publish", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			testtool.Missing(t, "needs %s (deploy/install-deps.sh installs avahi-daemon, avahi-utils and dbus-daemon): %v", tool, err)
		}
	}
	dir := t.TempDir()
	bus := filepath.Join(dir, "bus")
	busConf := fmt.Sprintf(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
`, bus)
	avahiConf := `[server]
host-name=lanclient
use-ipv4=yes
use-ipv6=no
allow-interfaces=eth0
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
`
	for name, text := range map[string]string{"bus.conf": busConf, "avahi.conf": avahiConf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := &avahi{l: l, h: h, env: append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS=unix:path="+bus)}
	start := func(logName string, args ...string) {
		log, err := os.Create(filepath.Join(dir, logName))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env, cmd.Stdout, cmd.Stderr = a.env, log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			log.Close()
			if t.Failed() {
				out, _ := os.ReadFile(log.Name())
				t.Logf("%s:\n%s", logName, out)
			}
		})
	}
	start("dbus.log", "dbus-daemon", "--config-file="+filepath.Join(dir, "bus.conf"), "--nofork")
	start("avahi.log", "nsenter", "--net="+h.ns, "unshare", "--mount", "sh", "-c",
		`mount -t tmpfs tmpfs /run && exec avahi-daemon -f "$1" --no-drop-root --no-chroot --no-rlimits`, "sh",
		filepath.Join(dir, "avahi.conf"))
	// Ready when it resolves its own name.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err := a.run(2*time.Second, "avahi-resolve", "-4", "-n", "lanclient.local"); err == nil && strings.Contains(out, h.addr.String()) {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("avahi-daemon in %s not ready within 10 s", h.name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run runs an avahi client tool in the host, bounded by timeout.
func (a *avahi) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + a.h.ns}, args...)...)
	cmd.Env = a.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// publish runs avahi-publish for name → addr until the test ends, and returns a channel
// of its output lines.
func (a *avahi) publish(name, addr string) <-chan string {
	t := a.l.t
	t.Helper()
	cmd := exec.Command("nsenter", "--net="+a.h.ns, "avahi-publish", "-a", "-R", name, addr)
	cmd.Env = a.env
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		buf := make([]byte, 4096)
		var pending string
		for {
			n, err := r.Read(buf)
			pending += string(buf[:n])
			for {
				line, rest, ok := strings.Cut(pending, "\n")
				if !ok {
					break
				}
				lines <- line
				pending = rest
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); r.Close() })
	return lines
}

// waitLine returns the first line containing want, or fails after timeout.
func waitLine(t *testing.T, lines <-chan string, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("avahi-publish exited without saying %q: %q", want, seen)
			}
			seen = append(seen, line)
			if strings.Contains(line, want) {
				return line
			}
		case <-deadline:
			t.Fatalf("avahi-publish did not say %q within %v: %q", want, timeout, seen)
		}
	}
}

// TestLANAvahi: avahi, the usual LAN resolver on Linux, resolves our names; a name avahi
// holds makes our responder rename; a name our responder holds is defended against
// avahi-publish.
func TestLANAvahi(t *testing.T) {
	l := newLab(t, "hearth", "client")
	hearth, lanClient := l.host("hearth"), l.host("client")
	av := l.startAvahi(lanClient)
	r := l.startResponder(hearth)

	// avahi resolves a name we publish.
	r.command("publish hello-pg")
	r.wait(EventPublished, "hello-pg.local", publishTimeout)
	start := time.Now()
	out, err := av.run(5*time.Second, "avahi-resolve", "-4", "-n", "hello-pg.local")
	if err != nil || !strings.Contains(out, "hello-pg.local\t"+hearth.addr.String()) {
		t.Fatalf("avahi-resolve hello-pg.local: %v: %q", err, out)
	}
	t.Logf("avahi-resolve hello-pg.local: %q in %v", strings.TrimSpace(out), time.Since(start).Round(time.Microsecond))

	// A name avahi published first: ours takes "-2".
	waitLine(t, av.publish("taken.local", lanClient.addr.String()), "Established", publishTimeout)
	r.command("publish taken")
	r.wait(EventRenamed, "taken-2.local", publishTimeout)
	r.wait(EventPublished, "taken-2.local", publishTimeout)
	if out, err := av.run(5*time.Second, "avahi-resolve", "-4", "-n", "taken-2.local"); err != nil || !strings.Contains(out, hearth.addr.String()) {
		t.Errorf("avahi-resolve taken-2.local: %v: %q", err, out)
	}

	// avahi-publish of the name we hold: avahi hears our defence; we keep the name.
	lines := av.publish("hello-pg.local", lanClient.addr.String())
	line := waitLine(t, lines, "ollision", publishTimeout)
	t.Logf("avahi-publish hello-pg.local: %q", line)
	for _, ev := range r.history() {
		if ev.Name.Requested == "hello-pg" && (ev.Kind == EventRenamed || ev.Kind == EventConflict) {
			t.Errorf("our responder gave way to avahi-publish, which probes: %+v", ev)
		}
	}
	if out, err := av.run(5*time.Second, "avahi-resolve", "-4", "-n", "hello-pg.local"); err != nil || !strings.Contains(out, hearth.addr.String()) {
		t.Errorf("avahi-resolve hello-pg.local after avahi-publish: %v: %q", err, out)
	}
}
