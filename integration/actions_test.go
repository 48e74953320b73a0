package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/hpkg"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// busyboxActions are actions of a busybox package, each leaving a mark in its volume so a
// test can tell whether it ran.
const busyboxActions = `actions:
  mark:
    name: Leave a mark
    image: bb
    mounts: [{volume: www, path: /www}]
    command:
      - /bin/sh
      - -c
      - |
        cat > /www/mark.json
        count=$(sed -n 's/.*"count":\([0-9]*\).*/\1/p' /www/mark.json)
        echo "marked with $count" >&2
        printf '{"message": "marked", "values": [{"name": "count", "value": "%s", "copyable": true}, {"name": "token", "value": "s3cret-%s", "secret": true}]}\n' "$count" "$count"
    input:
      count: {type: integer, min: 1, max: 5, default: 2}
      colour: {type: enum, values: [red, blue], required: true}
      note: {type: string, max: 10, pattern: "[a-z ]*"}
  offline:
    name: Work on data at rest
    image: bb
    when: stopped
    mounts: [{volume: www, path: /www}]
    command:
      - /bin/sh
      - -c
      - |
        n=$(cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' ' ' | grep -o '[h]ttpd -f' | wc -l)
        date > /www/offline-ran
        printf '{"message": "done offline", "values": [{"name": "httpd", "value": "%s"}]}\n' "$n"
  slow:
    image: bb
    when: stopped
    command: [/bin/sh, -c, "sleep 3; echo '{\"message\": \"slept\"}'"]
  live:
    image: bb
    when: running
    command: [/bin/sh, -c, "echo '{\"message\": \"live\"}'"]
  broken:
    image: bb
    command: [/bin/sh, -c, "echo half; echo 'it broke here' >&2; exit 3"]
  chatty:
    image: bb
    command: [/bin/sh, -c, "echo hello there"]
`

// busyboxWithActions packs the busybox example with busyboxActions.
func busyboxWithActions(t *testing.T, l *lab, ex string) string {
	t.Helper()
	return repackBusybox(t, l, ex, "busybox-actions.hpkg", func(mf []byte) []byte {
		return bytes.Replace(mf, []byte("interfaces:\n"), []byte(busyboxActions+"interfaces:\n"), 1)
	})
}

// repackBusybox packs the busybox example 1.0.0 with its manifest changed by edit, as
// name in a temporary directory.
func repackBusybox(t testing.TB, l *lab, ex, name string, edit func(manifest []byte) []byte) string {
	t.Helper()
	src := tempDir(t)
	must(t, exec.Command("tar", "-xf", filepath.Join(ex, "busybox-1.0.0.hpkg"), "-C", src).Run())
	os.Remove(filepath.Join(src, hpkg.TOCName))
	os.Remove(filepath.Join(src, hpkg.SigName))
	mf, err := os.ReadFile(filepath.Join(src, "manifest.yaml"))
	must(t, err)
	mf = bytes.Replace(mf, []byte("images/busybox.tar"), []byte("images"), 1)
	must(t, os.WriteFile(filepath.Join(src, "manifest.yaml"), edit(mf), 0o644))
	out := filepath.Join(tempDir(t), name)
	if _, err := hearthctl(t, l.runDir, "pack", src, "--key", filepath.Join(ex, "dev.key"), "--out", out); err != nil {
		t.Fatal(err)
	}
	return out
}

// actions lists a package's actions by id.
func (l *lab) actions(t *testing.T, pkg string) map[string]*hostv1.ActionInfo {
	t.Helper()
	resp := &containerv1.ListActionsResponse{}
	hearthctlJSON(t, l.runDir, resp, "action", "ls", pkg)
	out := map[string]*hostv1.ActionInfo{}
	for _, a := range resp.GetActions() {
		out[a.GetId()] = a
	}
	return out
}

