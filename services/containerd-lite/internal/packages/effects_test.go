package packages

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"hearth.dev/internal/errdefs"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	netv1 "hearth.dev/proto/hearth/net/v1"
	"hearth.dev/services/containerd-lite/internal/containers"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/store"
)

// checkErr says whether err is what a case wants: nil, or InvalidArgument naming param.
func checkErr(t *testing.T, what string, err error, param string) {
	t.Helper()
	switch {
	case param == "" && err != nil:
		t.Errorf("%s: %v, want ok", what, err)
	case param != "" && !errors.Is(err, errdefs.ErrInvalidArgument):
		t.Errorf("%s: %v, want InvalidArgument", what, err)
	case param != "" && !strings.HasPrefix(err.Error(), param+": "):
		t.Errorf("%s: %q does not start with the parameter %q", what, err, param)
	}
}

func TestCheckHealth(t *testing.T) {
	for _, tc := range []struct {
		req  *hostv1.SetHealthRequest
		fail string // the parameter named, or "" for ok
	}{
		{&hostv1.SetHealthRequest{Name: "db", Result: "passing"}, ""},
		{&hostv1.SetHealthRequest{Name: "db.sync_2-x", Result: "disabled", Message: "off\tby\nchoice"}, ""},
		{&hostv1.SetHealthRequest{Name: strings.Repeat("a", 64), Result: "starting", Message: strings.Repeat("é", 512)}, ""},
		{&hostv1.SetHealthRequest{Name: "", Result: "passing"}, "name"},
		{&hostv1.SetHealthRequest{Name: "DB", Result: "passing"}, "name"},
		{&hostv1.SetHealthRequest{Name: "a/b", Result: "passing"}, "name"},
		{&hostv1.SetHealthRequest{Name: strings.Repeat("a", 65), Result: "passing"}, "name"},
		{&hostv1.SetHealthRequest{Name: "db", Result: ""}, "result"},
		{&hostv1.SetHealthRequest{Name: "db", Result: "ok"}, "result"},
		{&hostv1.SetHealthRequest{Name: "db", Result: "Passing"}, "result"},
		{&hostv1.SetHealthRequest{Name: "db", Result: "failing", Message: strings.Repeat("x", 1025)}, "message"},
		{&hostv1.SetHealthRequest{Name: "db", Result: "failing", Message: "bell\a"}, "message"},
		{&hostv1.SetHealthRequest{Name: "db", Result: "failing", Message: "\xff\xfe"}, "message"},
	} {
		checkErr(t, "CheckHealth("+tc.req.String()+")", CheckHealth(tc.req), tc.fail)
	}
}

func TestCheckProgress(t *testing.T) {
	for _, tc := range []struct {
		req  *hostv1.SetProgressRequest
		fail string
	}{
		{&hostv1.SetProgressRequest{Phase: "migration", Done: 3, Total: 10, Message: "copying rows"}, ""},
		{&hostv1.SetProgressRequest{Phase: "install", Done: 10, Total: 10}, ""},
		{&hostv1.SetProgressRequest{Phase: "reindex", Done: 12345}, ""}, // total not known
		{&hostv1.SetProgressRequest{Phase: "", Done: 1, Total: 2}, "phase"},
		{&hostv1.SetProgressRequest{Phase: "Migration"}, "phase"},
		{&hostv1.SetProgressRequest{Phase: "migration", Done: 11, Total: 10}, "done"},
		{&hostv1.SetProgressRequest{Phase: "migration", Message: strings.Repeat("x", 1025)}, "message"},
		{&hostv1.SetProgressRequest{Phase: "migration", Message: "esc \x1b[2J"}, "message"},
	} {
		checkErr(t, "CheckProgress("+tc.req.String()+")", CheckProgress(tc.req), tc.fail)
	}
}

func TestCheckNotify(t *testing.T) {
	for _, tc := range []struct {
		req  *hostv1.NotifyRequest
		fail string
	}{
		{&hostv1.NotifyRequest{Title: "Backup done"}, ""}, // level defaults to info
		{&hostv1.NotifyRequest{Level: "warning", Title: "Disk nearly full", Message: "90% used\nclean up"}, ""},
		{&hostv1.NotifyRequest{Level: "error", Title: strings.Repeat("t", 200), Message: strings.Repeat("m", 4096)}, ""},
		{&hostv1.NotifyRequest{Level: "fatal", Title: "x"}, "level"},
		{&hostv1.NotifyRequest{Level: "info", Title: ""}, "title"},
		{&hostv1.NotifyRequest{Level: "info", Title: "   "}, "title"},
		{&hostv1.NotifyRequest{Level: "info", Title: strings.Repeat("t", 201)}, "title"},
		{&hostv1.NotifyRequest{Level: "info", Title: "two\nlines"}, "title"},
		{&hostv1.NotifyRequest{Level: "info", Title: "x", Message: strings.Repeat("m", 4097)}, "message"},
		{&hostv1.NotifyRequest{Level: "info", Title: "x", Message: "nul\x00"}, "message"},
	} {
		checkErr(t, "CheckNotify("+tc.req.String()+")", CheckNotify(tc.req), tc.fail)
	}
}

