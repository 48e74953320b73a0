package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/hpkg"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// depA serves a page on its interface web (8080), ready only some seconds after it
// starts, and another on 9090, which is no interface.
const depA = `id: dep-a
version: 1.2.0
images: {bb: {oci: images}}
volumes: [www]
limits: {memory: 64Mi, pids: 64, disk: 64Mi}
daemons:
  web:
    image: bb
    command: [/bin/sh, -c, "sleep 4; exec /bin/httpd -f -p 8080 -h /www"]
    mounts: [{volume: www, path: /www}]
    ready: {http: {port: 8080, path: /}, interval: 100ms}
  secret:
    image: bb
    command: [/bin/httpd, -f, -p, "9090", -h, /www]
    mounts: [{volume: www, path: /www}]
    ready: {tcp: 9090, interval: 100ms}
hooks:
  install:
    image: bb
    command: [/bin/sh, -c, "echo dep-a answers > /www/index.html"]
    mounts: [{volume: www, path: /www}]
interfaces:
  web: {daemon: web, port: 8080, protocol: http}
`

// depB depends on dep-a's interface web; its install hook copies dep-a's page, so it
// shows that the hook ran once dep-a was there, and reached it by name.
const depB = `id: dep-b
version: 1.0.0
images: {bb: {oci: images}}
volumes: [www]
limits: {memory: 64Mi, pids: 64, disk: 64Mi}
daemons:
  web:
    image: bb
    command: [/bin/httpd, -f, -p, "8080", -h, /www]
    mounts: [{volume: www, path: /www}]
    ready: {http: {port: 8080, path: /}, interval: 100ms}
hooks:
  install:
    image: bb
    command: [/bin/sh, -c, "timeout 10 wget -q -O /www/index.html http://dep-a.hearth.internal:8080/ || echo no dep-a > /www/index.html"]
    mounts: [{volume: www, path: /www}]
dependencies:
  dep-a: {version: ">=1.0", requires: [web], description: "the page it copies"}
interfaces:
  web: {daemon: web, port: 8080, protocol: http}
`

// packWithManifest packs the busybox example's image under another manifest.
func packWithManifest(t *testing.T, ex, manifest string) string {
	t.Helper()
	src := tempDir(t)
	must(t, exec.Command("tar", "-xf", filepath.Join(ex, "busybox-1.0.0.hpkg"), "-C", src).Run())
	for _, f := range []string{hpkg.TOCName, hpkg.SigName, "README.md", "LICENSE"} {
		os.Remove(filepath.Join(src, f))
	}
	os.RemoveAll(filepath.Join(src, "assets"))
	must(t, os.WriteFile(filepath.Join(src, "manifest.yaml"), []byte(manifest), 0o644))
	out := filepath.Join(tempDir(t), "pkg.hpkg")
	if _, err := hearthctl(t, binDirLab(t), "pack", src, "--key", filepath.Join(ex, "dev.key"), "--out", out); err != nil {
		t.Fatal(err)
	}
	return out
}

// binDirLab is a run directory for commands that talk to no daemon.
func binDirLab(t *testing.T) string { return tempDir(t) }

// pkgState is a package's container state as hearthctl ls says it.
func (l *lab) pkgState(t *testing.T, id string) string {
	t.Helper()
	ls := &containerv1.ListPackagesResponse{}
	hearthctlJSON(t, l.runDir, ls, "ls")
	for _, p := range ls.GetPackages() {
		if p.GetId() == id {
			return p.GetState()
		}
	}
	return "absent"
}

