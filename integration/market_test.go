package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// marketServer serves a marketplace directory on loopback, and can alter what it serves:
// tamper rewrites a file's bytes, cut answers the next request for a file with its first
// N bytes and then closes the connection. It records the Range header of each request.
type marketServer struct {
	dir    string
	mu     sync.Mutex
	tamper map[string]func([]byte) []byte
	cut    map[string]int
	ranges map[string][]string
	files  http.Handler
}

func newMarketServer(t *testing.T, dir string) (*marketServer, string) {
	s := &marketServer{dir: dir, tamper: map[string]func([]byte) []byte{}, cut: map[string]int{}, ranges: map[string][]string{}, files: http.FileServer(http.Dir(dir))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: s}}
	srv.Start()
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func (s *marketServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	s.mu.Lock()
	s.ranges[name] = append(s.ranges[name], r.Header.Get("Range"))
	tamper, n := s.tamper[name], s.cut[name]
	delete(s.cut, name)
	s.mu.Unlock()
	if n > 0 {
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		w.Write(b[:n])
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
		return
	}
	if tamper != nil {
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(tamper(b)))
		return
	}
	s.files.ServeHTTP(w, r)
}

func (s *marketServer) set(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

func (s *marketServer) rangesOf(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges[name]...)
}

// refusedWith runs hearthctl, which must fail saying every one of want.
func refusedWith(t *testing.T, runDir string, want []string, args ...string) string {
	t.Helper()
	out, err := hearthctl(t, runDir, args...)
	if err == nil {
		t.Fatalf("hearthctl %v succeeded:\n%s", args, out)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("hearthctl %v: the error does not say %q:\n%v", args, w, err)
		}
	}
	t.Logf("refused as it should be: %v", err)
	return err.Error()
}

// clientDirs gives hearthctl its own config and cache directories (its marketplaces,
// its downloads) and docker config for the test.
func clientDirs(t *testing.T) (config, cache string) {
	d := tempDir(t)
	config, cache = filepath.Join(d, "config"), filepath.Join(d, "cache")
	t.Setenv("XDG_CONFIG_HOME", config)
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("DOCKER_CONFIG", filepath.Join(d, "docker"))
	return config, cache
}