func TestCheckDataVersion(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"1", true},
		{"2024-05-01 schema 7", true},
		{strings.Repeat("9", 64), true},
		{"", false},
		{strings.Repeat("9", 65), false},
		{"1\n", false},
		{"vé", false},
		{"\x7f", false},
	} {
		fail := "version"
		if tc.ok {
			fail = ""
		}
		checkErr(t, "CheckDataVersion("+tc.v+")", CheckDataVersion(tc.v), fail)
	}
}

func TestProgressLine(t *testing.T) {
	for _, tc := range []struct {
		phase       string
		done, total uint64
		msg, want   string
	}{
		{"migration", 3, 10, "copying", "migration 3/10: copying"},
		{"reindex", 7, 0, "", "reindex 7"},
		{"install", 0, 0, "fetching", "install: fetching"},
	} {
		if got := ProgressLine(tc.phase, tc.done, tc.total, tc.msg); got != tc.want {
			t.Errorf("ProgressLine(%q, %d, %d, %q) = %q, want %q", tc.phase, tc.done, tc.total, tc.msg, got, tc.want)
		}
	}
}

const twoInterfaces = `
id: app
version: 1.0.0
images:
  bb: {ref: "bb"}
daemons:
  web: {image: bb, command: [/bin/true]}
interfaces:
  web: {daemon: web, port: 8080, protocol: http, expose: [lan]}
  rpc: {daemon: web, port: 9000, protocol: tcp}
`

