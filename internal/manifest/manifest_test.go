package manifest

import (
	"strings"
	"testing"
	"time"
)

const helloPG = `
id: hello-pg
version: 1.1.0
images:
  db:  {oci: images/postgres.tar}
  app: {ref: app:1}
volumes: [pgdata, appdata]
limits: {memory: 512Mi, cpus: 1.5, pids: 512, disk: 2Gi}
daemons:
  db:
    image: db
    command: [/usr/lib/postgresql/15/bin/postgres, -D, /var/lib/postgresql/data]
    user: postgres
    mounts: [{volume: pgdata, path: /var/lib/postgresql/data}]
    ready: {tcp: 5432}
  app:
    image: app
    command: [/app/server]
    env: {DATABASE_URL: "postgres://app@127.0.0.1:5432/app"}
    requires: [db]
    ready: {http: {port: 8080, path: /healthz}, interval: 500ms, grace: 10s}
    restart: {policy: always, backoff: 1s..30s}
    stop: {signal: SIGTERM, timeout: 30s}
oneshots:
  migrate: {image: app, command: [/app/migrate], requires: [db], before: [app]}
interfaces:
  web: {daemon: app, port: 8080, protocol: http, expose: [lan, tor, domain]}
actions:
  reset-admin: {image: app, command: [/app/reset-admin], input: {password: {type: secret, min: 12}}}
`

func TestParseHelloPG(t *testing.T) {
	m, err := Parse([]byte(helloPG))
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "hello-pg" || m.Daemons["db"].Ready.TCP != 5432 || m.Limits.Memory != "512Mi" || m.Limits.Disk != "2Gi" {
		t.Fatalf("parsed %+v", m)
	}
	app := m.Daemons["app"]
	if app.Ready.Interval.D(0) != 500*time.Millisecond || app.Stop.Timeout.D(0) != 30*time.Second || app.Ready.Grace.D(0) != 10*time.Second {
		t.Errorf("durations: %+v %+v", app.Ready, app.Stop)
	}
	order := strings.Join(m.Order(), ",")
	if order != "db,migrate,app" {
		t.Errorf("order %s, want db,migrate,app", order)
	}
	deps := m.Deps()
	if strings.Join(deps["app"], ",") != "db,migrate" {
		t.Errorf("app waits for %v", deps["app"])
	}
}

