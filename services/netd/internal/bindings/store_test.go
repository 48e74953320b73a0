package bindings

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hearth.dev/internal/errdefs"
)

func web(e Exposure) Request {
	return Request{Container: "hello-pg", Interface: "web", Port: 8080, HTTP: true, Exposure: e}
}

func TestRequestsRefused(t *testing.T) {
	s, err := Open(t.TempDir(), PortRange{30000, 30001})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  Request
		kind error
		says string
	}{
		{"no container", Request{Interface: "web", Port: 80, HTTP: true, Exposure: LAN}, errdefs.ErrInvalidArgument, `container ""`},
		{"bad interface", Request{Container: "a", Interface: "../x", Port: 80, Exposure: LAN}, errdefs.ErrInvalidArgument, `interface "../x"`},
		{"port 0", Request{Container: "a", Interface: "web", Exposure: LAN}, errdefs.ErrInvalidArgument, "port 0"},
		{"port 70000", Request{Container: "a", Interface: "web", Port: 70000, Exposure: LAN}, errdefs.ErrInvalidArgument, "port 70000"},
		{"no exposure", Request{Container: "a", Interface: "web", Port: 80}, errdefs.ErrInvalidArgument, "give lan, domain or tor"},
		{"domain on lan", Request{Container: "a", Interface: "web", Port: 80, Exposure: LAN, Domain: "example.org"}, errdefs.ErrInvalidArgument, "takes no domain"},
		{"empty domain", Request{Container: "a", Interface: "web", Port: 80, HTTP: true, Exposure: Domain}, errdefs.ErrInvalidArgument, "is empty"},
		{"address", Request{Container: "a", Interface: "web", Port: 80, HTTP: true, Exposure: Domain, Domain: "192.168.1.2"}, errdefs.ErrInvalidArgument, "ends in a number"},
		{"one label", Request{Container: "a", Interface: "web", Port: 80, HTTP: true, Exposure: Domain, Domain: "intranet"}, errdefs.ErrInvalidArgument, "single label"},
		{"wildcard", Request{Container: "a", Interface: "web", Port: 80, HTTP: true, Exposure: Domain, Domain: "*.example.org"}, errdefs.ErrInvalidArgument, "wildcard"},
		{"bad label", Request{Container: "a", Interface: "web", Port: 80, HTTP: true, Exposure: Domain, Domain: "exa mple.org"}, errdefs.ErrInvalidArgument, `label "exa mple"`},
		{"dash label", Request{Container: "a", Interface: "web", Port: 80, HTTP: true, Exposure: Domain, Domain: "-x.example.org"}, errdefs.ErrInvalidArgument, `label "-x"`},
		{"local", Request{Container: "a", Interface: "web", Port: 80, HTTP: true, Exposure: Domain, Domain: "nas.local"}, errdefs.ErrInvalidArgument, "under .local"},
		{"onion", Request{Container: "a", Interface: "web", Port: 80, HTTP: true, Exposure: Domain, Domain: "abc.onion"}, errdefs.ErrInvalidArgument, "under .onion"},
		{"tcp domain", Request{Container: "a", Interface: "db", Port: 5432, Exposure: Domain, Domain: "db.example.org"}, errdefs.ErrInvalidArgument, "plain TCP"},
		{"tcp passthrough", Request{Container: "a", Interface: "db", Port: 5432, Exposure: LAN, Passthrough: true}, errdefs.ErrInvalidArgument, "passthrough"},
		{"tor passthrough", Request{Container: "a", Interface: "web", Port: 80, HTTP: true, Exposure: Tor, Passthrough: true}, errdefs.ErrInvalidArgument, "passthrough"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.Create(tc.req)
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Create(%+v) = %v; want %v saying %q", tc.req, err, tc.kind, tc.says)
			}
			if n := len(s.List("")); n != 0 {
				t.Fatalf("a refused request left %d bindings", n)
			}
		})
	}
	if _, err := os.Stat(s.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused requests wrote the file: %v", err)
	}
}