// TestOwnInterface: the caller names its own interfaces ("web" or "app/web"); another
// package's is PermissionDenied, one it does not declare NotFound.
func TestOwnInterface(t *testing.T) {
	e := &Effects{}
	p := store.Package{ID: "app", Manifest: []byte(twoInterfaces)}
	for _, tc := range []struct {
		name, want string
		err        error
	}{
		{"web", "web", nil},
		{"app/rpc", "rpc", nil},
		{"other/web", "", errdefs.ErrPermissionDenied},
		{"app2/web", "", errdefs.ErrPermissionDenied},
		{"db", "", errdefs.ErrNotFound},
		{"app/db", "", errdefs.ErrNotFound},
		{"", "", errdefs.ErrInvalidArgument},
	} {
		got, _, err := e.ownInterface(p, tc.name)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("ownInterface(%q) = %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// TestHolds: the names a package may have certificates for.
func TestHolds(t *testing.T) {
	e := &Effects{o: EffectsOptions{InternalDomain: "hearth.internal"}}
	own := []*netv1.Binding{
		{Container: "app", Exposure: netv1.Exposure_EXPOSURE_LAN, Name: "app-2.local"},
		{Container: "app", Exposure: netv1.Exposure_EXPOSURE_DOMAIN, Domain: "app.example.org"},
		{Container: "app", Exposure: netv1.Exposure_EXPOSURE_TOR, Address: "abc.onion:80"},
	}
	for _, tc := range []struct {
		name       string
		kind       string
		held, want bool
	}{
		{"app.local", "local", false, true},
		{"www.app.local", "local", false, true},
		{"*.app.local", "local", false, true},
		{"app.hearth.internal", "local", false, true},
		{"app-2.local", "local", true, true},
		{"app.example.org", "acme", true, true},
		{"other.local", "", false, false},
		{"xapp.local", "", false, false},
		{"app.local.evil.com", "", false, false},
		{"www.app.example.org", "", false, false},
		{"other.hearth.internal", "", false, false},
		{"abc.onion", "", false, false},
		{"app-2.hearth.internal", "", false, false},
	} {
		kind, held, ok := e.holds("app", own, tc.name)
		if kind != tc.kind || held != tc.held || ok != tc.want {
			t.Errorf("holds(%q) = %q, %v, %v; want %q, %v, %v", tc.name, kind, held, ok, tc.kind, tc.held, tc.want)
		}
	}
}

func TestDomainOf(t *testing.T) {
	others := []*netv1.Binding{{Container: "other", Exposure: netv1.Exposure_EXPOSURE_DOMAIN, Domain: "taken.example.org"}}
	if d, err := domainOf(" Mine.Example.org. ", others); d != "mine.example.org" || err != nil {
		t.Errorf("domainOf(mine) = %q, %v", d, err)
	}
	if _, err := domainOf("TAKEN.example.org", others); !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), "other") {
		t.Errorf("domainOf(taken) = %v, want PermissionDenied naming the other package", err)
	}
}

// fakeContainers answers Get from a map (a missing name is not found); the rest of
// Containers is not used by these tests.
type fakeContainers struct {
	Containers
	infos map[string]containers.Info
}

func (f *fakeContainers) Get(_ context.Context, name string) (containers.Info, error) {
	i, ok := f.infos[name]
	if !ok {
		return i, fmt.Errorf("container %q: %w", name, errdefs.ErrNotFound)
	}
	return i, nil
}

// fakeRecords has no packages and no journal.
type fakeRecords struct{ Records }

func (fakeRecords) GetPackage(id string) (store.Package, error) {
	return store.Package{}, fmt.Errorf("package %q: %w", id, errdefs.ErrNotFound)
}
func (fakeRecords) GetJournal(id string) (store.Journal, error) {
	return store.Journal{}, fmt.Errorf("operation on %q: %w", id, errdefs.ErrNotFound)
}

// TestLiveState: health results and progress last as long as their container: a new
// container of the same name starts without them; they are bounded; done = total ends
// a phase; status.get of a bare container works and asks for its waits.
func TestLiveState(t *testing.T) {
	created := time.Now()
	fc := &fakeContainers{infos: map[string]containers.Info{"a": {Container: store.Container{Name: "a", CreatedAt: created}, State: lxcrt.Stopped}}}
	m := &Manager{opts: Options{Containers: fc, Records: fakeRecords{}}, log: slog.Default()}
	var asked []string
	e := m.Effects(EffectsOptions{WaitingFor: func(_ context.Context, pkg string) []*hostv1.Wait {
		asked = append(asked, pkg)
		return nil
	}})
	ctx := context.Background()
	set := func(name string) error {
		_, err := e.SetHealth(ctx, "a", &hostv1.SetHealthRequest{Name: name, Result: "passing"})
		return err
	}
	for i := range MaxHealthResults {
		if err := set(fmt.Sprint("h", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := set("one-more"); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("health result %d: %v, want ResourceExhausted", MaxHealthResults+1, err)
	}
	if err := set("h0"); err != nil {
		t.Errorf("setting a name again at the limit: %v", err)
	}
	for _, p := range []*hostv1.SetProgressRequest{{Phase: "x", Done: 1, Total: 4}, {Phase: "y", Done: 2}, {Phase: "x", Done: 4, Total: 4}} {
		if _, err := e.SetProgress(ctx, "a", p); err != nil {
			t.Fatal(err)
		}
	}
	st, err := e.GetStatus(ctx, "a", &hostv1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.GetHealth()) != MaxHealthResults || len(st.GetProgress()) != 1 || st.GetProgress()[0].GetPhase() != "y" || st.GetState() != "created" {
		t.Errorf("status: %d health results, progress %v, state %q", len(st.GetHealth()), st.GetProgress(), st.GetState())
	}
	if len(asked) != 0 {
		t.Errorf("asked what %v waits for: a bare container that runs nothing has no package", asked)
	}
	// Another container of the same name: nothing of the old one's.
	fc.infos["a"] = containers.Info{Container: store.Container{Name: "a", CreatedAt: created.Add(time.Second)}, State: lxcrt.Stopped}
	if st, _ := e.GetStatus(ctx, "a", &hostv1.GetStatusRequest{}); len(st.GetHealth())+len(st.GetProgress()) != 0 {
		t.Errorf("a new container shows the old one's: %v", st)
	}
	// A deleted container: not found, and nothing kept.
	delete(fc.infos, "a")
	if _, err := e.SetHealth(ctx, "a", &hostv1.SetHealthRequest{Name: "x", Result: "passing"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("health.set of a deleted container: %v", err)
	}
	if len(e.live) != 0 {
		t.Errorf("kept state of %d containers, want none", len(e.live))
	}
	// Effects that need a package say so.
	fc.infos["a"] = containers.Info{Container: store.Container{Name: "a", CreatedAt: created}, State: lxcrt.Stopped}
	if _, err := e.SetDataVersion(ctx, "a", &hostv1.SetDataVersionRequest{Version: "1"}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("data_version.set in a bare container: %v, want FailedPrecondition", err)
	}
}