// TestMarketplace: a marketplace built by 'hearthctl market index' from busybox 1.0.0 and
// 1.1.0, served by a loopback HTTP server. Search, info, install (a download cut in the
// middle, then resumed with Range), update --check and update through it; a tampered
// package and a tampered index are refused, each with an error that says so, and leave
// the host as it was.
func TestMarketplace(t *testing.T) {
	l, ex := installLab(t, "busybox")
	_, cache := clientDirs(t)
	v11 := busyboxNext(t, l, ex)

	mdir := tempDir(t)
	must(t, os.Mkdir(filepath.Join(mdir, "pkgs"), 0o755))
	for _, f := range []string{filepath.Join(ex, "busybox-1.0.0.hpkg"), v11} {
		b, err := os.ReadFile(f)
		must(t, err)
		must(t, os.WriteFile(filepath.Join(mdir, "pkgs", filepath.Base(f)), b, 0o644))
	}
	mkey := filepath.Join(tempDir(t), "market")
	_, err := hearthctl(t, l.runDir, "keys", "generate", "--out", mkey)
	must(t, err)
	out, err := hearthctl(t, l.runDir, "market", "index", mdir, "--key", mkey+".key", "--name", "Test market")
	must(t, err)
	if !strings.Contains(out, `marketplace "Test market": 1 packages, 2 versions`) {
		t.Fatalf("market index: %s", out)
	}
	srv, url := newMarketServer(t, mdir)

	// Adding needs a key, or an explicit --allow-unsigned; a wrong key is refused.
	refusedWith(t, l.runDir, []string{"--key FILE.pub", "--allow-unsigned"}, "market", "add", "test", url)
	other := filepath.Join(tempDir(t), "other")
	_, err = hearthctl(t, l.runDir, "keys", "generate", "--out", other)
	must(t, err)
	refusedWith(t, l.runDir, []string{"not by the key", "nothing was added"}, "market", "add", "test", url, "--key", other+".pub")
	out, err = hearthctl(t, l.runDir, "market", "add", "test", url, "--key", mkey+".pub")
	must(t, err)
	t.Logf("market add: %s", out)
	if out, _ = hearthctl(t, l.runDir, "market", "ls"); !strings.Contains(out, url) {
		t.Fatalf("market ls:\n%s", out)
	}

	// Search: the table and JSON.
	out, err = hearthctl(t, l.runDir, "search", "smallest")
	must(t, err)
	if !strings.Contains(out, "busybox") || !strings.Contains(out, "1.1.0") || !strings.Contains(out, "test") {
		t.Fatalf("search:\n%s", out)
	}
	out, err = hearthctl(t, l.runDir, "search", "nothing-like-this")
	must(t, err)
	if strings.Contains(out, "busybox") {
		t.Fatalf("search of another word found busybox:\n%s", out)
	}
	out, err = hearthctl(t, l.runDir, "-o", "json", "search", "BUSY")
	must(t, err)
	var hits []struct {
		Marketplace, ID, Latest string
		Versions                []struct{ Version, URL, SHA256 string }
	}
	must(t, json.Unmarshal([]byte(out), &hits))
	if len(hits) != 1 || hits[0].ID != "busybox" || hits[0].Latest != "1.1.0" || len(hits[0].Versions) != 2 || !strings.HasPrefix(hits[0].Versions[0].URL, url+"/pkgs/") {
		t.Fatalf("search -o json: %s", out)
	}

	// Info of a package not installed: from the marketplace.
	out, err = hearthctl(t, l.runDir, "info", "busybox")
	must(t, err)
	for _, w := range []string{"installed:", "no", "marketplace:", "test", "1.1.0", "1.0.0", "The smallest Hearth package"} {
		if !strings.Contains(out, w) {
			t.Fatalf("info (not installed) lacks %q:\n%s", w, out)
		}
	}
	refusedWith(t, l.runDir, []string{"not found"}, "info", "no-such-package")

	// A download cut in the middle: a clear error, nothing installed; the next attempt
	// resumes from where it was cut.
	before := l.hostState(t)
	v10 := "pkgs/busybox-1.0.0.hpkg"
	fi, err := os.Stat(filepath.Join(mdir, v10))
	must(t, err)
	cutAt := int(fi.Size() / 2)
	srv.set(func() { srv.cut[v10] = cutAt })
	refusedWith(t, l.runDir, []string{"cut after " + strconv.Itoa(cutAt) + " of " + strconv.FormatInt(fi.Size(), 10) + " bytes", "run the command again to resume"}, "install", "busybox@1.0.0")
	if d := before.diff(l.hostState(t)); d != "" {
		t.Fatalf("a cut download changed the host:\n%s", d)
	}
	out, err = hearthctl(t, l.runDir, "install", "busybox@1.0.0")
	must(t, err)
	t.Logf("install: %s", out)
	if got := srv.rangesOf(v10); len(got) != 2 || got[0] != "" || got[1] != "bytes="+strconv.Itoa(cutAt)+"-" {
		t.Fatalf("the requests for %s had Range %q; want none, then bytes=%d-", v10, got, cutAt)
	}
	l.packageIs(t, "busybox", "1.0.0")

	// update --check lists the newer version.
	out, err = hearthctl(t, l.runDir, "update", "--check")
	must(t, err)
	if !strings.Contains(out, "busybox") || !strings.Contains(out, "1.0.0") || !strings.Contains(out, "1.1.0") {
		t.Fatalf("update --check:\n%s", out)
	}
	out, err = hearthctl(t, l.runDir, "info", "busybox")
	must(t, err)
	if !strings.Contains(out, "version:") || !strings.Contains(out, "1.1.0 (hearthctl update busybox)") {
		t.Fatalf("info (installed) does not offer the update:\n%s", out)
	}

	// A tampered package: the digest does not match; the download is removed; nothing changes.
	before = l.hostState(t)
	v11name := "pkgs/busybox-1.1.0.hpkg"
	srv.set(func() {
		srv.tamper[v11name] = func(b []byte) []byte {
			b = bytes.Clone(b)
			b[len(b)/3] ^= 1
			return b
		}
	})
	refusedWith(t, l.runDir, []string{"busybox 1.1.0 from marketplace test", "altered or damaged", "the downloaded copy is removed"}, "update", "busybox")
	if ents, _ := os.ReadDir(filepath.Join(cache, "hearth", "packages")); len(ents) != 1 {
		t.Fatalf("the cache after a tampered download holds %v; want only 1.0.0's file", ents)
	}
	if d := before.diff(l.hostState(t)); d != "" {
		t.Fatalf("a tampered package changed the host:\n%s", d)
	}

	// A tampered index: its signature does not match; search and update refuse.
	srv.set(func() {
		delete(srv.tamper, v11name)
		srv.tamper["index.json"] = func(b []byte) []byte { return bytes.Replace(b, []byte("The smallest"), []byte("The safest"), 1) }
	})
	refusedWith(t, l.runDir, []string{"marketplace test", "index.json.sig does not match", "altered"}, "update", "busybox")
	refusedWith(t, l.runDir, []string{"no marketplace could be read"}, "search", "busybox")
	if d := before.diff(l.hostState(t)); d != "" {
		t.Fatalf("a tampered index changed the host:\n%s", d)
	}

	// All as published again: update through the marketplace; its migrate hook runs.
	srv.set(func() { delete(srv.tamper, "index.json") })
	out, err = hearthctl(t, l.runDir, "update", "busybox")
	must(t, err)
	t.Logf("update: %s", out)
	l.packageIs(t, "busybox", "1.1.0")
	if page := l.page(t); !strings.Contains(page, "migrated 1.0.0 to 1.1.0") {
		t.Fatalf("the page after the update: %s", page)
	}
	out, err = hearthctl(t, l.runDir, "-o", "json", "update", "--check")
	must(t, err)
	if strings.TrimSpace(out) != "[]" {
		t.Fatalf("update --check after the update: %s", out)
	}
	refusedWith(t, l.runDir, []string{"newest version"}, "update", "busybox")

	_, err = hearthctl(t, l.runDir, "market", "rm", "test")
	must(t, err)
	refusedWith(t, l.runDir, []string{"no marketplace is added"}, "install", "busybox@1.0.0")
}

