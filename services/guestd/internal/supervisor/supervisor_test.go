package supervisor

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hearth.dev/internal/manifest"
	"hearth.dev/services/guestd/internal/logbuf"
	"hearth.dev/services/guestd/internal/reaper"
	"hearth.dev/services/guestd/internal/starttrace"
)

var rp *reaper.Reaper

func TestMain(m *testing.M) {
	var err error
	if rp, err = reaper.Start(); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// hostLauncher runs jobs as plain host processes: the supervisor's logic with real
// processes, without a container (the launch package does the real thing, tested in LXC).
type hostLauncher struct {
	env    []string
	mu     sync.Mutex
	groups map[string]int // each job's last process group
	events []string       // "prepare NAME" (fresh ones only) and "start NAME", in order
}

func (h *hostLauncher) Prepare(_ context.Context, name string, _ *manifest.Daemon, fresh bool) error {
	if fresh {
		h.record("prepare " + name)
	}
	return nil
}

func (h *hostLauncher) record(e string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

func (h *hostLauncher) Events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...)
}

// Cleanup kills what is left of the job's last process group (the launch package kills
// what is rooted in its subcontainer).
func (h *hostLauncher) Cleanup(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if pg := h.groups[name]; pg > 0 {
		_ = syscall.Kill(-pg, syscall.SIGKILL)
	}
}

func (h *hostLauncher) Signal(pid int, sig syscall.Signal) error { return rp.SignalGroup(pid, sig) }
func (h *hostLauncher) Release(context.Context, string) error    { return nil }

func (h *hostLauncher) Start(name string, spec *manifest.Daemon, stdout, stderr *os.File) (int, <-chan reaper.Exit, error) {
	devnull, _ := os.Open(os.DevNull)
	defer devnull.Close()
	pid, exit, err := rp.Spawn("/bin/sh", append([]string{"sh", "-c"}, spec.Command...), &syscall.ProcAttr{
		Env: h.env, Files: []uintptr{devnull.Fd(), stdout.Fd(), stderr.Fd()}, Sys: &syscall.SysProcAttr{Setpgid: true},
	})
	if err == nil {
		h.record("start " + name)
		h.mu.Lock()
		if h.groups == nil {
			h.groups = map[string]int{}
		}
		h.groups[name] = pid
		h.mu.Unlock()
	}
	return pid, exit, err
}

func (h *hostLauncher) Run(ctx context.Context, name string, spec *manifest.Daemon, argv []string) (reaper.Exit, error) {
	pid, ch, err := rp.Spawn("/bin/sh", append([]string{"sh", "-c"}, argv...), &syscall.ProcAttr{Env: h.env, Sys: &syscall.SysProcAttr{Setpgid: true}})
	if err != nil {
		return reaper.Exit{}, err
	}
	select {
	case e := <-ch:
		return e, nil
	case <-ctx.Done():
		rp.SignalGroup(pid, syscall.SIGKILL)
		return <-ch, ctx.Err()
	}
}

type fixture struct {
	s   *Supervisor
	l   *hostLauncher
	dir string
}

func newFixture(t *testing.T, yaml string) *fixture {
	t.Helper()
	dir := t.TempDir()
	m, err := manifest.Parse([]byte(strings.ReplaceAll(yaml, "$DIR", dir)))
	if err != nil {
		t.Fatal(err)
	}
	logs := map[string]*logbuf.Log{}
	l := &hostLauncher{env: []string{"PATH=/usr/bin:/bin", "DIR=" + dir}}
	s := New(m, l, func(n string) *logbuf.Log {
		l, _ := logbuf.New(filepath.Join(dir, "logs", n+".log"), 100, 1<<20)
		logs[n] = l
		return l
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s.StopAll(ctx)
	})
	return &fixture{s: s, l: l, dir: dir}
}

func (f *fixture) status(name string) Status {
	for _, st := range f.s.Status() {
		if st.Name == name {
			return st
		}
	}
	return Status{}
}

// waitFor waits until cond holds for the job's status.
func (f *fixture) waitFor(t *testing.T, name string, what string, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if st := f.status(name); cond(st) {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never became %s: %+v", name, what, f.status(name))
	return Status{}
}

func state(s State) func(Status) bool { return func(st Status) bool { return st.State == s } }

const header = "id: p\nversion: 1.0.0\nimages: {i: {ref: x}}\n"

func TestOrderOneshotsAndReadiness(t *testing.T) {
	f := newFixture(t, header+`
daemons:
  db:
    image: i
    command: ["sleep 0.3; date +%s%N > $DIR/db-ready; exec sleep 100"]
    ready: {exec: ["test -f $DIR/db-ready"], interval: 50ms}
  app:
    image: i
    command: ["test -f $DIR/migrated && date +%s%N > $DIR/app-started; exec sleep 100"]
    requires: [db]
oneshots:
  migrate:
    image: i
    command: ["test -f $DIR/db-ready && touch $DIR/migrated"]
    requires: [db]
    before: [app]
`)
	f.s.StartAll()
	if st := f.status("app"); st.State != Waiting {
		t.Errorf("app at once: %+v, want waiting", st)
	}
	f.waitFor(t, "app", "ready", state(Ready))
	if st := f.status("migrate"); st.State != Done || st.LastExit == nil || !st.LastExit.Success() {
		t.Errorf("migrate: %+v", st)
	}
	dbReady, _ := os.ReadFile(filepath.Join(f.dir, "db-ready"))
	var appStarted []byte
	for i := 0; i < 200 && len(appStarted) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		appStarted, _ = os.ReadFile(filepath.Join(f.dir, "app-started"))
	}
	if len(appStarted) == 0 {
		t.Fatalf("app did not find the migration done: %+v", f.status("app"))
	}
	if string(appStarted) < string(dbReady) {
		t.Errorf("app started (%s) before db was ready (%s)", appStarted, dbReady)
	}
}

