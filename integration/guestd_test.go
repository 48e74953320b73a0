package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	guestv1 "hearth.dev/proto/hearth/guest/v1"
)

const failuresManifest = `
id: failures
version: 0.1.0
images:
  bb: {ref: bb}
daemons:
  web:
    image: bb
    command: [/bin/sh, -c, "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ready: {http: {port: 8080, path: /}, interval: 100ms}
    stop: {timeout: 5s}
  app:
    image: bb
    command: [/bin/sh, -c, "trap 'echo app stopping; exit 0' TERM; while true; do sleep 0.1; done"]
    requires: [web]
    restart: {backoff: 300ms..2s}
  never:
    image: bb
    command: [sleep, "1000"]
    ready: {tcp: 9999, interval: 100ms, grace: 500ms}
    restart: {policy: never}
  blocked:
    image: bb
    command: [sleep, "1000"]
    requires: [never]
  stubborn:
    image: bb
    command: [/bin/sh, -c, "trap '' TERM; while true; do sleep 0.1; done"]
    stop: {timeout: 1s}
`

// startManifest creates a container from a manifest's text and starts it; it is removed
// when the test ends.
func (l *lab) startManifest(t *testing.T, name, text string) {
	t.Helper()
	manifest := filepath.Join(l.dir, name+".yaml")
	must(t, os.WriteFile(manifest, []byte(text), 0o644))
	if _, err := hearthctl(t, l.runDir, "container", "create", name, "--manifest", manifest); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hearthctl(t, l.runDir, "container", "rm", "--force", name) })
	if _, err := hearthctl(t, l.runDir, "container", "start", name); err != nil {
		t.Fatal(err)
	}
}

func state(ds map[string]*guestv1.Daemon, n string) guestv1.DaemonState { return ds[n].GetState() }