// refused runs an action that must fail, and checks the error says want and the code.
func (l *lab) refused(t *testing.T, code string, want []string, args ...string) {
	t.Helper()
	_, err := hearthctl(t, l.runDir, append([]string{"action", "run"}, args...)...)
	if err == nil {
		t.Fatalf("action run %v ran", args)
	}
	for _, w := range append(want, "("+code+")") {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("action run %v: %v\nwant it to say %q", args, err, w)
		}
	}
}

func (l *lab) packageState(t *testing.T, id string) string {
	t.Helper()
	resp := &containerv1.GetPackageResponse{}
	hearthctlJSON(t, l.runDir, resp, "info", id)
	return resp.GetPackage().GetState()
}

// TestActions: a busybox package's actions are listed with their fields and whether each
// is offered now; bad input is refused on the host and nothing runs (the action would
// leave a mark); good input runs with the defaults filled in and returns values, a secret
// one marked; an action offered only while stopped is refused while the package runs,
// and runs while it is stopped with none of its daemons up, leaving it stopped (also when
// containerd-lite is killed during it); failing actions report their exit and standard
// error.
func TestActions(t *testing.T) {
	l, ex := installLab(t, "busybox")
	pkg := busyboxWithActions(t, l, ex)
	if _, err := hearthctl(t, l.runDir, "install", pkg); err != nil {
		t.Fatal(err)
	}
	hasFile := func(name string) bool {
		_, err := hearthctl(t, l.runDir, "exec", "busybox", "web", "--", "test", "-e", "/www/"+name)
		return err == nil
	}

	as := l.actions(t, "busybox")
	if len(as) != 6 {
		t.Fatalf("actions: %v", as)
	}
	m, off, live := as["mark"], as["offline"], as["live"]
	if m.GetName() != "Leave a mark" || m.GetWhen() != "any" || !m.GetAvailable() || len(m.GetInput()) != 3 {
		t.Errorf("mark: %v", m)
	}
	for _, f := range m.GetInput() {
		switch f.GetName() {
		case "count":
			if f.GetType() != "integer" || f.GetMin() != 1 || f.GetMax() != 5 || f.GetDefaultJson() != "2" || f.GetRequired() {
				t.Errorf("count: %v", f)
			}
		case "colour":
			if f.GetType() != "enum" || !f.GetRequired() || strings.Join(f.GetValues(), ",") != "red,blue" {
				t.Errorf("colour: %v", f)
			}
		case "note":
			if f.GetPattern() != "[a-z ]*" || f.GetMax() != 10 || f.Min != nil {
				t.Errorf("note: %v", f)
			}
		}
	}
	if off.GetWhen() != "stopped" || off.GetAvailable() || !strings.Contains(off.GetReason(), "offered only while the package is stopped, and it is running") {
		t.Errorf("offline while running: %v", off)
	}
	if !live.GetAvailable() {
		t.Errorf("live while running: %v", live)
	}
	if out, err := hearthctl(t, l.runDir, "action", "ls", "busybox"); err != nil || !strings.Contains(out, "count:integer[1..5]=2") || !strings.Contains(out, "colour*:enum(red|blue)") {
		t.Errorf("action ls:\n%s %v", out, err)
	}

	// Bad input: refused on the host, naming the field; the action never ran.
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"out of bounds", []string{"--input", "colour=red", "--input", "count=9"}, []string{"count: 9 is out of bounds: give an integer from 1 to 5"}},
		{"missing", []string{"--input", "count=3"}, []string{"colour: missing: give one of red, blue"}},
		{"enum", []string{"--input", "colour=green"}, []string{`colour: "green": give one of red, blue`}},
		{"pattern", []string{"--input", "colour=red", "--input", "note=Hi!"}, []string{`note: "Hi!" does not match [a-z ]*`}},
		{"length", []string{"--input", "colour=red", "--input", "note=much too long"}, []string{"note: \"much too long\" has 13 characters"}},
	} {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			l.refused(t, "InvalidArgument", tc.want, append([]string{"busybox", "mark"}, tc.args...)...)
		})
	}
	// Through the file: a wrong type and an unknown field, both named.
	bad := filepath.Join(tempDir(t), "bad.json")
	must(t, os.WriteFile(bad, []byte(`{"colour": "red", "count": "3", "size": 1}`), 0o644))
	l.refused(t, "InvalidArgument", []string{`count: "3": give an integer from 1 to 5`, "size: unknown field: this action takes colour, count, note"}, "busybox", "mark", "--input-file", bad)
	if hasFile("mark.json") {
		t.Fatal("the action ran on bad input")
	}

	// Good input: the defaults filled in, the values returned.
	t0 := time.Now()
	out, err := hearthctl(t, l.runDir, "action", "run", "busybox", "mark", "--input", "colour=blue")
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	if !strings.Contains(out, "marked") || !strings.Contains(out, "count:") || !strings.Contains(out, "token (secret, shown once):") || !strings.Contains(out, "s3cret-2") {
		t.Errorf("action run:\n%s", out)
	}
	stdin, err := hearthctl(t, l.runDir, "exec", "busybox", "web", "--", "cat", "/www/mark.json")
	if err != nil || strings.TrimSpace(stdin) != `{"colour":"blue","count":2}` {
		t.Errorf("the action's input: %q %v", stdin, err)
	}
	res := &containerv1.RunActionResponse{}
	hearthctlJSON(t, l.runDir, res, "action", "run", "busybox", "mark", "--input", "colour=red", "--input", "count=5", "--input", "note=hi there")
	if len(res.GetValues()) != 2 || res.GetValues()[0].GetValue() != "5" || !res.GetValues()[0].GetCopyable() || !res.GetValues()[1].GetSecret() || res.GetValues()[1].GetValue() != "s3cret-5" {
		t.Errorf("values: %v", res)
	}
	t.Logf("an action on a running package took %v (hearthctl to result)", took.Round(time.Millisecond))

	// The same through the package's own host.sock (the effects its scripts call): the
	// socket is the identity, so the package names only its own actions.
	conn, err := dial.Unix(filepath.Join(l.stateDir, "containers", "busybox", "media", "host", "host.sock"))
	must(t, err)
	defer conn.Close()
	host := hostv1.NewHostServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hl, err := host.ListActions(ctx, &hostv1.ListActionsRequest{})
	if err != nil || len(hl.GetActions()) != 6 || hl.GetActions()[3].GetId() != "mark" {
		t.Fatalf("action.list on host.sock: %v %v", hl, err)
	}
	if _, err := host.RunAction(ctx, &hostv1.RunActionRequest{Id: "mark", InputJson: `{"colour": "red", "count": 0}`}); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), "count: 0 is out of bounds") {
		t.Errorf("action.run with bad input on host.sock: %v", err)
	}
	hr, err := host.RunAction(ctx, &hostv1.RunActionRequest{Id: "mark", InputJson: `{"colour": "red", "count": 4}`})
	if err != nil || hr.GetMessage() != "marked" || hr.GetValues()[0].GetValue() != "4" {
		t.Errorf("action.run on host.sock: %v %v", hr, err)
	}

	// Offered only while stopped: refused while the package runs, and it did not run.
	l.refused(t, "FailedPrecondition", []string{"offered only while the package is stopped, and it is running: stop it first"}, "busybox", "offline")
	if hasFile("offline-ran") {
		t.Fatal("the stopped-only action ran while the package runs")
	}
	// Failing actions: their exit and standard error; output that is not a result.
	l.refused(t, "Unknown", []string{"action broken of busybox failed: it exited 3", "it broke here"}, "busybox", "broken")
	l.refused(t, "Unknown", []string{"action chatty of busybox exited 0, but the action's result is not as actions print it"}, "busybox", "chatty")
	l.refused(t, "NotFound", []string{"busybox has no action \"nope\" (its actions: broken, chatty, live, mark, offline, slow)"}, "busybox", "nope")

	// Stopped: the stopped-only action runs with no daemon up, and the package stays stopped.
	if _, err := hearthctl(t, l.runDir, "stop", "busybox"); err != nil {
		t.Fatal(err)
	}
	as = l.actions(t, "busybox")
	if !as["offline"].GetAvailable() || !as["mark"].GetAvailable() || as["live"].GetAvailable() || !strings.Contains(as["live"].GetReason(), "offered only while the package runs, and it is stopped") {
		t.Errorf("while stopped: %v", as)
	}
	l.refused(t, "FailedPrecondition", []string{"offered only while the package runs, and it is stopped: start it first"}, "busybox", "live")
	l.refused(t, "InvalidArgument", []string{"colour: missing"}, "busybox", "mark")
	if st := l.packageState(t, "busybox"); st != "stopped" {
		t.Fatalf("after refused actions, the package is %s", st)
	}
	t0 = time.Now()
	res = &containerv1.RunActionResponse{}
	hearthctlJSON(t, l.runDir, res, "action", "run", "busybox", "offline")
	t.Logf("an action on a stopped package took %v (start without daemons, job, stop)", time.Since(t0).Round(time.Millisecond))
	if res.GetMessage() != "done offline" || len(res.GetValues()) != 1 || res.GetValues()[0].GetValue() != "0" {
		t.Errorf("offline: %v (httpd processes seen by the action: want 0)", res)
	}
	if st := l.packageState(t, "busybox"); st != "stopped" {
		t.Fatalf("after the stopped-only action, the package is %s", st)
	}
	// While a stopped-only action runs (the container up without its daemons), no other
	// action runs, and the list says why; its container does not start under it, and the
	// package's start waits for it to end.
	slow := exec.Command(filepath.Join(binDir, "hearthctl"), "--run-dir", l.runDir, "action", "run", "busybox", "slow")
	var slowOut bytes.Buffer
	slow.Stdout, slow.Stderr = &slowOut, &slowOut
	must(t, slow.Start())
	busy := false
	for deadline := time.Now().Add(20 * time.Second); !busy && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		a := l.actions(t, "busybox")["mark"]
		busy = !a.GetAvailable() && strings.Contains(a.GetReason(), "an action runs on the package while it is stopped")
	}
	if !busy {
		t.Error("action ls never said an action runs on the stopped package")
	} else {
		l.refused(t, "FailedPrecondition", []string{"an action runs on the package while it is stopped: retry when it is done"}, "busybox", "mark", "--input", "colour=red")
		// Its container does not start under it; the package's start waits for it.
		if _, err := hearthctl(t, l.runDir, "container", "start", "busybox"); err == nil || !strings.Contains(err.Error(), "runs without its daemons for an action of its package: retry when the action is done") {
			t.Errorf("container start while a stopped-only action runs: %v", err)
		}
		if _, err := hearthctl(t, l.runDir, "start", "busybox"); err != nil {
			t.Errorf("start while a stopped-only action runs: %v", err)
		}
		if st := l.packageState(t, "busybox"); st != "running" {
			t.Errorf("after start, the package is %s", st)
		}
	}
	if err := slow.Wait(); err != nil || !strings.Contains(slowOut.String(), "slept") {
		t.Fatalf("the slow action: %v\n%s", err, slowOut.String())
	}
	if busy {
		l.waitDaemons(t, "busybox", "ready", time.Minute, settledJobs)
		if _, err := hearthctl(t, l.runDir, "stop", "busybox"); err != nil {
			t.Fatal(err)
		}
	}
	if st := l.packageState(t, "busybox"); st != "stopped" {
		t.Fatalf("after the slow action, the package is %s", st)
	}

	// containerd-lite killed while the package is up without its daemons for an action:
	// its next start-up stops the package again.
	l.crashAt(t, "action:idle", false, "action", "run", "busybox", "offline")
	if !strings.Contains(l.cld.log.String(), `msg="reconcile: an operation did not finish" daemon=containerd-lite op=action package=busybox step=idle`) {
		t.Error("containerd-lite's start-up did not find the action's journal")
	}
	if st := l.packageState(t, "busybox"); st != "stopped" {
		t.Fatalf("after a crash during a stopped-only action and a restart, the package is %s", st)
	}
	if _, err := hearthctl(t, l.runDir, "action", "run", "busybox", "offline"); err != nil {
		t.Fatalf("the action after the crash: %v", err)
	}
	if _, err := hearthctl(t, l.runDir, "start", "busybox"); err != nil {
		t.Fatal(err)
	}
	l.waitDaemons(t, "busybox", "ready", time.Minute, settledJobs)
	if !hasFile("offline-ran") {
		t.Error("the stopped-only action left no mark in the volume")
	}
	// Running again: the daemons are back and serve.
	if out, err := hearthctl(t, l.runDir, "exec", "busybox", "web", "--", "wget", "-qO-", "http://127.0.0.1:8080/"); err != nil || !strings.Contains(out, "hello from busybox") {
		t.Fatalf("page after the stopped action: %q %v", out, err)
	}
}

