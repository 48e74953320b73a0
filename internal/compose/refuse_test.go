package compose

import (
	"errors"

	"hearth.dev/internal/manifest"
	"slices"
	"strings"
	"testing"
	"time"
)

func convert(t *testing.T, src string, env map[string]string) (*Result, error) {
	t.Helper()
	return Convert([]byte(src), Options{File: "compose.yaml", Dir: "testdata", Env: env, ID: "t"})
}

// TestRefusals: each shape that cannot map is refused, naming the file, line, column,
// service and key.
func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string // each must appear in one problem
	}{
		{"host network", "services:\n  a:\n    image: x\n    network_mode: host\n", []string{"compose.yaml:4:19: services.a.network_mode: cannot map: host networking"}},
		{"privileged", "services:\n  a:\n    image: x\n    privileged: true\n", []string{"compose.yaml:4:5: services.a.privileged"}},
		{"devices", "services:\n  a:\n    image: x\n    devices: [/dev/sda]\n", []string{"compose.yaml:4:5: services.a.devices"}},
		{"cap_add", "services:\n  a:\n    image: x\n    cap_add: [SYS_ADMIN]\n", []string{"services.a.cap_add: cannot map"}},
		{"build only", "services:\n  app:\n    build: ./app\n", []string{"compose.yaml:3:5: services.app.build: cannot map"}},
		{"no image", "services:\n  app:\n    command: [x]\n", []string{"services.app: no image"}},
		{"host bind", "services:\n  a:\n    image: x\n    volumes: [/srv/data:/data]\n", []string{"compose.yaml:4:15: services.a.volumes[0]: cannot map: the bind of the host's /srv/data"}},
		{"docker socket", "services:\n  a:\n    image: x\n    volumes:\n      - type: bind\n        source: /var/run/docker.sock\n        target: /var/run/docker.sock\n", []string{"services.a.volumes[0]: cannot map: the bind of the host's /var/run/docker.sock"}},
		{"home bind", "services:\n  a:\n    image: x\n    volumes: [\"~/x:/x\"]\n", []string{"services.a.volumes[0]: cannot map"}},
		{"undeclared volume", "services:\n  a:\n    image: x\n    volumes: [data:/data]\n", []string{`services.a.volumes[0]: volume "data" is not declared`}},
		{"same port", "services:\n  a:\n    image: x\n    ports: [\"80:80\"]\n  b:\n    image: y\n    ports: [\"8080:80\"]\n",
			[]string{`compose.yaml:7:13: services.b.ports: port 80 is also used by service "a" (compose.yaml:4:13)`}},
		{"same port by expose", "services:\n  a:\n    image: x\n    expose: [\"5432\"]\n  b:\n    image: y\n    ports: [\"5432:5432\"]\n", []string{`port 5432 is also used by service "a"`}},
		{"udp", "services:\n  a:\n    image: x\n    ports: [\"53:53/udp\"]\n", []string{"services.a.ports[0]: udp: a package offers TCP ports only"}},
		{"port range", "services:\n  a:\n    image: x\n    ports: [\"8000-8010:8000-8010\"]\n", []string{"services.a.ports[0]", "port ranges are not supported"}},
		{"unknown service key", "services:\n  a:\n    image: x\n    imagee: y\n", []string{"compose.yaml:4:5: services.a.imagee: unknown key of a service"}},
		{"unknown top key", "servics: {}\nservices:\n  a: {image: x}\n", []string{"compose.yaml:1:1: servics: unknown key"}},
		{"secrets", "services:\n  a:\n    image: x\n    secrets: [pw]\nsecrets:\n  pw: {file: ./pw}\n", []string{"services.a.secrets: cannot map", "compose.yaml:5:1: secrets: not supported"}},
		{"unknown dependency", "services:\n  a:\n    image: x\n    depends_on: [b]\n", []string{`compose.yaml:4:18: services.a.depends_on.b: unknown service "b"`}},
		{"healthy without healthcheck", "services:\n  a:\n    image: x\n    depends_on: {b: {condition: service_healthy}}\n  b:\n    image: y\n", []string{`services.a.depends_on.b: waits for service "b" to be healthy, but it has no healthcheck`}},
		{"bad condition", "services:\n  a:\n    image: x\n    depends_on: {b: {condition: started}}\n  b:\n    image: y\n", []string{`services.a.depends_on.b.condition: "started"`}},
		{"required variable", "services:\n  a:\n    image: x:${TAG:?give TAG}\n", []string{"compose.yaml:3:12: variable TAG: give TAG"}},
		{"lone dollar", "services:\n  a:\n    image: x\n    command: echo $ 1\n", []string{"a lone $"}},
		{"bad restart", "services:\n  a:\n    image: x\n    restart: sometimes\n", []string{`services.a.restart: "sometimes"`}},
		{"replicas", "services:\n  a:\n    image: x\n    deploy: {replicas: 3}\n", []string{"services.a.deploy.replicas: cannot map"}},
		{"bad memory", "services:\n  a:\n    image: x\n    mem_limit: lots\n", []string{`services.a.memory: "lots"`}},
		{"upper-case service", "services:\n  Web:\n    image: x\n  web:\n    image: y\n", []string{`services.web: the same daemon name as service "Web"`}},
		{"bad service name", "services:\n  \"a b\":\n    image: x\n", []string{"services.a b: the name must be"}},
		{"oneshot with ports", "services:\n  m:\n    image: x\n    ports: [\"80:80\"]\n  a:\n    image: x\n    depends_on: {m: {condition: service_completed_successfully}}\n",
			[]string{"services.m.ports: a service that runs once offers no ports"}},
		{"unknown hearth label", "services:\n  a:\n    image: x\n    labels: {hearth.htp: \"true\"}\n", []string{"services.a.labels.hearth.htp: unknown Hearth label"}},
		{"bad interface label", "services:\n  a:\n    image: x\n    labels: {hearth.interface.web: \"80/udp\"}\n", []string{"services.a.labels.hearth.interface.web"}},
		{"healthcheck test", "services:\n  a:\n    image: x\n    healthcheck: {test: [curl, x]}\n", []string{"services.a.healthcheck.test: start the list with CMD"}},
		{"unclosed quote", "services:\n  a:\n    image: x\n    command: echo 'hi\n", []string{"services.a.command", "unclosed '"}},
		{"cycle", "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n", []string{"the manifest it makes: requires: cycle"}},
		{"bad env name", "services:\n  a:\n    image: x\n    environment: {foo.bar: 1}\n", []string{"compose.yaml:4:18: services.a.environment.foo.bar: not a variable name"}},
		{"hook name", "services:\n  hook-x:\n    image: x\n", []string{`compose.yaml:2:3: the manifest it makes: daemons.hook-x: names starting with "hook-"`}},
		{"no services", "version: '3'\n", []string{"services: missing"}},
		{"empty", "", []string{"empty"}},
		{"yaml syntax", "services:\n  a:\n    image: x\n    command: sh -c echo a: b\n", []string{"compose.yaml:4:1: mapping values are not allowed"}},
		{"two documents", "services: {a: {image: x}}\n---\nservices: {}\n", []string{"a second YAML document"}},
		{"billion laughs", laughs(), []string{"anchors expand to more than"}},
		{"alias loop", "a: &a [*a]\n", []string{"compose.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := convert(t, tc.src, nil)
			var r Refused
			if !errors.As(err, &r) {
				t.Fatalf("not refused: %v %+v", err, res)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("refusal lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}

func laughs() string {
	var b strings.Builder
	b.WriteString("x-a: &a [x, x, x, x, x, x, x, x, x, x]\n")
	prev := "a"
	for i := 0; i < 8; i++ {
		n := string(rune('b' + i))
		b.WriteString("x-" + n + ": &" + n + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]\n")
		prev = n
	}
	b.WriteString("services: {a: {image: x}}\n")
	return b.String()
}

// TestWarnings: what collapses into the package converts, with a warning naming the key.
func TestWarnings(t *testing.T) {
	for _, tc := range []struct{ key, src, want string }{
		{"container_name", "container_name: x", "services.a.container_name: dropped"},
		{"hostname", "hostname: x", "services.a.hostname: dropped"},
		{"networks", "networks: [n]", "services.a.networks: dropped"},
		{"logging", "logging: {driver: none}", "services.a.logging: dropped"},
		{"labels", "labels: {a: b}", "services.a.labels: dropped: labels other than hearth.*"},
		{"localtime", "volumes: [/etc/localtime:/etc/localtime:ro]", "services.a.volumes[0]: dropped: the bind of the host's /etc/localtime"},
		{"timezone", "volumes: [/etc/timezone:/etc/timezone:ro]", "dropped: the bind of the host's /etc/timezone"},
		{"build with image", "build: .", "services.a.build: not built: the package uses image x"},
		{"tmpfs", "tmpfs: /run", "services.a.tmpfs: dropped"},
		{"network_mode service", "network_mode: service:b", "services.a.network_mode: dropped"},
		{"extra_hosts", "extra_hosts: [\"a:1.2.3.4\"]", "services.a.extra_hosts: dropped"},
		{"restart count", "restart: on-failure:5", "services.a.restart: the retry count is dropped"},
		{"missing bind dir", "volumes: [./nothing-here:/x]", "./nothing-here does not exist"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			res, err := convert(t, "services:\n  a:\n    image: x\n    "+tc.src+"\n", nil)
			if err != nil {
				t.Fatal(err)
			}
			var all []string
			for _, w := range res.Warnings {
				all = append(all, w.String())
			}
			if !slices.ContainsFunc(all, func(s string) bool {
				return strings.Contains(s, tc.want) && strings.HasPrefix(s, "compose.yaml:4:") || strings.Contains(s, tc.want) && strings.HasPrefix(s, "compose.yaml:")
			}) {
				t.Errorf("warnings lack %q: %q", tc.want, all)
			}
		})
	}
}

// TestMapping checks single mappings beyond the golden files.
func TestMapping(t *testing.T) {
	t.Run("healthcheck forms", func(t *testing.T) {
		for src, want := range map[string][]string{
			`test: ["CMD", "pg_isready", "-q"]`:   {"pg_isready", "-q"},
			`test: ["CMD-SHELL", "curl -f x"]`:    {"/bin/sh", "-c", "curl -f x"},
			`test: curl -f x || exit 1`:           {"/bin/sh", "-c", "curl -f x || exit 1"},
			`{test: ["NONE"]}`:                    nil,
			`{test: ["CMD", "x"], disable: true}`: nil,
		} {
			body := "healthcheck: {" + src + "}"
			if strings.HasPrefix(src, "{") {
				body = "healthcheck: " + src
			}
			res, err := convert(t, "services:\n  a:\n    image: x\n    "+body+"\n", nil)
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			r := res.Manifest.Daemons["a"].Ready
			if want == nil {
				if r != nil {
					t.Errorf("%s: ready %+v, want none", src, r)
				}
				continue
			}
			if r == nil || !slices.Equal(r.Exec, want) {
				t.Errorf("%s: ready %+v, want exec %q", src, r, want)
			}
		}
	})
	t.Run("healthcheck times", func(t *testing.T) {
		res, err := convert(t, "services:\n  a:\n    image: x\n    healthcheck: {test: [CMD, x], interval: 1m30s, timeout: 4s, retries: 7, start_period: 45s}\n", nil)
		if err != nil {
			t.Fatal(err)
		}
		r := res.Manifest.Daemons["a"].Ready
		if r.Interval.D(0) != 90*time.Second || r.Timeout.D(0) != 4*time.Second || r.Retries != 7 || r.Grace.D(0) != 45*time.Second {
			t.Errorf("ready %+v", r)
		}
	})
	t.Run("shared images", func(t *testing.T) {
		res, err := convert(t, "services:\n  a: {image: \"r.example/x/app:1\"}\n  b: {image: \"r.example/x/app:1\"}\n  c: {image: \"app:2\"}\n  d: {image: \"other/app@sha256:aa\"}\n", nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Manifest.Images) != 3 || res.Manifest.Daemons["a"].Image != res.Manifest.Daemons["b"].Image {
			t.Fatalf("images %v", res.Images)
		}
		if res.Images["app"] != "r.example/x/app:1" || res.Images["app-2"] != "app:2" || res.Images["app-3"] != "other/app@sha256:aa" {
			t.Errorf("images %v", res.Images)
		}
	})
	t.Run("environment list and passthrough", func(t *testing.T) {
		res, err := convert(t, "services:\n  a:\n    image: x\n    environment: [A=1, B, C, D=]\n", map[string]string{"B": "from-env"})
		if err != nil {
			t.Fatal(err)
		}
		env := res.Manifest.Daemons["a"].Env
		if env["A"] != "1" || env["B"] != "from-env" || env["D"] != "" || len(env) != 3 {
			t.Errorf("env %v", env)
		}
	})
	t.Run("restart policies", func(t *testing.T) {
		for in, want := range map[string]string{`"no"`: "never", "always": "always", "unless-stopped": "always", "on-failure": "on-failure"} {
			res, err := convert(t, "services:\n  a:\n    image: x\n    restart: "+in+"\n", nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Manifest.Daemons["a"].Restart.Policy; got != want {
				t.Errorf("restart %s: %q, want %q", in, got, want)
			}
		}
	})
	t.Run("oneshot label", func(t *testing.T) {
		res, err := convert(t, "services:\n  a:\n    image: x\n  init:\n    image: x\n    restart: \"no\"\n    labels: {hearth.oneshot: \"true\"}\n", nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Manifest.Oneshots["init"] == nil || res.Manifest.Daemons["init"] != nil {
			t.Errorf("init is not a oneshot: %+v", res.Manifest)
		}
	})
	t.Run("limits need every service", func(t *testing.T) {
		res, err := convert(t, "services:\n  a: {image: x, mem_limit: 100m, pids_limit: 4}\n  b: {image: x, deploy: {resources: {limits: {memory: 1g, pids: 2}}}}\n", nil)
		if err != nil {
			t.Fatal(err)
		}
		if l := res.Manifest.Limits; l.Memory != "1124Mi" || l.Pids != 8 || l.CPUs != 0 {
			t.Errorf("limits %+v", l)
		}
	})
	t.Run("file bind", func(t *testing.T) {
		res, err := convert(t, "services:\n  a:\n    image: x\n    volumes: [\"./nginx/conf.d/default.conf:/etc/nginx/nginx.conf:ro\", \"./nginx/conf.d/default.conf:/etc/copy.conf\"]\n", nil)
		if err != nil {
			t.Fatal(err)
		}
		ms := res.Manifest.Daemons["a"].Mounts
		want := manifest.Mount{Volume: "nginx-conf.d-default.conf", File: "default.conf", Path: "/etc/nginx/nginx.conf", ReadOnly: true}
		if len(ms) != 2 || ms[0] != want || ms[1].Volume != want.Volume || ms[1].File != "default.conf" || ms[1].ReadOnly {
			t.Errorf("mounts %+v", ms)
		}
		if len(res.Seeds) != 1 || res.Seeds[0].File != "default.conf" || !strings.HasSuffix(res.Seeds[0].Source, "nginx/conf.d/default.conf") {
			t.Errorf("seeds %+v", res.Seeds)
		}
	})
	t.Run("one port published twice", func(t *testing.T) {
		res, err := convert(t, "services:\n  a:\n    image: x\n    ports: [\"80:80\", \"8080:80\"]\n", nil)
		if err != nil {
			t.Fatal(err)
		}
		if is := res.Manifest.Interfaces; len(is) != 1 || is["a"].Port != 80 || is["a"].Protocol != "http" {
			t.Errorf("interfaces %+v", is)
		}
	})
	t.Run("interface labels", func(t *testing.T) {
		res, err := convert(t, "services:\n  a:\n    image: x\n    ports: [\"9000:9000\", \"3000:3000\"]\n    labels: {hearth.http: \"9000\", hearth.interface.admin: \"3000\"}\n", nil)
		if err != nil {
			t.Fatal(err)
		}
		is := res.Manifest.Interfaces
		if is["a-9000"].Protocol != "http" || is["admin"].Port != 3000 || is["admin"].Protocol != "tcp" || len(is) != 2 {
			t.Errorf("interfaces %+v", is)
		}
	})
}

func TestShellSplit(t *testing.T) {
	for in, want := range map[string][]string{
		`a b  c`:                  {"a", "b", "c"},
		`sh -c 'echo "hi there"'`: {"sh", "-c", `echo "hi there"`},
		`echo "a \"b\" \$c" d\ e`: {"echo", `a "b" $c`, "d e"},
		`x ''`:                    {"x", ""},
		"a\\\nb":                  {"ab"},
		`  `:                      nil,
	} {
		got, err := ShellSplit(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ShellSplit(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`'x`, `"x`, `a "b`} {
		if _, err := ShellSplit(bad); err == nil {
			t.Errorf("ShellSplit(%q) accepted", bad)
		}
	}
}

func TestInterpolate(t *testing.T) {
	env := map[string]string{"A": "a", "E": ""}
	for in, want := range map[string]string{
		"$A ${A} $$A":    "a a $A",
		"${E:-d} ${E-d}": "d ",
		"${U:-d} ${U-d}": "d d",
		"${A:+x}${E:+x}": "x",
		"${E+x}${U+x}":   "x",
		"${U:-${A}b}":    "ab",
		"cost: $$5":      "cost: $5",
		"${A?}":          "a",
		"no vars":        "no vars",
		"trailing $":     "trailing $",
	} {
		got, err := interpolate(in, env)
		if err != nil || got != want {
			t.Errorf("interpolate(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"${E:?must}", "${U?}", "${A", "${}", "$ x", "${A%x}"} {
		if _, err := interpolate(bad, env); err == nil {
			t.Errorf("interpolate(%q) accepted", bad)
		}
	}
}

func TestParseEnv(t *testing.T) {
	got, err := ParseEnv("x.env", []byte("# c\n\nA=1\nexport B = two words # note\nC='lit $X'\nD=\"q\\n\\\"x\\\"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got["A"] != "1" || got["B"] != "two words" || got["C"] != "lit $X" || got["D"] != "q\n\"x\"" {
		t.Errorf("%q", got)
	}
	if _, err := ParseEnv("x.env", []byte("A=1\nnot a line\n")); err == nil || !strings.Contains(err.Error(), "x.env:2") {
		t.Errorf("bad line: %v", err)
	}
}

// FuzzConvert: whatever the file, Convert returns a valid manifest or Refused, never
// panics, and stays bounded.
func FuzzConvert(f *testing.F) {
	for _, s := range []string{
		"services:\n  a:\n    image: x\n",
		"x-a: &a {image: x}\nservices:\n  a: {<<: *a, ports: [\"80:80\"]}\n",
		"services:\n  a:\n    image: ${X:-y}\n    healthcheck: {test: [CMD, x]}\n    depends_on: {b: {condition: service_completed_successfully}}\n  b: {image: z}\n",
		laughs(),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		res, err := Convert(data, Options{File: "f.yaml", Dir: t.TempDir(), Env: map[string]string{"X": "1"}})
		if time.Since(start) > 5*time.Second {
			t.Errorf("took %v", time.Since(start))
		}
		if err != nil {
			var r Refused
			if !errors.As(err, &r) || len(r) == 0 {
				t.Fatalf("error %v is not Refused", err)
			}
			return
		}
		if verr := res.Manifest.Validate(); verr != nil {
			t.Fatalf("invalid manifest: %v", verr)
		}
		if _, err := res.ManifestYAML("f.yaml"); err != nil {
			t.Fatal(err)
		}
	})
}
