package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"hearth.dev/internal/hpkg"
)

// hctl runs hearthctl and returns its exit code, stdout and stderr.
func hctl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeTar(t *testing.T, file string, gz bool, add func(tw *tar.Writer)) {
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var w interface {
		Write([]byte) (int, error)
	} = f
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(f)
		w = zw
	}
	tw := tar.NewWriter(w)
	add(tw)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		zw.Close()
	}
}

// tarTree writes the tree at dir as a tar file.
func tarTree(t *testing.T, file, dir string) {
	writeTar(t, file, false, func(tw *tar.Writer) {
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			rel, _ := filepath.Rel(dir, p)
			if rel == "." {
				return nil
			}
			h, _ := tar.FileInfoHeader(fi, "")
			h.Name = rel
			tw.WriteHeader(h)
			if fi.Mode().IsRegular() {
				b, _ := os.ReadFile(p)
				tw.Write(b)
			}
			return nil
		})
	})
}

const packManifest = `id: hello
version: 1.0.0
images:
  app: {oci: images/app.tar}
  base: {oci: images/base.tar.gz}
  db: {oci: images/db}
  tools: {oci: images/tools.oci.tar}
daemons:
  app: {image: app, command: [/app]}
  db: {image: db, command: [/db], ready: {tcp: 5432}}
`

// packDir makes a package directory with an image in each format; db and tools are the
// same image, so they share every blob.
func packDir(t *testing.T) string {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "images"), 0o755)
	os.MkdirAll(filepath.Join(dir, "assets", "static"), 0o755)
	os.WriteFile(filepath.Join(dir, "manifest.yaml"), []byte(packManifest), 0o644)
	os.WriteFile(filepath.Join(dir, "assets", "static", "style.css"), []byte("body{}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "LICENSE"), []byte("MIT\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("# hello\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "icon.svg"), []byte("<svg/>\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not packed\n"), 0o644)

	app, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(filepath.Join(dir, "images", "app.tar"), name.MustParseReference("app:1").(name.Tag), app); err != nil {
		t.Fatal(err)
	}
	db, _ := random.Image(8192, 3)
	p, err := layout.Write(filepath.Join(dir, "images", "db"), empty.Index)
	if err != nil || p.AppendImage(db) != nil {
		t.Fatal(err)
	}
	tarTree(t, filepath.Join(dir, "images", "tools.oci.tar"), filepath.Join(dir, "images", "db"))
	writeTar(t, filepath.Join(dir, "images", "base.tar.gz"), true, func(tw *tar.Writer) {
		tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755})
		tw.WriteHeader(&tar.Header{Name: "bin/sh", Mode: 0o755, Size: 2})
		tw.Write([]byte("#!"))
	})
	return dir
}