// TestActionsHelloPG: hello-pg's reset-password gives the database's admin role a new
// password, returned as a secret value, and refuses a length out of bounds before it
// runs; check-data runs only while the package is stopped, with Postgres down.
func TestActionsHelloPG(t *testing.T) {
	l, ex := installLab(t, "busybox", "hello-pg")
	if _, err := hearthctl(t, l.runDir, "--timeout", "10m", "install", filepath.Join(ex, "hello-pg-1.0.0.hpkg")); err != nil {
		t.Fatal(err)
	}
	as := l.actions(t, "hello-pg")
	if !as["reset-password"].GetAvailable() || as["check-data"].GetAvailable() {
		t.Fatalf("actions: %v", as)
	}
	l.refused(t, "InvalidArgument", []string{"length: 8 is out of bounds: give an integer from 12 to 64"}, "hello-pg", "reset-password", "--input", "length=8")
	if rows := l.psql(t, "SELECT count(*) FROM pg_roles WHERE rolname = 'admin'"); len(rows) != 1 || rows[0] != "0" {
		t.Fatalf("the refused action made the role: %v", rows)
	}
	res := &containerv1.RunActionResponse{}
	hearthctlJSON(t, l.runDir, res, "action", "run", "hello-pg", "reset-password", "--input", "length=20")
	var pw string
	for _, v := range res.GetValues() {
		if v.GetName() == "password" && v.GetSecret() {
			pw = v.GetValue()
		}
	}
	if len(pw) != 20 {
		t.Fatalf("reset-password: %v", res)
	}
	first := l.psql(t, "SELECT rolpassword FROM pg_authid WHERE rolname = 'admin'")
	if len(first) != 1 || !strings.HasPrefix(first[0], "SCRAM-SHA-256$") {
		t.Fatalf("the admin role's password: %v", first)
	}
	// The default length, and a new password.
	hearthctlJSON(t, l.runDir, res, "action", "run", "hello-pg", "reset-password")
	if v := res.GetValues(); len(v) != 2 || len(v[1].GetValue()) != 24 || v[1].GetValue() == pw {
		t.Fatalf("second reset: %v", res)
	}
	if again := l.psql(t, "SELECT rolpassword FROM pg_authid WHERE rolname = 'admin'"); len(again) != 1 || again[0] == first[0] {
		t.Fatalf("the password did not change: %v", again)
	}

	l.refused(t, "FailedPrecondition", []string{"offered only while the package is stopped"}, "hello-pg", "check-data")
	if _, err := hearthctl(t, l.runDir, "stop", "hello-pg"); err != nil {
		t.Fatal(err)
	}
	out, err := hearthctl(t, l.runDir, "action", "run", "hello-pg", "check-data")
	if err != nil || !strings.Contains(out, "The database cluster is shut down.") || !strings.Contains(out, "version:") {
		t.Fatalf("check-data while stopped: %q %v", out, err)
	}
	if st := l.packageState(t, "hello-pg"); st != "stopped" {
		t.Fatalf("after check-data, hello-pg is %s", st)
	}
	if _, err := hearthctl(t, l.runDir, "start", "hello-pg"); err != nil {
		t.Fatal(err)
	}
	l.waitDaemons(t, "hello-pg", "ready", time.Minute, settledJobs)
}