func TestCreateListDeletePersist(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, PortRange{30000, 30001})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate := func(r Request) Binding {
		t.Helper()
		b, created, err := s.Create(r)
		if err != nil || !created {
			t.Fatalf("Create(%+v) = %+v, %v, %v", r, b, created, err)
		}
		return b
	}
	lan := mustCreate(web(LAN))
	if lan.ID != "hello-pg/web/lan" || lan.LANName != "hello-pg" || lan.HostPort != 0 {
		t.Errorf("LAN HTTP binding %+v: want id hello-pg/web/lan, name hello-pg, no host port", lan)
	}
	// The same request again changes nothing.
	if b, created, err := s.Create(web(LAN)); err != nil || created || b != lan {
		t.Errorf("second Create = %+v, %v, %v; want the same binding, not created", b, created, err)
	}
	// A second HTTP interface of the package gets a name of its own.
	admin := mustCreate(Request{Container: "hello-pg", Interface: "admin_ui", Port: 9000, HTTP: true, Exposure: LAN})
	if admin.LANName != "admin-ui-hello-pg" {
		t.Errorf("second HTTP interface's name = %q, want admin-ui-hello-pg", admin.LANName)
	}
	// Plain TCP gets host ports in order, and the range runs out.
	db := mustCreate(Request{Container: "hello-pg", Interface: "db", Port: 5432, Exposure: LAN})
	mq := mustCreate(Request{Container: "mq", Interface: "amqp", Port: 5672, Exposure: LAN})
	if db.HostPort != 30000 || mq.HostPort != 30001 || db.LANName != "hello-pg" {
		t.Errorf("host ports %d, %d (name %q); want 30000, 30001 (hello-pg)", db.HostPort, mq.HostPort, db.LANName)
	}
	if _, _, err := s.Create(Request{Container: "x", Interface: "smtp", Port: 25, Exposure: LAN}); !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "--host-ports") {
		t.Errorf("full range: %v", err)
	}
	// A port change keeps the host port.
	db2, created, err := s.Create(Request{Container: "hello-pg", Interface: "db", Port: 6432, Exposure: LAN})
	if err != nil || !created || db2.HostPort != 30000 || db2.Port != 6432 {
		t.Errorf("port change: %+v, %v, %v; want port 6432 on host port 30000", db2, created, err)
	}
	dom := mustCreate(Request{Container: "hello-pg", Interface: "web", Port: 8080, HTTP: true, Exposure: Domain, Domain: "Cloud.Example.ORG."})
	if dom.ID != "hello-pg/web/cloud.example.org" || dom.Domain != "cloud.example.org" {
		t.Errorf("domain binding %+v", dom)
	}
	if _, _, err := s.Create(Request{Container: "other", Interface: "web", Port: 80, HTTP: true, Exposure: Domain, Domain: "cloud.example.org"}); !errors.Is(err, errdefs.ErrAlreadyExists) || !strings.Contains(err.Error(), "hello-pg/web") {
		t.Errorf("second binding of a domain: %v", err)
	}

	// All of it is there after a restart.
	s2, err := Open(dir, PortRange{30000, 30001})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(s2.List("")), ids(s.List("")); got != want {
		t.Errorf("after reopening: %s, want %s", got, want)
	}
	if got := ids(s2.List("mq")); got != "mq/amqp/lan" {
		t.Errorf("List(mq) = %s", got)
	}
	if info, err := os.Stat(filepath.Join(dir, "bindings.json")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("bindings.json: %v, %v; want mode 0600", info, err)
	}

	if _, err := s2.Delete("nope/web/lan", ""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Delete of no binding: %v", err)
	}
	gone, err := s2.Delete("", "hello-pg")
	if err != nil || ids(gone) != "hello-pg/admin_ui/lan hello-pg/db/lan hello-pg/web/cloud.example.org hello-pg/web/lan" {
		t.Errorf("Delete(hello-pg) = %s, %v", ids(gone), err)
	}
	// Its host port is free again.
	if b, _, err := s2.Create(Request{Container: "x", Interface: "smtp", Port: 25, Exposure: LAN}); err != nil || b.HostPort != 30000 {
		t.Errorf("after the delete: %+v, %v; want host port 30000", b, err)
	}
}

func TestCorruptFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bindings.json"), []byte("[{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, DefaultPorts); err == nil || !strings.Contains(err.Error(), "bindings.json") {
		t.Errorf("Open of a corrupt file: %v; want an error naming it", err)
	}
}

func TestParsePortRange(t *testing.T) {
	for in, ok := range map[string]bool{"30000-32767": true, "1-1": true, "0-10": false, "10-5": false, "1-70000": false, "30000": false, "a-b": false, "30000-32767x": false} {
		_, err := ParsePortRange(in)
		if (err == nil) != ok {
			t.Errorf("ParsePortRange(%q) = %v", in, err)
		}
	}
}

func FuzzNormalizeDomain(f *testing.F) {
	for _, s := range []string{"example.org", "A.B.C.", "*.x.org", "1.2.3.4", "x..org", "xn--bcher-kva.example", strings.Repeat("a.", 130) + "org"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := NormalizeDomain(s)
		if err != nil {
			return
		}
		if len(d) > 253 || strings.ToLower(d) != d || strings.HasSuffix(d, ".") || strings.Contains(d, "*") || !strings.Contains(d, ".") {
			t.Fatalf("NormalizeDomain(%q) = %q", s, d)
		}
		if again, err := NormalizeDomain(d); err != nil || again != d {
			t.Fatalf("not idempotent: %q → %q → %q, %v", s, d, again, err)
		}
	})
}

func ids(list []Binding) string {
	var out []string
	for _, b := range list {
		out = append(out, b.ID)
	}
	return strings.Join(out, " ")
}