func TestPackIsReproducibleAndVerifies(t *testing.T) {
	dir := packDir(t)
	work := t.TempDir()
	prefix := filepath.Join(work, "dev")
	if code, _, stderr := hctl("keys", "generate", "--out", prefix, "--comment", "test"); code != 0 {
		t.Fatalf("keys generate: %s", stderr)
	}
	if fi, err := os.Stat(prefix + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v", fi, err)
	}
	pub, err := hpkg.ReadPublicKey(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(work, "a.hpkg"), filepath.Join(work, "b.hpkg")
	code, stdout, stderr := hctl("pack", dir, "--key", prefix+".key", "--out", a, "--output", "json")
	if code != 0 {
		t.Fatalf("pack: %s", stderr)
	}
	var res packResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.ID != "hello" || res.KeyID != pub.ID() || len(res.Images) != 4 {
		t.Fatalf("pack printed %s (%v)", stdout, err)
	}
	if code, _, stderr := hctl("pack", dir, "--key", prefix+".key", "--out", b); code != 0 {
		t.Fatalf("second pack: %s", stderr)
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if len(da) == 0 || !bytes.Equal(da, db) {
		t.Fatalf("the same directory packed twice gave different files (%d and %d bytes)", len(da), len(db))
	}
	if ents, _ := os.ReadDir(work); len(ents) != 4 {
		t.Errorf("pack left scratch files beside its output: %d entries", len(ents))
	}

	stage := t.TempDir()
	root, _ := os.OpenRoot(stage)
	defer root.Close()
	f, _ := os.Open(a)
	defer f.Close()
	v, err := hpkg.Verify(context.Background(), f, hpkg.TrustKeys{pub.Key}, root, hpkg.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !v.Trusted || v.TOC.Package.Version != "1.0.0" {
		t.Fatalf("verified %+v", v)
	}
	for _, p := range []string{"assets/static/style.css", "LICENSE", "README.md", "icon.svg"} {
		if _, ok := v.TOC.Lookup(p); !ok {
			t.Errorf("%s was not packed", p)
		}
	}
	for _, p := range []string{"notes.txt", "images/app.tar", "images/db"} {
		if _, ok := v.TOC.Lookup(p); ok {
			t.Errorf("%s was packed", p)
		}
	}
	// The layout: one entry per image, named; db and tools share their blobs.
	idx, err := layout.ImageIndexFromPath(filepath.Join(stage, "images"))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	digests := map[string]v1.Hash{}
	for _, d := range im.Manifests {
		digests[d.Annotations[hpkg.AnnotationImageName]] = d.Digest
	}
	if len(digests) != 4 || digests["db"] != digests["tools"] {
		t.Fatalf("index %+v", digests)
	}
	img, err := idx.Image(digests["app"])
	if err != nil {
		t.Fatal(err)
	}
	if ls, err := img.Layers(); err != nil || len(ls) != 2 {
		t.Fatalf("app has %d layers: %v", len(ls), err)
	}
}

func TestPackRefuses(t *testing.T) {
	work := t.TempDir()
	prefix := filepath.Join(work, "dev")
	if code, _, stderr := hctl("keys", "generate", "--out", prefix); code != 0 {
		t.Fatal(stderr)
	}
	for _, tc := range []struct {
		name string
		edit func(dir string)
		args []string
		want string
	}{
		{"no key", nil, []string{}, "give --key KEY"},
		{"key and unsigned", nil, []string{"--key", prefix + ".key", "--allow-unsigned"}, "not both"},
		{"bad manifest", func(dir string) {
			os.WriteFile(filepath.Join(dir, "manifest.yaml"), []byte(strings.Replace(packManifest, "image: db, command", "image: dbx, command", 1)), 0o644)
		}, nil, "manifest.yaml:10:15: daemons.db.image: unknown image \"dbx\""},
		{"unknown field", func(dir string) {
			os.WriteFile(filepath.Join(dir, "manifest.yaml"), []byte(packManifest+"extra: 1\n"), 0o644)
		}, nil, "manifest.yaml:11: field extra not found"},
		{"stored image", func(dir string) {
			os.WriteFile(filepath.Join(dir, "manifest.yaml"), []byte(strings.Replace(packManifest, "{oci: images/app.tar}", "{ref: \"app:1\"}", 1)), 0o644)
		}, nil, "manifest.yaml:4:14: images.app.ref: \"app:1\" is an image stored on one host"},
		{"missing image", func(dir string) { os.Remove(filepath.Join(dir, "images", "app.tar")) }, nil, "manifest.yaml:4:14: images.app.oci: image "},
		{"symlink asset", func(dir string) { os.Symlink("/etc/passwd", filepath.Join(dir, "assets", "passwd")) }, nil, "a package holds only files and directories"},
		{"readable key", func(string) { os.Chmod(prefix+".key", 0o644) }, nil, "chmod 600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := packDir(t)
			if tc.edit != nil {
				tc.edit(dir)
			}
			args := tc.args
			if args == nil {
				args = []string{"--key", prefix + ".key"}
			}
			code, _, stderr := hctl(append([]string{"pack", dir, "--out", filepath.Join(t.TempDir(), "p.hpkg")}, args...)...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("pack exited %d: %s\nwant an error containing %q", code, stderr, tc.want)
			}
		})
	}
}

func TestPackUnsigned(t *testing.T) {
	dir := packDir(t)
	out := filepath.Join(t.TempDir(), "u.hpkg")
	if code, _, stderr := hctl("pack", dir, "--allow-unsigned", "--out", out); code != 0 {
		t.Fatal(stderr)
	}
	f, _ := os.Open(out)
	defer f.Close()
	root, _ := os.OpenRoot(t.TempDir())
	defer root.Close()
	if _, err := hpkg.Verify(context.Background(), f, nil, root, hpkg.VerifyOptions{}); !errors.Is(err, hpkg.ErrUnsigned) {
		t.Fatalf("Verify of an unsigned package without AllowUntrusted: %v", err)
	}
}

func TestPackHelpTeaches(t *testing.T) {
	code, stdout, _ := hctl("pack", "--help")
	for _, want := range []string{"manifest.yaml", "images/app.tar", "{oci: images/app.tar}", "--key", "reproducible"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("pack --help lacks %q", want)
		}
	}
	if code, _, _ := hctl("keys", "generate", "--out", filepath.Join(t.TempDir(), "k"), "--comment", "x"); code != 0 {
		t.Error("keys generate failed")
	}
}