// TestDaemonFailures: a killed daemon comes back after its backoff and is counted; a
// ready check that never passes leaves the daemon failing and its dependents unstarted;
// a daemon that ignores SIGTERM is killed after its timeout; containerd-lite's deaths
// restart nothing; guestd's death is repaired inside the container.
func TestDaemonFailures(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	importTestImages(t, l)
	const name = "failures"
	l.startManifest(t, name, failuresManifest)
	ds := l.waitDaemons(t, name, "up, with never failing", 30*time.Second, func(ds map[string]*guestv1.Daemon) bool {
		return allReady("web", "app", "stubborn")(ds) && state(ds, "never") == guestv1.DaemonState_DAEMON_STATE_FAILING
	})

	t.Run("ready check never passes", func(t *testing.T) {
		time.Sleep(500 * time.Millisecond)
		ds := l.daemons(t, name)
		b := ds["blocked"]
		if b.GetState() != guestv1.DaemonState_DAEMON_STATE_WAITING || b.GetPid() != 0 || b.GetLastExit() != nil || b.GetStartedAt() != nil {
			t.Errorf("blocked started although never is failing: %v", b)
		}
		if !strings.Contains(ds["never"].GetHealth(), "127.0.0.1:9999") || ds["never"].GetRestarts() != 0 {
			t.Errorf("never: %v", ds["never"])
		}
	})

	t.Run("kill -9 of a daemon", func(t *testing.T) {
		app := ds["app"]
		killed := time.Now()
		must(t, syscall.Kill(atoi(hostPID(t, l, name, app.GetPid())), syscall.SIGKILL))
		again := l.waitDaemons(t, name, "app restarted", 30*time.Second, func(ds map[string]*guestv1.Daemon) bool {
			return ds["app"].GetState() == guestv1.DaemonState_DAEMON_STATE_READY && ds["app"].GetPid() != app.GetPid()
		})["app"]
		if again.GetRestarts() != 1 || again.GetLastExit().GetSignal() != "killed" {
			t.Errorf("after kill -9: %v", again)
		}
		if d := again.GetStartedAt().AsTime().Sub(killed); d < 300*time.Millisecond {
			t.Errorf("restarted %v after the kill, inside the 300ms backoff", d)
		}
	})

	t.Run("daemon ignoring SIGTERM", func(t *testing.T) {
		t0 := time.Now()
		if _, err := hearthctl(t, l.runDir, "daemon", "stop", name, "stubborn"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d < time.Second || d > 8*time.Second {
			t.Errorf("stop took %v; the manifest says SIGKILL after 1s", d)
		}
		s := l.daemons(t, name)["stubborn"]
		if s.GetState() != guestv1.DaemonState_DAEMON_STATE_STOPPED || s.GetLastExit().GetSignal() != "killed" {
			t.Errorf("stubborn after stop: %v", s)
		}
		if _, err := hearthctl(t, l.runDir, "daemon", "start", name, "stubborn"); err != nil {
			t.Fatal(err)
		}
		l.waitDaemons(t, name, "stubborn back", 10*time.Second, allReady("stubborn"))
	})

	t.Run("containerd-lite killed throughout", func(t *testing.T) {
		before := l.daemons(t, name)
		for i := 0; i < 3; i++ {
			l.cld.stop(syscall.SIGKILL)
			time.Sleep(300 * time.Millisecond)
			l.start(t)
		}
		after := l.daemons(t, name)
		for _, n := range []string{"web", "app", "stubborn"} {
			if after[n].GetPid() != before[n].GetPid() || after[n].GetRestarts() != before[n].GetRestarts() {
				t.Errorf("%s changed while containerd-lite died: before %v, after %v", n, before[n], after[n])
			}
		}
	})

	t.Run("guestd killed", func(t *testing.T) {
		st := l.inspect(t, name)
		old := l.daemons(t, name)
		serve := st.GetGuest().GetPid()
		must(t, syscall.Kill(atoi(hostPID(t, l, name, serve)), syscall.SIGKILL))
		deadline := time.Now().Add(30 * time.Second)
		var info *guestv1.GuestInfo
		for time.Now().Before(deadline) {
			if g := l.inspect(t, name).GetGuest(); g != nil && g.GetPid() != serve {
				info = g
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if info == nil || info.GetRestarts() != 1 || !info.GetBootTime().AsTime().Equal(st.GetGuest().GetBootTime().AsTime()) {
			t.Fatalf("guestd after its death: %v (before %v)", info, st.GetGuest())
		}
		now := l.waitDaemons(t, name, "restarted by the new guestd", 30*time.Second, allReady("web", "app", "stubborn"))
		for _, n := range []string{"web", "app", "stubborn"} {
			if now[n].GetPid() == old[n].GetPid() {
				t.Errorf("%s kept pid %d: the old daemons were not cleared", n, old[n].GetPid())
			}
		}
		// Clearing the old daemons' mounts left the container's own alone.
		if out, err := l.inside(t, name, nil, "sh", "-c", "grep -c ' /dev/ptmx ' /proc/self/mountinfo"); err != nil || strings.TrimSpace(out) != "1" {
			t.Errorf("the container's /dev/ptmx mount after guestd's restart: %q %v", out, err)
		}
		// The old daemons are gone, not orphaned: only one httpd and one of each loop.
		out, err := l.inside(t, name, nil, "ps", "-o", "args")
		if err != nil || strings.Count(out, "httpd -f") != 1 {
			t.Errorf("processes after guestd's restart:\n%s", out)
		}
	})

	t.Run("exec with stdin and a tty", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(binDir, "hearthctl"), "--run-dir", l.runDir, "exec", "-i", name, "app", "--", "sh", "-c", "id -u; cat")
		cmd.Stdin = strings.NewReader("through stdin\n")
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "0\nthrough stdin\n" {
			t.Errorf("exec -i: %v %q", err, out)
		}
		out2, err := hearthctl(t, l.runDir, "exec", "-t", name, "web", "--", "sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo on-a-terminal")
		if err != nil || !strings.HasPrefix(out2, "on-a-terminal") {
			t.Errorf("exec -t: %v %q", err, out2)
		}
		if _, err := hearthctl(t, l.runDir, "exec", name, "web", "--", "sh", "-c", "exit 7"); err == nil {
			t.Error("exec of a failing command succeeded")
		}
		if _, err := hearthctl(t, l.runDir, "exec", name, "nosuch", "--", "true"); err == nil || !strings.Contains(err.Error(), "NotFound") {
			t.Errorf("exec in a missing daemon: %v", err)
		}
	})

	t.Run("no zombies", func(t *testing.T) {
		out, err := l.inside(t, name, nil, "ps", "-o", "stat,pid,args")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n")[1:] {
			if strings.HasPrefix(strings.TrimSpace(line), "Z") {
				t.Errorf("zombie: %s", line)
			}
		}
	})

	t.Run("stop in reverse order", func(t *testing.T) {
		if _, err := hearthctl(t, l.runDir, "container", "stop", name); err != nil {
			t.Fatal(err)
		}
		// guestd logged each stop: app (which requires web) before web.
		console, _ := os.ReadFile(filepath.Join(l.stateDir, "containers", name, "console.log"))
		c := string(console)
		c = c[strings.LastIndex(c, "stopping the package"):]
		ia, iw := strings.Index(c, "name=app state=stopping"), strings.Index(c, "name=web state=stopping")
		if ia < 0 || iw < 0 || ia > iw {
			t.Errorf("stop order (app before web) not in guestd's log:\n%s", c)
		}
		// The daemons' log files stay in the container's writable layer, on its disk:
		// the next start finds the last run's lines.
		if _, err := hearthctl(t, l.runDir, "container", "start", name); err != nil {
			t.Fatal(err)
		}
		out, err := l.inside(t, name, nil, "cat", "/var/log/hearth/app.log")
		if err != nil || !strings.Contains(out, "app stopping") {
			t.Errorf("app's log after a stop and a start: %v\n%s", err, out)
		}
	})
}
