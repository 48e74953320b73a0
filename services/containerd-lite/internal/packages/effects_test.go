package packages

import (
	"errors"
	"strings"
	"testing"

	"hearth.dev/internal/errdefs"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	netv1 "hearth.dev/proto/hearth/net/v1"
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