// basicAuth puts a handler behind HTTP basic auth.
func basicAuth(h http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// TestOCIRegistry: go-containerregistry's registry on loopback, behind basic auth, with
// the credentials in a docker config file. A package pushed there installs by reference;
// wrong credentials are refused clearly, for push and install, and change nothing.
func TestOCIRegistry(t *testing.T) {
	l, ex := installLab(t, "busybox")
	clientDirs(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: basicAuth(registry.New(registry.Logger(log.New(io.Discard, "", 0))), "hearth", "s3cret")}}
	srv.Start()
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	login := func(pass string) {
		cfg := map[string]any{"auths": map[string]any{host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("hearth:" + pass))}}}
		b, _ := json.Marshal(cfg)
		must(t, os.MkdirAll(os.Getenv("DOCKER_CONFIG"), 0o700))
		must(t, os.WriteFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"), b, 0o600))
	}
	pkg := filepath.Join(ex, "busybox-1.0.0.hpkg")
	ref := host + "/apps/busybox:1.0.0"

	login("wrong")
	refusedWith(t, l.runDir, []string{"refused the credentials", "docker login"}, "push", "--insecure", pkg, ref)
	login("s3cret")
	out, err := hearthctl(t, l.runDir, "push", "--insecure", pkg, ref)
	must(t, err)
	t.Logf("push: %s", out)
	if !strings.Contains(out, "busybox 1.0.0 pushed to "+host+"/apps/busybox@sha256:") {
		t.Fatalf("push: %s", out)
	}

	before := l.hostState(t)
	login("wrong")
	refusedWith(t, l.runDir, []string{"refused the credentials"}, "install", "--insecure", "oci://"+ref)
	login("s3cret")
	refusedWith(t, l.runDir, []string{"not found"}, "install", "--insecure", "oci://"+host+"/apps/busybox:9.9.9")
	if d := before.diff(l.hostState(t)); d != "" {
		t.Fatalf("a refused install changed the host:\n%s", d)
	}
	out, err = hearthctl(t, l.runDir, "install", "--insecure", "oci://"+ref)
	must(t, err)
	t.Logf("install: %s", out)
	l.packageIs(t, "busybox", "1.0.0")
}