// hostClient calls a container's host.sock from the host (root may).
func (l *lab) hostClient(t *testing.T, container string) hostv1.HostServiceClient {
	t.Helper()
	conn, err := dial.Unix(filepath.Join(l.stateDir, "containers", container, "media", "host", "host.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return hostv1.NewHostServiceClient(conn)
}

func waitsText(ws []*hostv1.Wait) string {
	var parts []string
	for _, w := range ws {
		parts = append(parts, w.GetPackage()+": "+w.GetReason())
	}
	return strings.Join(parts, "; ")
}

// TestPackageDependencies: B depends on A's interface web. Installed first, B warns that
// A is missing and does not start; started, it waits for A (and still waits after a
// restart of containerd-lite); once A is installed, B starts by itself, but only after
// A's web daemon is ready, with its install hook run then. B reaches A at
// dep-a.hearth.internal on A's declared port, not on another; GetDependency answers B for
// A and refuses anything else. Stopping A is refused while B runs, naming B; with
// --cascade B stops, then A. Started again and cut off as by a power cut, both come back
// at start-up, A before B.
func TestPackageDependencies(t *testing.T) {
	l, ex := installLab(t, "busybox")
	l.startNetd(t, testBridge(t))
	pkgA, pkgB := packWithManifest(t, ex, depA), packWithManifest(t, ex, depB)

	// Install B alone: a warning (in the result, and printed) lists A; B is installed
	// but does not run.
	res := &containerv1.PackageResult{}
	jout, stderr, err := runSplit(filepath.Join(binDir, "hearthctl"), "--run-dir", l.runDir, "-o", "json", "install", pkgB)
	if err != nil {
		t.Fatalf("install dep-b: %v\n%s", err, stderr)
	}
	must(t, protojsonUnmarshal([]byte(jout), res))
	if w := strings.Join(res.GetWarnings(), "\n"); !strings.Contains(w, "dependency dep-a (>=1.0, the page it copies): not installed; dep-b waits for it") {
		t.Fatalf("install's warnings: %q", res.GetWarnings())
	}
	if !strings.Contains(stderr, "warning: dependency dep-a") {
		t.Errorf("hearthctl install printed no warning: %q", stderr)
	}
	if st := l.pkgState(t, "dep-b"); st == "running" {
		t.Fatal("dep-b runs without dep-a")
	}

	// Start B: it waits for A.
	out, err := hearthctl(t, l.runDir, "start", "dep-b")
	if err != nil || !strings.Contains(out, "waiting for dep-a: not installed") {
		t.Fatalf("start dep-b: %v\n%s", err, out)
	}
	// It still waits after containerd-lite restarts: nobody starts it again below.
	l.cld.stop(syscall.SIGTERM)
	l.start(t)
	if st := l.pkgState(t, "dep-b"); st == "running" {
		t.Fatal("dep-b runs after a restart of containerd-lite, without dep-a")
	}

	// Install A: once it is ready, B starts by itself (its wait outlived the restart).
	if _, err := hearthctl(t, l.runDir, "install", pkgA); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dep-b running after dep-a's install", 30*time.Second, func() bool { return l.pkgState(t, "dep-b") == "running" })
	l.waitDaemons(t, "dep-b", "web ready", 60*time.Second, allReady("web"))
	// Its install hook ran once A was there, and reached it by name.
	if out, err := hearthctl(t, l.runDir, "exec", "dep-b", "web", "--", "cat", "/www/index.html"); err != nil || strings.TrimSpace(out) != "dep-a answers" {
		t.Errorf("dep-b's install hook copied %q (%v); want dep-a's page", out, err)
	}

	// B reaches A by name on A's interface port, and not on its other port (which
	// answers inside A: the firewall is what keeps B out).
	fetch := func(pkg, daemon, url string) (string, string) {
		out, err := hearthctl(t, l.runDir, "exec", pkg, daemon, "--", "sh", "-c", "timeout 5 wget -qO- "+url+"; echo rc=$?")
		if err != nil {
			t.Fatalf("exec in %s: %v", pkg, err)
		}
		body, rc, _ := strings.Cut(out, "rc=")
		return strings.TrimSpace(body), strings.TrimSpace(rc)
	}
	if body, rc := fetch("dep-b", "web", "http://dep-a.hearth.internal:8080/"); body != "dep-a answers" || rc != "0" {
		t.Errorf("dep-b → dep-a.hearth.internal:8080: %q, exit %s", body, rc)
	}
	if body, rc := fetch("dep-a", "secret", "http://127.0.0.1:9090/"); body != "dep-a answers" || rc != "0" {
		t.Fatalf("dep-a's own 9090 does not answer (%q, exit %s): the next check would prove nothing", body, rc)
	}
	if body, rc := fetch("dep-b", "web", "http://dep-a.hearth.internal:9090/"); body != "" || rc == "0" {
		t.Errorf("dep-b reached dep-a's port 9090, which is no interface: %q, exit %s", body, rc)
	}

	// GetDependency: B asks about A; anything else is refused.
	aAddr := l.inspect(t, "dep-a").GetContainer().GetAddress()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dep, err := l.hostClient(t, "dep-b").GetDependency(ctx, &hostv1.GetDependencyRequest{Id: "dep-a"})
	if err != nil {
		t.Fatal(err)
	}
	if dep.GetId() != "dep-a" || dep.GetVersion() != "1.2.0" || !dep.GetInstalled() || !dep.GetRunning() || dep.GetIpv4() != aAddr || aAddr == "" ||
		dep.GetName() != "dep-a.hearth.internal" || len(dep.GetInterfaces()) != 1 ||
		dep.GetInterfaces()[0].GetInterface() != "web" || dep.GetInterfaces()[0].GetPort() != 8080 || !dep.GetInterfaces()[0].GetHealthy() {
		t.Errorf("GetDependency(dep-a) from dep-b: %v (dep-a is at %s)", dep, aAddr)
	}
	for _, tc := range []struct{ from, id string }{{"dep-b", "busybox"}, {"dep-b", "dep-b"}, {"dep-b", "nobody"}, {"dep-a", "dep-b"}} {
		_, err := l.hostClient(t, tc.from).GetDependency(ctx, &hostv1.GetDependencyRequest{Id: tc.id})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "not one of "+tc.from+"'s dependencies") {
			t.Errorf("%s asks about %s: %v; want PermissionDenied", tc.from, tc.id, err)
		}
	}

	// Stopping A while B runs: refused, naming B and --cascade; both still run.
	_, err = hearthctl(t, l.runDir, "stop", "dep-a")
	if err == nil || !strings.Contains(err.Error(), "dep-b depends on dep-a and runs") || !strings.Contains(err.Error(), "--cascade") {
		t.Fatalf("stop dep-a while dep-b runs: %v", err)
	}
	if l.pkgState(t, "dep-a") != "running" || l.pkgState(t, "dep-b") != "running" {
		t.Fatalf("a refused stop stopped something: dep-a %s, dep-b %s", l.pkgState(t, "dep-a"), l.pkgState(t, "dep-b"))
	}
	// With --cascade: B, then A.
	out, err = hearthctl(t, l.runDir, "stop", "--cascade", "dep-a")
	if err != nil || out != "dep-b\tstopped\ndep-a\tstopped\n" {
		t.Fatalf("stop --cascade dep-a: %v\n%q", err, out)
	}
	if l.pkgState(t, "dep-a") == "running" || l.pkgState(t, "dep-b") == "running" {
		t.Fatalf("after stop --cascade: dep-a %s, dep-b %s", l.pkgState(t, "dep-a"), l.pkgState(t, "dep-b"))
	}

	// Start B: it waits for A, which is stopped. Start A: its web daemon is ready some
	// seconds after it starts; B must not start before that, and starts by itself after.
	if out, err := hearthctl(t, l.runDir, "start", "dep-b"); err != nil || !strings.Contains(out, "waiting for dep-a: stopped") {
		t.Fatalf("start dep-b with dep-a stopped: %v\n%s", err, out)
	}
	if out, err := hearthctl(t, l.runDir, "start", "dep-a"); err != nil || out != "dep-a\trunning\n" {
		t.Fatalf("start dep-a: %v\n%q", err, out)
	}
	reasons := map[string]bool{}
	startedA := time.Now()
	var readyA time.Time
	deadline := time.Now().Add(60 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("dep-b did not start within 60 s of dep-a; it waited for: %v", reasons)
		}
		b := l.pkgState(t, "dep-b")
		aWeb := stateOf(l.daemons(t, "dep-a")["web"])
		if aWeb == "ready" && readyA.IsZero() {
			readyA = time.Now()
		}
		if b == "running" {
			if aWeb != "ready" {
				t.Fatalf("dep-b runs while dep-a's web daemon is %s", aWeb)
			}
			t.Logf("dep-a started; its web daemon seen ready after %v, dep-b seen running %v later",
				readyA.Sub(startedA).Round(time.Millisecond), time.Since(readyA).Round(time.Millisecond))
			break
		}
		r := &containerv1.StartPackageResponse{}
		if out, err := hearthctl(t, l.runDir, "-o", "json", "start", "dep-b"); err == nil && protojsonUnmarshal([]byte(out), r) == nil && len(r.GetWaitingFor()) > 0 {
			reasons[waitsText(r.GetWaitingFor())] = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("dep-b waited for: %v", reasons)
	if !reasons["dep-a: interface web not ready (daemon web is starting)"] {
		t.Errorf("dep-b was never seen waiting for dep-a's web daemon to be ready: %v", reasons)
	}

	// A power cut: at start-up both come back, A before B.
	l.cld.stop(syscall.SIGKILL)
	l.killPowerCut(t)
	waitFor(t, "the containers gone after the power cut", 30*time.Second, func() bool {
		o, _ := run(t, "lxc-ls", "-P", l.lxcPath(), "--running")
		return strings.TrimSpace(o) == ""
	})
	l.start(t)
	waitFor(t, "dep-a and dep-b running again after start-up", 90*time.Second, func() bool {
		return l.pkgState(t, "dep-a") == "running" && l.pkgState(t, "dep-b") == "running"
	})
	var started []string
	for _, line := range strings.Split(l.cld.log.String(), "\n") {
		if strings.Contains(line, "dependencies are there: starting the package") {
			for _, id := range []string{"dep-a", "dep-b"} {
				if strings.Contains(line, id) {
					started = append(started, id)
				}
			}
		}
	}
	if strings.Join(started, ",") != "dep-a,dep-b" {
		t.Errorf("start-up started %v; want dep-a, then dep-b:\n%s", started, l.cld.log.String())
	}
	if st := stateOf(l.daemons(t, "dep-a")["web"]); st != "ready" {
		t.Errorf("dep-a's web after start-up: %s", st)
	}
}

func stateOf(d *guestv1.Daemon) string {
	if d == nil {
		return "absent"
	}
	return strings.ToLower(strings.TrimPrefix(d.GetState().String(), "DAEMON_STATE_"))
}
