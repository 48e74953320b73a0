package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hearth.dev/examples/hello-pg/appimage"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
)

// postgresRootfs returns the debootstrapped bookworm + postgresql-15 tarball, built once
// and cached outside the clone by deploy/images/debootstrap.sh.
func postgresRootfs(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("HEARTH_PG_ROOTFS_TAR"); p != "" {
		return p
	}
	out, err := exec.Command("../deploy/images/debootstrap.sh", "postgresql-15").Output()
	if err != nil {
		t.Fatalf("build the Postgres image with deploy/images/debootstrap.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// importHelloPG imports hello-pg's two images: Postgres, and our app on busybox.
func importHelloPG(t *testing.T, l *lab) {
	t.Helper()
	importAppImage(t, l, "../examples/hello-pg/app", "hello-pg/app:1")
	if _, err := hearthctl(t, l.runDir, "--timeout", "10m", "image", "import", postgresRootfs(t), "--name", "hello-pg/postgres:15"); err != nil {
		t.Fatal(err)
	}
}

// importAppImage builds a Go program (static) and imports it as an image: busybox and the
// program at /app/server (examples/hello-pg/appimage), named ref.
func importAppImage(t *testing.T, l *lab, pkg, ref string) {
	t.Helper()
	dir := tempDir(t)
	app := filepath.Join(dir, "server")
	build := exec.Command("go", "build", "-o", app, pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	must(t, appimage.Write(app, filepath.Join(dir, "image"), "/bin/busybox"))
	if _, err := hearthctl(t, l.runDir, "image", "import", filepath.Join(dir, "image"), "--name", ref); err != nil {
		t.Fatal(err)
	}
}

// daemons returns a container's daemons by name, through containerd-lite's forwarding.
func (l *lab) daemons(t *testing.T, name string) map[string]*guestv1.Daemon {
	t.Helper()
	out, err := hearthctl(t, l.runDir, "-o", "json", "container", "status", name)
	if err != nil {
		t.Fatal(err)
	}
	// status prints one document: the container, and its package's daemons under
	// "status" (null without a package).
	var st struct {
		Status *struct {
			Daemons []json.RawMessage `json:"daemons"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	res := map[string]*guestv1.Daemon{}
	if st.Status == nil {
		return res
	}
	for _, raw := range st.Status.Daemons {
		d := &guestv1.Daemon{}
		if err := protojsonUnmarshal(raw, d); err != nil {
			t.Fatal(err)
		}
		res[d.GetName()] = d
	}
	return res
}

// waitDaemons waits until cond holds for a container's daemons.
func (l *lab) waitDaemons(t *testing.T, name, what string, timeout time.Duration, cond func(map[string]*guestv1.Daemon) bool) map[string]*guestv1.Daemon {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var ds map[string]*guestv1.Daemon
	for time.Now().Before(deadline) {
		ds = l.daemons(t, name)
		if cond(ds) {
			return ds
		}
		time.Sleep(100 * time.Millisecond)
	}
	logs, _ := hearthctl(t, l.runDir, "logs", name, "--tail", "30")
	t.Fatalf("%s: never %s: %v\nlogs:\n%s", name, what, ds, logs)
	return nil
}

func allReady(names ...string) func(map[string]*guestv1.Daemon) bool {
	return func(ds map[string]*guestv1.Daemon) bool {
		for _, n := range names {
			if ds[n].GetState() != guestv1.DaemonState_DAEMON_STATE_READY {
				return false
			}
		}
		return true
	}
}

type rows struct {
	Boot, TCP, Unix string
	Rows            []string
}

func (l *lab) appRows(t *testing.T, name string) rows {
	t.Helper()
	out, err := hearthctl(t, l.runDir, "exec", name, "app", "--", "wget", "-qO-", "http://127.0.0.1:8080/rows")
	if err != nil {
		t.Fatal(err)
	}
	var r rows
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("/rows: %v: %s", err, out)
	}
	return r
}

// TestHelloPG is the talk's demo: Postgres and our app, two images, one container, one
// process namespace, one cgroup; the app reaches Postgres over 127.0.0.1 and over the
// shared /run/postgresql socket; the data outlives a stop and start.
func TestHelloPG(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	importHelloPG(t, l)
	const name = "hello"
	if _, err := hearthctl(t, l.runDir, "container", "create", name, "--manifest", "../examples/hello-pg/manifest.yaml"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hearthctl(t, l.runDir, "container", "rm", "--force", "--purge-volumes", name) })
	if _, err := hearthctl(t, l.runDir, "container", "start", name); err != nil {
		t.Fatal(err)
	}
	ds := l.waitDaemons(t, name, "ready", 2*time.Minute, allReady("db", "app"))
	for _, o := range []string{"prepare", "initdb"} {
		if ds[o].GetState() != guestv1.DaemonState_DAEMON_STATE_DONE {
			t.Errorf("oneshot %s: %v", o, ds[o])
		}
	}
	// Finished oneshots gave their subcontainers back.
	for _, o := range l.inspect(t, name).GetDetails().GetOverlays() {
		if o.GetName() == "prepare" || o.GetName() == "initdb" {
			t.Errorf("oneshot %s still has its overlay", o.GetName())
		}
	}
	first := l.appRows(t, name)
	if first.TCP != "ok" || first.Unix != "ok" || len(first.Rows) != 1 {
		t.Fatalf("app's report: %+v", first)
	}

	// One PID namespace: each subcontainer sees both daemons.
	psApp, err := hearthctl(t, l.runDir, "exec", name, "app", "--", "ps", "-o", "pid,args")
	if err != nil || !strings.Contains(psApp, "postgres -D") || !strings.Contains(psApp, "/app/server") {
		t.Errorf("ps in the app's subcontainer: %v\n%s", err, psApp)
	}
	psDB, err := hearthctl(t, l.runDir, "exec", name, "db", "--", "sh", "-c", `for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline; echo; done`)
	if err != nil || !strings.Contains(psDB, "postgres -D") || !strings.Contains(psDB, "/app/server") {
		t.Errorf("processes seen from the db's subcontainer: %v\n%s", err, psDB)
	}
	// One cgroup: on the host, both daemons are in the container's cgroup, whose memory
	// limit is the manifest's.
	cgroups := map[string]string{}
	for _, d := range []string{"db", "app"} {
		pid := hostPID(t, l, name, ds[d].GetPid())
		b, err := os.ReadFile("/proc/" + pid + "/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "memory") || strings.HasPrefix(line, "0::") {
				cgroups[d] += line
			}
		}
	}
	if cgroups["db"] == "" || cgroups["db"] != cgroups["app"] || !strings.Contains(cgroups["db"], name) {
		t.Errorf("daemons' cgroups differ or are not the container's: %v", cgroups)
	}
	if lim := l.inspect(t, name).GetDetails().GetCgroupLimits(); lim.GetMemoryBytes() != 512<<20 {
		t.Errorf("cgroup memory limit %d, want 512Mi", lim.GetMemoryBytes())
	}

	// The row outlives a stop and a start.
	if _, err := hearthctl(t, l.runDir, "container", "stop", name); err != nil {
		t.Fatal(err)
	}
	if _, err := hearthctl(t, l.runDir, "container", "start", name); err != nil {
		t.Fatal(err)
	}
	l.waitDaemons(t, name, "ready again", 2*time.Minute, allReady("db", "app"))
	second := l.appRows(t, name)
	if len(second.Rows) != 2 || second.Rows[0] != first.Rows[0] {
		t.Errorf("after stop and start: %+v (first run wrote %v)", second, first.Rows)
	}
	logs, err := hearthctl(t, l.runDir, "logs", name, "--daemon", "db", "--tail", "50")
	if err != nil || !strings.Contains(logs, "database system is ready to accept connections") {
		t.Errorf("db logs: %v\n%s", err, logs)
	}
}

// hostPID maps a PID inside container name to the host's PID (NSpid in /proc/*/status).
func hostPID(t *testing.T, l *lab, name string, inside int32) string {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	want := " " + itoa32(inside)
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f, ok := strings.CutPrefix(line, "NSpid:"); ok {
				fields := strings.Fields(f)
				if len(fields) == 2 && " "+fields[1] == want {
					if cg, _ := os.ReadFile("/proc/" + e.Name() + "/cgroup"); strings.Contains(string(cg), name) {
						return e.Name()
					}
				}
			}
		}
	}
	t.Fatalf("no host process is pid %d in %s", inside, name)
	return ""
}