func TestParseRefuses(t *testing.T) {
	base := func(daemons string) string {
		return "id: p\nversion: 1\nimages: {a: {ref: x}}\nvolumes: [v]\ndaemons:\n" + daemons
	}
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown field", base("  d: {image: a, comand: [x]}"), "field comand not found"},
		{"unknown top field", "id: p\nversion: 1\nimages: {a: {ref: x}}\ndaemons: {d: {image: a}}\nextra: 1", "field extra not found"},
		{"unknown image", base("  d: {image: b}"), "daemons.d.image: unknown image \"b\""},
		{"unknown requires", base("  d: {image: a, requires: [e]}"), "daemons.d.requires[0]: unknown daemon or oneshot \"e\""},
		{"cycle", base("  a1: {image: a, requires: [b1]}\n  b1: {image: a, requires: [c1]}\n  c1: {image: a, requires: [a1]}"), "cycle: a1 → b1 → c1 → a1"},
		{"self", base("  d: {image: a, requires: [d]}"), "requires itself"},
		{"same port", base("  d: {image: a, ready: {tcp: 80}}\n  e: {image: a, ports: [80]}"), "port 80 is also used by daemon \"d\""},
		{"bad port", base("  d: {image: a, ready: {tcp: 70000}}"), "daemons.d.ready.tcp: 70000 is not a port"},
		{"two checks", base("  d: {image: a, ready: {tcp: 80, exec: [true]}}"), "give exactly one of tcp, http or exec"},
		{"unknown volume", base("  d: {image: a, mounts: [{volume: w, path: /x}]}"), "daemons.d.mounts[0].volume: unknown volume \"w\""},
		{"relative mount", base("  d: {image: a, mounts: [{volume: v, path: x}]}"), "daemons.d.mounts[0].path"},
		{"dotdot mount", base("  d: {image: a, mounts: [{volume: v, path: /a/../b}]}"), "without '..'"},
		{"absolute mount file", base("  d: {image: a, mounts: [{volume: v, file: /etc/x, path: /x}]}"), "daemons.d.mounts[0].file: \"/etc/x\""},
		{"dotdot mount file", base("  d: {image: a, mounts: [{volume: v, file: a/../../x, path: /x}]}"), "daemons.d.mounts[0].file"},
		{"dot mount file", base("  d: {image: a, mounts: [{volume: v, file: ., path: /x}]}"), "daemons.d.mounts[0].file"},
		{"bad policy", base("  d: {image: a, restart: {policy: sometimes}}"), "daemons.d.restart.policy: \"sometimes\""},
		{"bad backoff", base("  d: {image: a, restart: {backoff: 30s..1s}}"), "daemons.d.restart.backoff"},
		{"bad signal", base("  d: {image: a, stop: {signal: SIGFOO}}"), "daemons.d.stop.signal"},
		{"bad duration", base("  d: {image: a, stop: {timeout: soon}}"), "duration \"soon\""},
		{"no daemons", "id: p\nversion: 1\nimages: {a: {ref: x}}", "daemons: none"},
		{"bad id", "id: Bad_Id\nversion: 1\nimages: {a: {ref: x}}\ndaemons: {d: {image: a}}", "id: \"Bad_Id\""},
		{"oneshot ready", base("  d: {image: a}\noneshots:\n  o: {image: a, ready: {tcp: 1}}"), "oneshots.o.ready"},
		{"daemon before", base("  d: {image: a, before: [d]}"), "only oneshots take before"},
		{"name clash", base("  d: {image: a}\noneshots:\n  d: {image: a}"), "also used under daemons"},
		{"interface daemon", base("  d: {image: a}\ninterfaces: {w: {daemon: x, port: 80}}"), "interfaces.w.daemon: unknown daemon \"x\""},
		{"image both", "id: p\nversion: 1\nimages: {a: {ref: x, oci: y}}\ndaemons: {d: {image: a}}", "give oci or ref, not both"},
		{"oci escape", "id: p\nversion: 1\nimages: {a: {oci: ../x}}\ndaemons: {d: {image: a}}", "relative path inside the package"},
		{"memory", "id: p\nversion: 1\nimages: {a: {ref: x}}\nlimits: {memory: lots}\ndaemons: {d: {image: a}}", "limits.memory"},
		{"disk unit", "id: p\nversion: 1\nimages: {a: {ref: x}}\nlimits: {disk: plenty}\ndaemons: {d: {image: a}}", "limits.disk"},
		{"disk too small", "id: p\nversion: 1\nimages: {a: {ref: x}}\nlimits: {disk: 1Mi}\ndaemons: {d: {image: a}}", "limits.disk: 1Mi is below 32Mi"},
		{"not yaml", "{{{", "manifest.yaml:1: did not find expected node content"},
		{"version not semantic", "id: p\nversion: 1.0\nimages: {a: {ref: x}}\ndaemons: {d: {image: a}}", "version: version \"1.0\": write MAJOR.MINOR.PATCH"},
		{"hook image", base("  d: {image: a}\nhooks: {migrate: {image: zz, command: [x]}}"), "hooks.migrate.image: unknown image \"zz\""},
		{"hook command", base("  d: {image: a}\nhooks: {install: {image: a}}"), "hooks.install.command: missing"},
		{"hook volume", base("  d: {image: a}\nhooks: {backup: {image: a, command: [x], mounts: [{volume: nope, path: /b}]}}"), "hooks.backup.mounts[0]"},
		{"hook unknown", base("  d: {image: a}\nhooks: {upgrade: {image: a, command: [x]}}"), "upgrade"},
		{"hook job name", base("  d: {image: a}\noneshots:\n  hook-x: {image: a}"), "the hooks' own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse: %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseHooks(t *testing.T) {
	m, err := Parse([]byte(`id: p
version: 2.0.0-rc.1
allow_downgrade: true
images: {a: {ref: x}}
volumes: [data]
daemons: {d: {image: a}}
hooks:
  install: {image: a, command: [/setup]}
  migrate: {image: a, command: [/migrate], env: {X: "1"}, mounts: [{volume: data, path: /data}], timeout: 1m}
  backup: {image: a, command: [/bin/sh, -c, dump]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if !m.AllowDowngrade || m.Hooks.Named(HookMigrate).Timeout.D(0) != time.Minute || m.Hooks.Named("nope") != nil {
		t.Fatalf("hooks: %+v", m.Hooks)
	}
	j := m.Hooks.Migrate.Job()
	if j.Image != "a" || j.Restart.Policy != "never" || len(j.Mounts) != 1 || j.Env["X"] != "1" {
		t.Fatalf("migrate as a job: %+v", j)
	}
}

func TestParsePlacesProblems(t *testing.T) {
	const text = `id: p
version: 1.0.0
images:
  a: {ref: x}
  my.img: {oci: images/a.tar, ref: y}
volumes: [v]
daemons:
  app:
    image: nope
    mounts:
      - {volume: v, path: /ok}
      - {volume: w, path: relative}
    stop: {timeout: soon}
`
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"fields", strings.Replace(text, "    stop: {timeout: soon}\n", "", 1), []string{
			"m.yaml:5:3: images.my.img: give oci or ref, not both",
			"m.yaml:9:12: daemons.app.image: unknown image \"nope\"",
			"m.yaml:12:18: daemons.app.mounts[1].volume: unknown volume \"w\"",
			"m.yaml:12:27: daemons.app.mounts[1].path: \"relative\"",
		}},
		{"unknown field", text + "    comand: [x]\n", []string{"m.yaml:14: field comand not found in Daemon"}},
		{"duration", text, []string{"m.yaml:13:21: duration \"soon\""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFile("m.yaml", []byte(tc.text))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
	// One problem reads as one line, with its place first.
	_, err := Parse([]byte("id: p\nversion: 1.0.0\nimages: {a: {ref: x}}\ndaemons:\n  d: {image: b}\n"))
	if err == nil || err.Error() != `manifest.yaml:5:14: daemons.d.image: unknown image "b" (declare it under images)` {
		t.Errorf("one problem: %v", err)
	}
	// A problem of a field the file does not have keeps its field name alone.
	_, err = Parse([]byte("id: p\nversion: 1.0.0\nimages: {a: {ref: x}}\n"))
	if err == nil || err.Error() != "manifest: daemons: none: a package runs at least one daemon" {
		t.Errorf("missing field: %v", err)
	}
	if l, c := Position([]byte(text), "daemons.app.mounts[0].path"); l != 11 || c != 27 {
		t.Errorf("Position = %d:%d, want 11:27", l, c)
	}
}

func TestParseSignalAndBackoff(t *testing.T) {
	if s, err := ParseSignal("term"); err != nil || s.String() != "terminated" {
		t.Errorf("ParseSignal(term) = %v %v", s, err)
	}
	if lo, hi, err := ParseBackoff("100ms..2s"); err != nil || lo != 100*time.Millisecond || hi != 2*time.Second {
		t.Errorf("ParseBackoff = %v %v %v", lo, hi, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(helloPG))
	f.Add([]byte("id: p\nversion: 1.0.0\nimages: {a: {ref: x}}\ndaemons: {d: {image: a, requires: [d]}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		// A valid manifest has an order covering every job, each after what it waits for.
		seen := map[string]bool{}
		for _, n := range m.Order() {
			for _, d := range m.Deps()[n] {
				if !seen[d] {
					t.Fatalf("%s ordered before its dependency %s", n, d)
				}
			}
			seen[n] = true
		}
		if len(seen) != len(m.Daemons)+len(m.Oneshots) {
			t.Fatalf("order covers %d of %d jobs", len(seen), len(m.Daemons)+len(m.Oneshots))
		}
	})
}

func TestBundleWithHooks(t *testing.T) {
	m, err := Parse([]byte(`id: p
version: 1.0.0
images: {a: {ref: x}}
daemons: {db: {image: a}, app: {image: a, requires: [db]}}
oneshots: {init: {image: a, before: [db]}}
hooks:
  install: {image: a, command: [/setup]}
  migrate: {image: a, command: [/migrate], env: {X: "1"}, requires: [db], before: [app]}
`))
	if err != nil {
		t.Fatal(err)
	}
	b := &Bundle{Manifest: m, Run: []HookRun{{Name: HookInstall}, {Name: HookMigrate, Env: map[string]string{"HEARTH_TO_VERSION": "1.0.0"}}}}
	got, err := b.WithHooks()
	if err != nil {
		t.Fatal(err)
	}
	in, mg := got.Oneshots["hook-install"], got.Oneshots["hook-migrate"]
	if in == nil || mg == nil || got.Oneshots["init"] == nil || len(m.Oneshots) != 1 {
		t.Fatalf("oneshots %v (the manifest's own: %v)", got.Oneshots, m.Oneshots)
	}
	if strings.Join(in.Before, ",") != "app,db" {
		t.Errorf("install hook before %v, want every daemon", in.Before)
	}
	if strings.Join(mg.Requires, ",") != "db" || strings.Join(mg.Before, ",") != "app" || mg.Env["X"] != "1" || mg.Env["HEARTH_TO_VERSION"] != "1.0.0" {
		t.Errorf("migrate hook: %+v", mg)
	}
	// The order puts each hook where it belongs.
	order := strings.Join(got.Order(), ",")
	if strings.Index(order, "hook-install") > strings.Index(order, "db") || strings.Index(order, "hook-migrate") < strings.Index(order, "db") || strings.Index(order, "hook-migrate") > strings.Index(order, "app") {
		t.Errorf("order %s", order)
	}
	if _, err := (&Bundle{Manifest: m, Run: []HookRun{{Name: HookBackup}}}).WithHooks(); err == nil {
		t.Error("the backup hook was accepted to run at a start")
	}
}
