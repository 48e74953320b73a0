package market

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/hpkg"
)

func key(seed byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)) }

// writePackage packs a small valid package (one image) into dir/name.
func writePackage(t *testing.T, dir, name, id, version, readme string, icon bool) string {
	t.Helper()
	var files []hpkg.File
	add := func(data []byte) (string, int) {
		sum := fmt.Sprintf("%x", sha256.Sum256(data))
		files = append(files, hpkg.Bytes("images/blobs/sha256/"+sum, data))
		return "sha256:" + sum, len(data)
	}
	cfg, cfgSize := add([]byte(`{"architecture":"amd64","os":"linux"}`))
	layer, layerSize := add([]byte("layer of " + id + " " + version))
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		cfg, cfgSize, layer, layerSize)
	d, n := add([]byte(m))
	files = append(files,
		hpkg.Bytes("images/oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)),
		hpkg.Bytes("images/index.json", []byte(fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"annotations":{%q:"app"}}]}`, d, n, hpkg.AnnotationImageName))),
		hpkg.Bytes(hpkg.ManifestName, []byte("id: "+id+"\nversion: "+version+"\nimages:\n  app: {oci: app}\ndaemons:\n  app: {image: app, command: [/app]}\n")),
	)
	if readme != "" {
		files = append(files, hpkg.Bytes("README.md", []byte(readme)))
	}
	if icon {
		files = append(files, hpkg.Bytes("icon.svg", []byte("<svg>"+id+"</svg>")))
	}
	var buf bytes.Buffer
	if err := hpkg.Write(&buf, files, key(7)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuildAndOpen(t *testing.T) {
	dir := t.TempDir()
	writePackage(t, dir, "demo-1.0.0.hpkg", "demo", "1.0.0", "# Demo app\n\nA demo\nthat spans lines.\n\nMore text.\n", false)
	os.Mkdir(filepath.Join(dir, "new"), 0o755)
	writePackage(t, dir, "new/demo 1.2.0.hpkg", "demo", "1.2.0", "# Demo App Two\n\nThe newer demo.\n\n## Release notes\n\n- faster\n- smaller\n\n## Usage\n\nrun it\n", true)
	writePackage(t, dir, "other.hpkg", "other", "0.1.0", "", false)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ix, err := Build(context.Background(), dir, key(9), BuildOptions{Name: "Test apps", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, IndexName))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := os.ReadFile(filepath.Join(dir, SigName))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open("test", data, sig, key(9).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatalf("the index Build wrote does not open: %v", err)
	}
	if got.Name != "Test apps" || !got.Generated.Equal(now) || len(got.Packages) != 2 {
		t.Fatalf("index: %+v", got)
	}
	demo, ok := got.Lookup("demo")
	if !ok {
		t.Fatal("no demo")
	}
	if demo.Title != "Demo App Two" || demo.Description != "The newer demo." || demo.Icon != "icons/demo.svg" {
		t.Errorf("demo's title, description, icon from the newest README: %+v", demo)
	}
	if icon, err := os.ReadFile(filepath.Join(dir, "icons", "demo.svg")); err != nil || string(icon) != "<svg>demo</svg>" {
		t.Errorf("icon: %q %v", icon, err)
	}
	if len(demo.Versions) != 2 || demo.Versions[0].Version != "1.2.0" || demo.Versions[0].URL != "new/demo%201.2.0.hpkg" || demo.Versions[0].Notes != "- faster\n- smaller" {
		t.Errorf("versions: %+v", demo.Versions)
	}
	for _, v := range demo.Versions {
		b, err := os.ReadFile(filepath.Join(dir, strings.ReplaceAll(v.URL, "%20", " ")))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != v.SHA256 || int64(len(b)) != v.Size {
			t.Errorf("%s: size/sha256 in the index are not the file's", v.URL)
		}
		if v.KeyID != hpkg.KeyID(key(7).Public().(ed25519.PublicKey)) {
			t.Errorf("%s: key id %s", v.URL, v.KeyID)
		}
	}
	if other, _ := got.Lookup("other"); other.Title != "other" || other.Icon != "" {
		t.Errorf("other without README: %+v", other)
	}
	if len(ix.Packages) != 2 {
		t.Errorf("returned index: %+v", ix)
	}
}

func TestBuildRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"empty directory", func(t *testing.T, dir string) {}, "holds no .hpkg file"},
		{"same version twice", func(t *testing.T, dir string) {
			writePackage(t, dir, "a.hpkg", "demo", "1.0.0", "", false)
			writePackage(t, dir, "b.hpkg", "demo", "1.0.0", "# other\n", false)
		}, "are both demo 1.0.0"},
		{"a damaged package", func(t *testing.T, dir string) {
			p := writePackage(t, dir, "a.hpkg", "demo", "1.0.0", "", false)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-1500], 0o644)
		}, "a.hpkg: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			_, err := Build(context.Background(), dir, key(9), BuildOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to say %q", err, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, IndexName)); err == nil {
				t.Error("an index was written")
			}
		})
	}
}

func TestOpen(t *testing.T) {
	ix := &Index{Format: FormatVersion, Name: "m", Packages: []Package{{ID: "demo", Title: "Demo", Versions: []Version{{Version: "1.0.0", Size: 10, SHA256: strings.Repeat("a", 64), URL: "demo.hpkg"}}}}}
	data, sig, err := ix.Sign(key(1))
	if err != nil {
		t.Fatal(err)
	}
	pub := key(1).Public().(ed25519.PublicKey)
	other := key(2).Public().(ed25519.PublicKey)
	_, otherSig, _ := ix.Sign(key(2))
	tampered := bytes.Replace(data, []byte(`"Demo"`), []byte(`"Evil"`), 1)
	badVersion := bytes.Replace(data, []byte(`"1.0.0"`), []byte(`"one"`), 1)
	tests := []struct {
		name      string
		data, sig []byte
		pinned    ed25519.PublicKey
		want      string // "" = accepted
		kind      error
	}{
		{"signed by the pinned key", data, sig, pub, "", nil},
		{"altered index", tampered, sig, pub, "does not match the data it signs", ErrBadSignature},
		{"signed by another key", data, otherSig, pub, "not by the key " + hpkg.KeyID(pub), ErrBadSignature},
		{"pinned another key", data, sig, other, "signed by key " + hpkg.KeyID(pub), ErrBadSignature},
		{"no signature", data, nil, pub, "has no signature", ErrBadSignature},
		{"garbage signature", data, []byte("nope\n"), pub, "index.json.sig", ErrBadSignature},
		{"unsigned allowed: altered accepted", tampered, nil, nil, "", nil},
		{"a bad version, signed", badVersion, hpkg.SignDetached(badVersion, key(1)), pub, "versions[0]", errdefs.ErrInvalidArgument},
		{"not JSON", []byte("<html>"), nil, nil, "index.json", errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Open("m", tt.data, tt.sig, tt.pinned)
			if tt.want == "" {
				if err != nil || got == nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v, want %q (%v)", err, tt.want, tt.kind)
			}
		})
	}
}

func TestChooseAndNewer(t *testing.T) {
	p := &Package{ID: "demo"}
	for _, v := range []string{"1.0.0", "2.0.0-rc.1", "1.10.0", "1.2.0", "1.9.9"} {
		p.Versions = append(p.Versions, Version{Version: v})
	}
	choose := []struct{ want, got, err string }{
		{"", "1.10.0", ""},
		{"1.2.0", "1.2.0", ""},
		{"v1.2.0", "1.2.0", ""},
		{"2.0.0-rc.1", "2.0.0-rc.1", ""},
		{"3.0.0", "", "has no version 3.0.0; the marketplace has 2.0.0-rc.1, 1.10.0, 1.9.9, 1.2.0, 1.0.0"},
		{"latest", "", "demo@latest"},
	}
	for _, c := range choose {
		v, err := p.Choose(c.want)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Choose(%q): err %v, want %q", c.want, err, c.err)
			}
			continue
		}
		if err != nil || v.Version != c.got {
			t.Errorf("Choose(%q) = %q, %v; want %q", c.want, v.Version, err, c.got)
		}
	}
	newer := []struct {
		installed, want string
	}{
		{"1.0.0", "1.10.0"},
		{"1.9.9", "1.10.0"},
		{"1.10.0", ""},
		{"2.0.0-beta", "2.0.0-rc.1"}, // a pre-release installed: pre-releases count
		{"2.0.0", ""},
	}
	for _, c := range newer {
		v, ok := p.Newer(c.installed)
		if ok != (c.want != "") || v.Version != c.want {
			t.Errorf("Newer(%q) = %q, %v; want %q", c.installed, v.Version, ok, c.want)
		}
	}
	if _, err := (&Package{ID: "x"}).Choose(""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("no versions: %v", err)
	}
}

func TestParseReadme(t *testing.T) {
	tests := []struct{ in, title, desc, notes string }{
		{"# App\n\nDoes things.\n", "App", "Does things.", ""},
		{"Intro line\n# App\n", "App", "Intro line", ""},
		{"# App\n## Changes\n* one\n## Other\nx\n", "App", "", "* one"},
		{"# App\r\n\r\nWindows\r\nlines\r\n", "App", "Windows lines", ""},
		{"", "", "", ""},
		{"# A\n\n" + strings.Repeat("x", 600), "A", strings.Repeat("x", MaxDescription-1) + "…", ""},
	}
	for _, tt := range tests {
		ti, d, n := ParseReadme(tt.in)
		if ti != tt.title || d != tt.desc || n != tt.notes {
			t.Errorf("ParseReadme(%q) = %q, %q, %q; want %q, %q, %q", tt.in, ti, d, n, tt.title, tt.desc, tt.notes)
		}
	}
}

func TestResolve(t *testing.T) {
	tests := []struct{ index, ref, want string }{
		{"https://m.example/apps/index.json", "demo-1.0.0.hpkg", "https://m.example/apps/demo-1.0.0.hpkg"},
		{"https://m.example/apps/index.json", "pkgs/a%20b.hpkg", "https://m.example/apps/pkgs/a%20b.hpkg"},
		{"https://m.example/apps/index.json", "https://cdn.example/x.hpkg", "https://cdn.example/x.hpkg"},
		{"https://m.example/apps/index.json", "/top.hpkg", "https://m.example/top.hpkg"},
	}
	for _, tt := range tests {
		if got, err := Resolve(tt.index, tt.ref); err != nil || got != tt.want {
			t.Errorf("Resolve(%q, %q) = %q, %v; want %q", tt.index, tt.ref, got, err, tt.want)
		}
	}
	for _, u := range []string{"https://m.example/apps", "https://m.example/apps/"} {
		if got := IndexURL(u); got != "https://m.example/apps/index.json" {
			t.Errorf("IndexURL(%q) = %q", u, got)
		}
	}
}

// fileServer serves content at /f.hpkg with Range support; cutAt > 0 makes the first
// answer stop after that many bytes (the connection is closed); ignoreRange serves the
// whole file to every request. It records each request's Range header.
type fileServer struct {
	content     []byte
	cutAt       atomic.Int64
	ignoreRange bool
	ranges      []string
}

func (s *fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	if s.ignoreRange {
		r.Header.Del("Range")
	}
	if n := s.cutAt.Swap(0); n > 0 {
		w.Header().Set("Content-Length", fmt.Sprint(len(s.content)))
		w.WriteHeader(http.StatusOK)
		w.Write(s.content[:n])
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
		return
	}
	http.ServeContent(w, r, "f.hpkg", time.Time{}, bytes.NewReader(s.content))
}

func versionOf(b []byte) Version {
	sum := sha256.Sum256(b)
	return Version{Version: "1.0.0", Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
}

func TestDownload(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	other := append([]byte(nil), content...)
	other[500000] ^= 1
	tests := []struct {
		name        string
		serve       []byte
		want        Version
		cutAt       int64
		part        []byte // left in the cache before
		ignoreRange bool
		err         error    // of the first attempt
		ranges      []string // the Range headers the server saw, over both attempts
	}{
		{name: "whole", serve: content, want: versionOf(content), ranges: []string{""}},
		{name: "cut, then resumed", serve: content, want: versionOf(content), cutAt: 300000, err: ErrCut, ranges: []string{"", "bytes=300000-"}},
		{name: "a part left before", serve: content, want: versionOf(content), part: content[:123456], ranges: []string{"bytes=123456-"}},
		{name: "server ignores Range", serve: content, want: versionOf(content), part: content[:1000], ignoreRange: true, ranges: []string{"bytes=1000-"}},
		{name: "a part longer than the file", serve: content, want: versionOf(content), part: append(content, 'x'), ranges: []string{""}},
		{name: "altered file", serve: other, want: versionOf(content), err: ErrDigest, ranges: []string{""}},
		{name: "bigger file", serve: append(content, "more"...), want: versionOf(content), err: ErrDigest, ranges: []string{""}},
		{name: "smaller file", serve: content[:1000], want: versionOf(content), err: ErrCut, ranges: []string{""}},
		{name: "smaller file than the part", serve: content[:1000], want: versionOf(content), part: content[:2000], err: ErrDigest, ranges: []string{"bytes=2000-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := &fileServer{content: tt.serve, ignoreRange: tt.ignoreRange}
			fs.cutAt.Store(tt.cutAt)
			srv := httptest.NewServer(fs)
			defer srv.Close()
			dir := t.TempDir()
			if tt.part != nil {
				os.WriteFile(filepath.Join(dir, tt.want.SHA256+".hpkg.part"), tt.part, 0o600)
			}
			var last int64
			path, err := Download(context.Background(), srv.Client(), srv.URL+"/f.hpkg", tt.want, dir, func(done, total int64) { last = done })
			if tt.err == nil {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				if errors.Is(err, ErrDigest) {
					if ents, _ := os.ReadDir(dir); len(ents) != 0 {
						t.Fatalf("a file that does not match is kept: %v", ents)
					}
				}
				if !errors.Is(err, ErrCut) || tt.cutAt == 0 {
					if fmt.Sprint(fs.ranges) != fmt.Sprint(tt.ranges) {
						t.Errorf("ranges %q, want %q", fs.ranges, tt.ranges)
					}
					return
				}
				// Cut: the part is kept and the next attempt resumes it.
				if fi, err := os.Stat(filepath.Join(dir, tt.want.SHA256+".hpkg.part")); err != nil || fi.Size() != tt.cutAt {
					t.Fatalf("the part after a cut: %v %v", fi, err)
				}
				if path, err = Download(context.Background(), srv.Client(), srv.URL+"/f.hpkg", tt.want, dir, nil); err != nil {
					t.Fatalf("resume: %v", err)
				}
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
				t.Fatal("the file downloaded is not the content")
			}
			if tt.cutAt == 0 && last != int64(len(content)) {
				t.Errorf("progress ended at %d", last)
			}
			if fmt.Sprint(fs.ranges) != fmt.Sprint(tt.ranges) {
				t.Errorf("ranges %q, want %q", fs.ranges, tt.ranges)
			}
			// Downloaded once: the next time the cached file is checked and used.
			if _, err := Download(context.Background(), srv.Client(), srv.URL+"/f.hpkg", tt.want, dir, nil); err != nil || len(fs.ranges) != len(tt.ranges) {
				t.Errorf("cached: %v, requests %q", err, fs.ranges)
			}
		})
	}
}

func TestDownloadCachedAltered(t *testing.T) {
	content := []byte("package bytes")
	dir := t.TempDir()
	want := versionOf(content)
	p := filepath.Join(dir, want.SHA256+".hpkg")
	os.WriteFile(p, []byte("package bytez"), 0o600)
	_, err := Download(context.Background(), http.DefaultClient, "http://127.0.0.1:1/none", want, dir, nil)
	if !errors.Is(err, ErrDigest) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(p); err == nil {
		t.Fatal("the altered cached file is kept")
	}
}

func TestList(t *testing.T) {
	pub := hpkg.PublicKey{Key: key(1).Public().(ed25519.PublicKey)}.String()
	tests := []struct {
		name string
		m    Marketplace
		want string
	}{
		{"with a key", Marketplace{Name: "main", URL: "https://m.example/", Key: pub}, ""},
		{"unsigned, explicitly", Marketplace{Name: "lan", URL: "http://m.example/", AllowUnsigned: true}, ""},
		{"neither key nor --allow-unsigned", Marketplace{Name: "x", URL: "https://m.example/"}, "--allow-unsigned"},
		{"both", Marketplace{Name: "x", URL: "https://m.example/", Key: pub, AllowUnsigned: true}, "exclude each other"},
		{"bad key", Marketplace{Name: "x", URL: "https://m.example/", Key: "ssh-rsa AAAA"}, "pinned key"},
		{"bad name", Marketplace{Name: "Bad Name", URL: "https://m.example/", Key: pub}, "marketplace name"},
		{"bad url", Marketplace{Name: "x", URL: "ftp://m.example/", Key: pub}, "http:// or https://"},
		{"again", Marketplace{Name: "main", URL: "https://other.example/", Key: pub}, "already added"},
	}
	path := filepath.Join(t.TempDir(), "hearth", "markets.json")
	l, err := LoadList(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		err := l.Add(tt.m)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("list file: %v %v", fi, err)
	}
	l2, err := LoadList(path)
	if err != nil || len(l2.Marketplaces) != 2 || l2.Marketplaces[0].Name != "lan" {
		t.Fatalf("reloaded: %+v %v", l2, err)
	}
	if err := l2.Remove("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("remove missing: %v", err)
	}
	if err := l2.Remove("lan"); err != nil || len(l2.Marketplaces) != 1 {
		t.Errorf("remove: %v %+v", err, l2.Marketplaces)
	}
}

func TestFetch(t *testing.T) {
	dir := t.TempDir()
	writePackage(t, dir, "demo.hpkg", "demo", "1.0.0", "# Demo\n", false)
	if _, err := Build(context.Background(), dir, key(9), BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	pinned := hpkg.PublicKey{Key: key(9).Public().(ed25519.PublicKey)}.String()
	wrong := hpkg.PublicKey{Key: key(3).Public().(ed25519.PublicKey)}.String()
	ix, iu, err := Fetch(context.Background(), srv.Client(), Marketplace{Name: "t", URL: srv.URL, Key: pinned})
	if err != nil || iu != srv.URL+"/index.json" || len(ix.Packages) != 1 {
		t.Fatalf("fetch: %v %q %+v", err, iu, ix)
	}
	if _, _, err := Fetch(context.Background(), srv.Client(), Marketplace{Name: "t", URL: srv.URL, Key: wrong}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong key: %v", err)
	}
	os.Remove(filepath.Join(dir, SigName))
	if _, _, err := Fetch(context.Background(), srv.Client(), Marketplace{Name: "t", URL: srv.URL, Key: pinned}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("no signature: %v", err)
	}
	if _, _, err := Fetch(context.Background(), srv.Client(), Marketplace{Name: "t", URL: srv.URL, AllowUnsigned: true}); err != nil {
		t.Fatalf("unsigned allowed: %v", err)
	}
	if _, _, err := Fetch(context.Background(), srv.Client(), Marketplace{Name: "t", URL: srv.URL + "/none/", Key: pinned}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("no index: %v", err)
	}
}
