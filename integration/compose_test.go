package integration

import (
	"archive/tar"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	guestv1 "hearth.dev/proto/hearth/guest/v1"
	"hearth.dev/services/containerd-lite/imagetest"
)

// composeImages writes, into a directory for --images-from, a busybox image with
// integration/echoapp at /bin/echoapp for each reference, named as pack --compose looks
// for it: an OCI layout at the reference's path, or (docker) a docker save file with '/'
// and ':' as '_'. Each image has /etc/image naming it.
func composeImages(t *testing.T, refs map[string]string) string {
	t.Helper()
	dir := tempDir(t)
	echo := filepath.Join(dir, "echoapp")
	build := exec.Command("go", "build", "-o", echo, "./echoapp")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build echoapp: %v\n%s", err, out)
	}
	eb, err := os.ReadFile(echo)
	must(t, err)
	bb, err := imagetest.Busybox("/bin/busybox")
	must(t, err)
	for _, a := range []string{"grep", "cp", "test"} {
		bb = append(bb, imagetest.File{Name: "bin/" + a, Type: tar.TypeSymlink, Link: "busybox"})
	}
	out := filepath.Join(dir, "images")
	for ref, form := range refs {
		files := append(append([]imagetest.File(nil), bb...),
			imagetest.File{Name: "bin/echoapp", Body: string(eb), Mode: 0o755},
			imagetest.File{Name: "etc/image", Body: ref + "\n"})
		img := imagetest.Image(v1.Config{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}}, files)
		switch form {
		case "layout":
			must(t, imagetest.WriteOCILayout(filepath.Join(out, filepath.FromSlash(ref)), img))
		case "docker":
			must(t, os.MkdirAll(out, 0o755))
			must(t, imagetest.WriteDockerArchive(filepath.Join(out, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar"), img, ref))
		default:
			t.Fatalf("form %q", form)
		}
	}
	return out
}

// Compose projects shaped like real self-hosted apps, their services played by busybox
// and echoapp: a "database" is echoapp's line echo on the database's port, health-checked
// by talking to it; an app's health check reaches the database by its service name.
var composeShapes = []struct {
	name, id string
	compose  string
	files    map[string]string // project files, relative to the compose file
	daemons  []string
	oneshots []string
	// check runs in daemon check[0]: check[1] is a shell command whose output must hold check[2].
	checks [][3]string
	warns  []string
}{
	{
		name: "app, postgres and redis", id: "notes",
		compose: `
name: notes
x-db-health: &dbhealth
  interval: 1s
  timeout: 3s
  retries: 30
services:
  app:
    image: registry.example.org/example/notes:2.4.1
    restart: unless-stopped
    command: ["httpd", "-f", "-p", "3000", "-h", "/tmp"]
    ports: ["8080:3000"]
    environment:
      DATABASE_URL: postgres://notes:${DB_PASSWORD:-secret}@db:5432/notes
      SECRET_KEY: ${SECRET_KEY:?set SECRET_KEY}
    depends_on:
      db: {condition: service_healthy}
      redis: {condition: service_healthy}
    healthcheck:
      test: ["CMD-SHELL", "echo ping | nc -w 2 db 5432 | grep -q 'db echo: ping' && echo ping | nc -w 2 redis 6379 | grep -q 'redis echo: ping'"]
      interval: 1s
      retries: 30
    deploy:
      resources: {limits: {memory: 96m, cpus: "0.5"}}
  db:
    image: postgres:16-alpine
    entrypoint: /bin/sh -c "echo $$POSTGRES_DB > /var/lib/postgresql/data/created && exec echoapp -tcp :5432 -name db"
    environment: [POSTGRES_DB=notes, POSTGRES_PASSWORD=secret]
    volumes: [pgdata:/var/lib/postgresql/data]
    healthcheck:
      <<: *dbhealth
      test: ["CMD-SHELL", "echo ping | nc -w 2 127.0.0.1 5432 | grep -q 'echo: ping'"]
    deploy:
      resources: {limits: {memory: 64m, cpus: "0.5"}}
  redis:
    image: redis:7-alpine
    command: echoapp -tcp :6379 -name redis
    volumes: [redisdata:/data]
    healthcheck:
      <<: *dbhealth
      test: echo ping | nc -w 2 127.0.0.1 6379 | grep -q '^redis echo'
    mem_limit: 32m
    cpus: 0.25
volumes:
  pgdata:
  redisdata:
`,
		files:   map[string]string{".env": "SECRET_KEY=s3cr3t\n"},
		daemons: []string{"app", "db", "redis"},
		checks: [][3]string{
			{"app", "echo $SECRET_KEY $DATABASE_URL", "s3cr3t postgres://notes:secret@db:5432/notes"},
			{"app", "echo hello | nc -w 2 db 5432", "db echo: hello"},
			{"db", "cat /var/lib/postgresql/data/created /etc/image", "notes\npostgres:16-alpine"},
		},
	},
	{
		name: "app behind an nginx front", id: "front",
		compose: `
services:
  web:
    image: nginx:1.27
    command: ["httpd", "-f", "-p", "80", "-h", "/usr/share/nginx/html"]
    ports: ["80:80"]
    volumes:
      - ./site:/usr/share/nginx/html:ro
      - ./nginx/nginx.conf:/etc/nginx/nginx.conf:ro
      - /etc/localtime:/etc/localtime:ro
    depends_on: [app]
    container_name: front-nginx
    healthcheck:
      test: ["CMD-SHELL", "wget -qO- http://127.0.0.1:80/index.html | grep -q 'hello from the project' && wget -qO- http://app:3000/ | grep -q app"]
      interval: 1s
      retries: 30
  app:
    image: example/app:latest
    working_dir: /tmp
    entrypoint: ["/bin/sh", "-c"]
    command: ["mkdir -p www && echo app > www/index.html && exec httpd -f -p 3000 -h www"]
    expose: ["3000"]
    networks: [front]
networks:
  front: {}
`,
		files:   map[string]string{"site/index.html": "<h1>hello from the project</h1>\n", "site/css/style.css": "h1 {}\n", "nginx/nginx.conf": "events {}\n"},
		daemons: []string{"app", "web"},
		checks: [][3]string{
			{"web", "wget -qO- http://127.0.0.1/css/style.css; wget -qO- http://app:3000/", "h1 {}\napp"},
			{"app", "cat /tmp/www/index.html", "app"},
			// A file bind: the file, read-only, and nothing else of its volume at its place.
			{"web", "cat /etc/nginx/nginx.conf; echo x >> /etc/nginx/nginx.conf || echo read-only; ls /etc/nginx", "events {}\nread-only\nnginx.conf"},
		},
		warns: []string{"services.web.volumes[2]: dropped: the bind of the host's /etc/localtime", "services.web.container_name: dropped", "services.app.networks: dropped"},
	},
	{
		name: "app with a worker, a scheduler and a migration", id: "shop",
		compose: `
x-shop: &shop
  image: example/shop:1.2
  env_file: shop.env
  volumes: [shopdata:/data]
services:
  migrate:
    <<: *shop
    command: sh -c "echo ping | nc -w 2 db 5432 | grep -q '^db echo' && echo $$RAILS_ENV > /data/migrated"
    restart: "no"
    depends_on:
      db: {condition: service_healthy}
  web:
    <<: *shop
    command: httpd -f -p 8000 -h /data
    ports: ["8000:8000"]
    depends_on:
      migrate: {condition: service_completed_successfully}
    healthcheck: {test: [CMD, test, -s, /data/migrated], interval: 1s}
  worker:
    <<: *shop
    command: sh -c "while sleep 1; do test -s /data/migrated || exit 1; done"
    depends_on:
      migrate: {condition: service_completed_successfully}
    healthcheck: {test: [CMD, test, -s, /data/migrated], interval: 1s}
  scheduler:
    <<: *shop
    command: ["sh", "-c", "while sleep 1; do date > /data/tick; done"]
    restart: on-failure:3
    depends_on: [migrate, db]
    healthcheck: {test: [CMD, test, -s, /data/tick], interval: 1s, retries: 10}
  db:
    image: postgres:16
    command: ["echoapp", "-tcp", ":5432", "-name", "db"]
    healthcheck:
      test: ["CMD-SHELL", "echo ping | nc -w 2 127.0.0.1 5432 | grep -q 'echo: ping'"]
      interval: 1s
volumes:
  shopdata: {}
`,
		files:    map[string]string{"shop.env": "RAILS_ENV=production\n"},
		daemons:  []string{"db", "scheduler", "web", "worker"},
		oneshots: []string{"migrate"},
		checks: [][3]string{
			{"web", "wget -qO- http://127.0.0.1:8000/migrated", "production"},
			{"worker", "echo $RAILS_ENV", "production"},
		},
		warns: []string{"services.scheduler.restart"},
	},
}

// TestComposePackages: each compose shape converts (pack --compose, images from
// --images-from, signed with the test key), installs and comes up with every daemon ready
// as hearthctl status tells, its app reaching its database by the service name; shapes
// that cannot map are refused, naming the service and the key, and write nothing.
func TestComposePackages(t *testing.T) {
	l, ex := installLab(t, "busybox")
	images := composeImages(t, map[string]string{
		"registry.example.org/example/notes:2.4.1": "layout", "postgres:16-alpine": "docker", "redis:7-alpine": "layout",
		"nginx:1.27": "docker", "example/app:latest": "layout",
		"example/shop:1.2": "layout", "postgres:16": "docker",
	})
	key := filepath.Join(ex, "dev.key")
	for _, sh := range composeShapes {
		t.Run(sh.id, func(t *testing.T) {
			proj := tempDir(t)
			file := filepath.Join(proj, "compose.yaml")
			must(t, os.WriteFile(file, []byte(sh.compose), 0o644))
			for p, body := range sh.files {
				must(t, os.MkdirAll(filepath.Dir(filepath.Join(proj, p)), 0o755))
				must(t, os.WriteFile(filepath.Join(proj, p), []byte(body), 0o644))
			}
			pkg := filepath.Join(proj, sh.id+".hpkg")
			start := time.Now()
			stdout, stderr, err := runSplit(filepath.Join(binDir, "hearthctl"), "pack", "--compose", file, "--images-from", images,
				"--key", key, "--id", sh.id, "--out", pkg)
			if err != nil {
				t.Fatalf("pack --compose: %v\n%s%s", err, stdout, stderr)
			}
			t.Logf("%s: packed in %v: %s", sh.name, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stdout))
			for _, w := range sh.warns {
				if !strings.Contains(stderr, "warning: "+file) || !strings.Contains(stderr, w) {
					t.Errorf("pack's warnings lack %q:\n%s", w, stderr)
				}
			}
			start = time.Now()
			if out, err := hearthctl(t, l.runDir, "--timeout", "3m", "install", pkg); err != nil {
				t.Fatalf("install: %v\n%s", err, out)
			}
			t.Cleanup(func() { hearthctl(t, l.runDir, "uninstall", "--purge", sh.id) })
			ds := waitPackageReady(t, l, sh.id, sh.daemons, sh.oneshots, 2*time.Minute)
			t.Logf("%s: installed and ready in %v: %d daemons", sh.name, time.Since(start).Round(time.Millisecond), len(ds))
			for _, c := range sh.checks {
				out, err := hearthctl(t, l.runDir, "exec", sh.id, c[0], "--", "sh", "-c", c[1])
				if err != nil || strings.TrimSpace(out) != c[2] {
					t.Errorf("in %s, %q: %q, %v; want %q", c[0], c[1], out, err, c[2])
				}
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct{ name, compose, want string }{
			{"build only", "services:\n  app:\n    build: .\n    ports: [\"8080:8080\"]\n", ":3:5: services.app.build: cannot map"},
			{"host network", "services:\n  ha:\n    image: registry.example.org/example/notes:2.4.1\n    network_mode: host\n", ":4:19: services.ha.network_mode: cannot map: host networking"},
			{"privileged", "services:\n  ha:\n    image: nginx:1.27\n    privileged: true\n", ":4:5: services.ha.privileged: cannot map"},
			{"devices", "services:\n  ha:\n    image: nginx:1.27\n    devices: [/dev/ttyUSB0]\n", ":4:5: services.ha.devices: cannot map"},
			{"cap_add", "services:\n  ha:\n    image: nginx:1.27\n    cap_add: [NET_ADMIN]\n", ":4:5: services.ha.cap_add: cannot map"},
			{"host path", "services:\n  ha:\n    image: nginx:1.27\n    volumes: [/srv:/srv]\n", ":4:15: services.ha.volumes[0]: cannot map: the bind of the host's /srv"},
			{"same port", "services:\n  a:\n    image: nginx:1.27\n    ports: [\"80:80\"]\n  b:\n    image: postgres:16\n    expose: [\"80\"]\n", `:7:13: services.b.ports: port 80 is also used by service "a"`},
		} {
			proj := tempDir(t)
			file := filepath.Join(proj, "compose.yaml")
			must(t, os.WriteFile(file, []byte(tc.compose), 0o644))
			pkg := filepath.Join(proj, "x.hpkg")
			_, stderr, err := runSplit(filepath.Join(binDir, "hearthctl"), "pack", "--compose", file, "--images-from", images, "--key", key, "--out", pkg)
			if err == nil || !strings.Contains(stderr, file+tc.want) {
				t.Errorf("%s: %v, %s; want a refusal naming %q", tc.name, err, stderr, tc.want)
			}
			if ents, _ := os.ReadDir(proj); len(ents) != 1 {
				t.Errorf("%s: the refused pack left %d entries beside the compose file", tc.name, len(ents)-1)
			}
		}
	})
}

// waitPackageReady waits until hearthctl status shows every daemon ready and every
// oneshot done, and returns the daemons.
func waitPackageReady(t *testing.T, l *lab, id string, daemons, oneshots []string, within time.Duration) map[string]*guestv1.Daemon {
	t.Helper()
	deadline := time.Now().Add(within)
	var ds map[string]*guestv1.Daemon
	var last string
	for time.Now().Before(deadline) {
		ds = map[string]*guestv1.Daemon{}
		out, err := hearthctl(t, l.runDir, "-o", "json", "status", id)
		if err == nil {
			last = out
			var st struct {
				Status *struct {
					Daemons []json.RawMessage `json:"daemons"`
				} `json:"status"`
			}
			if json.Unmarshal([]byte(out), &st) == nil && st.Status != nil {
				for _, raw := range st.Status.Daemons {
					d := &guestv1.Daemon{}
					if protojsonUnmarshal(raw, d) == nil {
						ds[d.GetName()] = d
					}
				}
			}
		}
		// The install hook (seeding volumes) is a job too: it must be done.
		hooks := 0
		for n, d := range ds {
			if strings.HasPrefix(n, "hook-") {
				hooks++
				if d.GetState() != guestv1.DaemonState_DAEMON_STATE_DONE {
					hooks = -1000
				}
			}
		}
		ok := hooks >= 0 && len(ds) == len(daemons)+len(oneshots)+hooks
		for _, n := range daemons {
			ok = ok && ds[n].GetState() == guestv1.DaemonState_DAEMON_STATE_READY
		}
		for _, n := range oneshots {
			ok = ok && ds[n].GetState() == guestv1.DaemonState_DAEMON_STATE_DONE
			if ds[n].GetState() == guestv1.DaemonState_DAEMON_STATE_FAILED {
				break
			}
		}
		if ok {
			return ds
		}
		time.Sleep(200 * time.Millisecond)
	}
	logs, _ := hearthctl(t, l.runDir, "logs", id, "--tail", "40")
	t.Fatalf("%s: not every daemon ready within %v:\n%s\nlogs:\n%s", id, within, last, logs)
	return nil
}