func TestRestartAfterKillWithBackoff(t *testing.T) {
	f := newFixture(t, header+`
daemons:
  app: {image: i, command: ["exec sleep 100"], restart: {backoff: 200ms..1s}}
`)
	f.s.StartAll()
	st := f.waitFor(t, "app", "ready", state(Ready))
	killed := time.Now()
	if err := rp.Signal(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	f.waitFor(t, "app", "in backoff", state(Backoff))
	again := f.waitFor(t, "app", "ready again", func(s Status) bool { return s.State == Ready && s.PID != st.PID && s.PID != 0 })
	if again.Restarts != 1 || again.LastExit == nil || again.LastExit.Signal != syscall.SIGKILL {
		t.Errorf("after the kill: %+v", again)
	}
	if d := again.StartedAt.Sub(killed); d < 200*time.Millisecond {
		t.Errorf("restarted %v after the kill, before the 200ms backoff", d)
	}
}

// dbUntilUpThenApp: db is ready once the test creates $DIR/up; app requires db.
const dbUntilUpThenApp = `
daemons:
  db: {image: i, command: ["exec sleep 100"], ready: {exec: ["test -e $DIR/up"], interval: 20ms}}
  app: {image: i, command: ["exec sleep 100"], requires: [db]}
`

// TestDependentPreparedWhileItWaits: a job that requires another has its root prepared
// once the other has started, while the other is not ready yet, and only once: its start
// after the other is ready is the exec alone.
func TestDependentPreparedWhileItWaits(t *testing.T) {
	f := newFixture(t, header+dbUntilUpThenApp)
	f.s.StartAll()
	f.waitFor(t, "db", "starting", state(Starting))
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(f.l.Events(), "prepare app") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got, want := f.l.Events(), []string{"prepare db", "start db", "prepare app"}; !slices.Equal(got, want) {
		t.Fatalf("while db is not ready: %q, want %q", got, want)
	}
	if st := f.status("db"); st.State != Starting {
		t.Fatalf("db is %s: the check above proved nothing", st.State)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "up"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.waitFor(t, "app", "ready", state(Ready))
	if got, want := f.l.Events(), []string{"prepare db", "start db", "prepare app", "start app"}; !slices.Equal(got, want) {
		t.Fatalf("after db is ready: %q, want %q", got, want)
	}
}

func TestNeverReadyBlocksDependents(t *testing.T) {
	f := newFixture(t, header+`
daemons:
  db: {image: i, command: ["exec sleep 100"], ready: {exec: ["false"], interval: 50ms, grace: 300ms, retries: 2}, restart: {policy: never}}
  app: {image: i, command: ["exec sleep 100"], requires: [db]}
`)
	f.s.StartAll()
	st := f.waitFor(t, "db", "failing", state(Failing))
	if !strings.Contains(st.Health, "not ready within grace") {
		t.Errorf("health %q", st.Health)
	}
	time.Sleep(300 * time.Millisecond)
	if app := f.status("app"); app.State != Waiting || app.PID != 0 || !strings.Contains(app.Health, "waiting for db (failing)") {
		t.Errorf("app: %+v, want waiting and never started", app)
	}
}

func TestFailingHealthRestarts(t *testing.T) {
	f := newFixture(t, header+`
daemons:
  app:
    image: i
    command: ["touch $DIR/ok; exec sleep 100"]
    ready: {exec: ["test -f $DIR/ok"], interval: 50ms, retries: 2}
    restart: {backoff: 50ms..100ms}
`)
	f.s.StartAll()
	st := f.waitFor(t, "app", "ready", state(Ready))
	os.Remove(filepath.Join(f.dir, "ok"))
	// Failing after 2 failed checks, restarted after 2 more; the new process makes the file again.
	again := f.waitFor(t, "app", "restarted", func(s Status) bool { return s.Restarts == 1 && s.State == Ready })
	if again.PID == st.PID || !strings.Contains(again.LastExit.String(), "killed") {
		t.Errorf("after failing health: %+v", again)
	}
}

func TestStopEscalatesAndStopsInReverseOrder(t *testing.T) {
	f := newFixture(t, header+`
daemons:
  db: {image: i, command: ["trap 'echo db >> $DIR/order; exit 0' TERM; while true; do sleep 0.05; done"]}
  app: {image: i, command: ["trap 'echo app >> $DIR/order; exit 0' TERM; while true; do sleep 0.05; done"], requires: [db]}
  stubborn: {image: i, command: ["trap '' TERM; touch $DIR/stubborn; while true; do sleep 0.05; done"], stop: {timeout: 400ms},
    ready: {exec: ["test -e $DIR/stubborn"], interval: 20ms}}
`)
	// stubborn is ready once its shell ignores SIGTERM (a SIGTERM before that, under load,
	// stopped it at once).
	f.s.StartAll()
	for _, n := range []string{"db", "app", "stubborn"} {
		f.waitFor(t, n, "ready", state(Ready))
	}
	t0 := time.Now()
	if err := f.s.Stop(context.Background(), "stubborn"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 400*time.Millisecond || d > 5*time.Second {
		t.Errorf("stubborn stopped after %v, want SIGKILL at 400ms", d)
	}
	if st := f.status("stubborn"); st.State != Stopped || st.LastExit == nil || st.LastExit.Signal != syscall.SIGKILL {
		t.Errorf("stubborn: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f.s.StopAll(ctx)
	order, _ := os.ReadFile(filepath.Join(f.dir, "order"))
	if strings.Fields(string(order))[0] != "app" || strings.Join(strings.Fields(string(order)), ",") != "app,db" {
		t.Errorf("stop order %q, want app before db", order)
	}
	for _, n := range []string{"db", "app"} {
		if st := f.status(n); st.State != Stopped {
			t.Errorf("%s: %+v", n, st)
		}
	}
}

func TestOneshotFailureBlocks(t *testing.T) {
	f := newFixture(t, header+`
daemons:
  app: {image: i, command: ["exec sleep 100"]}
oneshots:
  migrate: {image: i, command: ["echo migration broke >&2; exit 4"], before: [app]}
`)
	f.s.StartAll()
	st := f.waitFor(t, "migrate", "failed", state(Failed))
	if st.LastExit == nil || st.LastExit.Code != 4 {
		t.Errorf("migrate: %+v", st)
	}
	if app := f.status("app"); app.State != Waiting {
		t.Errorf("app: %+v", app)
	}
	lines := f.s.Log("migrate").Tail(0)
	if len(lines) != 1 || lines[0].Stream != "stderr" || lines[0].Text != "migration broke" {
		t.Errorf("migrate's log: %+v", lines)
	}
}

// TestLeftoversHoldingOutputDoNotStallRestart: a daemon whose shell leaves a background
// child holding its stdout exits; it is restarted all the same (its leftovers are killed
// first: its output ends only once they are gone).
func TestLeftoversHoldingOutputDoNotStallRestart(t *testing.T) {
	f := newFixture(t, header+`
daemons:
  app: {image: i, command: ["sleep 600 & sleep 0.2; exit 3"], restart: {backoff: 50ms..100ms}}
`)
	f.s.StartAll()
	st := f.waitFor(t, "app", "restarted", func(st Status) bool { return st.Restarts >= 1 })
	if st.LastExit == nil || st.LastExit.Code != 3 {
		t.Errorf("app's last exit: %+v, want code 3", st.LastExit)
	}
}

// A ready check's interval does not delay a start: the first check comes at once and the
// failing ones are retried quickly, so a daemon ready ~100 ms after it started is seen
// ready long before its 10 s interval; the trace has its steps in order.
func TestReadyCheckDoesNotWaitTheInterval(t *testing.T) {
	for _, tc := range []struct {
		name, delay string
		within      time.Duration
	}{
		{"ready at once", "0", 2 * time.Second},
		{"ready after 100ms", "0.1", 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, header+`
daemons:
  app:
    image: i
    command: ["sleep `+tc.delay+`; touch $DIR/up; exec sleep 100"]
    ready: {exec: ["test -f $DIR/up"], interval: 10s}
`)
			var tr starttrace.Trace
			f.s.Trace = &tr
			start := time.Now()
			f.s.StartAll()
			f.waitFor(t, "app", "ready", state(Ready))
			if took := time.Since(start); took > tc.within {
				t.Errorf("ready after %v, want within %v (the interval is 10s)", took, tc.within)
			}
			var names []string
			for _, m := range tr.Marks() {
				names = append(names, m.Name)
			}
			if want := []string{"app.deps", "app.prepare", "app.exec", "app.ready"}; !slices.Equal(names, want) {
				t.Errorf("trace %v, want %v", names, want)
			}
		})
	}
}

// TestSettled: the start is not over while a job waits or is starting (the caller's
// deadline ends the wait); it is once every job is ready.
func TestSettled(t *testing.T) {
	f := newFixture(t, header+dbUntilUpThenApp)
	f.s.StartAll()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := f.s.Settled(ctx); err == nil {
		t.Fatalf("settled while db is %s and app %s", f.status("db").State, f.status("app").State)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "up"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.s.Settled(ctx); err != nil {
		t.Fatalf("not settled once db is ready: db %s, app %s: %v", f.status("db").State, f.status("app").State, err)
	}
	for _, n := range []string{"db", "app"} {
		if st := f.status(n); st.State != Ready {
			t.Errorf("settled with %s %s", n, st.State)
		}
	}
}
