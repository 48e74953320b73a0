package cli

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"hearth.dev/internal/hpkg"
)

// verifyPackage verifies an unsigned-or-signed package file and returns what it holds.
func verifyPackage(t *testing.T, file string, trust hpkg.Trust) *hpkg.Verified {
	t.Helper()
	root, _ := os.OpenRoot(t.TempDir())
	defer root.Close()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := hpkg.Verify(context.Background(), f, trust, root, hpkg.VerifyOptions{AllowUntrusted: trust == nil})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestPackComposeFromRegistry pulls the images from an in-process registry, seeds a
// volume from a project directory and writes a signed package that verifies.
func TestPackComposeFromRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, r := range []string{host + "/team/app:1", host + "/library/db:16"} {
		img, err := random.Image(2048, 2)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(r)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	work := t.TempDir()
	proj := filepath.Join(work, "proj")
	os.MkdirAll(filepath.Join(proj, "conf", "sub"), 0o755)
	os.WriteFile(filepath.Join(proj, "conf", "app.ini"), []byte("x=1\n"), 0o644)
	os.WriteFile(filepath.Join(proj, "conf", "sub", "more.ini"), []byte("y=2\n"), 0o644)
	os.WriteFile(filepath.Join(proj, ".env"), []byte("TAG=1\n"), 0o644)
	os.WriteFile(filepath.Join(proj, "app.yml"), []byte("a: 1\n"), 0o644)
	os.WriteFile(filepath.Join(proj, "compose.yaml"), []byte(`
name: proj
services:
  app:
    image: `+host+`/team/app:${TAG}
    ports: ["8080:8080"]
    volumes: [./conf:/etc/app:ro, ./app.yml:/app/app.yml]
    depends_on: {db: {condition: service_healthy}}
  worker:
    image: `+host+`/team/app:1
    container_name: w
  db:
    image: `+host+`/library/db:16
    healthcheck: {test: [CMD, "true"]}
`), 0o644)
	prefix := filepath.Join(work, "dev")
	if code, _, stderr := hctl("keys", "generate", "--out", prefix); code != 0 {
		t.Fatal(stderr)
	}
	pub, err := hpkg.ReadPublicKey(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(work, "proj.hpkg")
	code, stdout, stderr := hctl("pack", "--compose", filepath.Join(proj, "compose.yaml"), "--key", prefix+".key", "--out", out, "--version", "2.1.0", "-o", "json")
	if code != 0 {
		t.Fatalf("pack --compose: %d %s", code, stderr)
	}
	var rep composeResult
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Package == nil || rep.Package.Version != "2.1.0" || len(rep.Images) != 2 {
		t.Fatalf("report %s (%v)", stdout, err)
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "services.worker.container_name") {
		t.Errorf("warnings %q", rep.Warnings)
	}
	v := verifyPackage(t, out, hpkg.TrustKeys{pub.Key})
	if !v.Trusted || v.Manifest.ID != "proj" || v.Manifest.Daemons["app"].Image != v.Manifest.Daemons["worker"].Image {
		t.Fatalf("verified %+v", v.Manifest)
	}
	if ms := v.Manifest.Daemons["app"].Mounts; len(ms) != 2 || ms[1].File != "app.yml" || ms[1].Path != "/app/app.yml" {
		t.Errorf("mounts %+v", ms)
	}
	for _, p := range []string{"assets/seed/conf/app.ini", "assets/seed/conf/sub/more.ini", "assets/seed/app.yml/app.yml", "images/index.json"} {
		if _, ok := v.TOC.Lookup(p); !ok {
			t.Errorf("%s is not in the package", p)
		}
	}
	if v.Manifest.Hooks.Install == nil || !strings.Contains(strings.Join(v.Manifest.Hooks.Install.Command, " "), "/media/hearth/assets/seed/conf/.") {
		t.Errorf("no seeding hook: %+v", v.Manifest.Hooks.Install)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 4 {
		t.Errorf("pack --compose left files beside its output: %d entries", len(ents))
	}
}

// TestPackComposeImagesFrom takes the images from a directory (an OCI layout named as the
// reference, a docker save file with '_'), and writes a directory with --out DIR/.
func TestPackComposeImagesFrom(t *testing.T) {
	work := t.TempDir()
	images := filepath.Join(work, "saved")
	img, _ := random.Image(1024, 1)
	lay, err := layout.Write(filepath.Join(images, "example", "app:2"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lay.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	db, _ := random.Image(1024, 1)
	tag, _ := name.NewTag("postgres:16")
	if err := tarball.WriteToFile(filepath.Join(images, "postgres_16.tar"), tag, db); err != nil {
		t.Fatal(err)
	}
	compose := filepath.Join(work, "compose.yaml")
	os.WriteFile(compose, []byte("services:\n  app: {image: \"example/app:2\"}\n  db: {image: \"postgres:16\"}\n  cache: {image: redis}\n"), 0o644)

	// redis is missing: refused, naming the names it looked for, and nothing is written.
	code, _, stderr := hctl("pack", "--compose", compose, "--images-from", images, "--allow-unsigned", "--out", filepath.Join(work, "x.hpkg"))
	if code == 0 || !strings.Contains(stderr, "image redis is not in") || !strings.Contains(stderr, "redis_latest.tar") {
		t.Fatalf("missing image: %d %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(work, "x.hpkg")); err == nil {
		t.Fatal("a package was written")
	}
	// Nor a directory, and no scratch is left.
	if code, _, _ := hctl("pack", "--compose", compose, "--images-from", images, "--out", filepath.Join(work, "d")+"/"); code == 0 {
		t.Fatal("a missing image was accepted")
	}
	if ents, _ := os.ReadDir(work); len(ents) != 2 {
		t.Fatalf("a refused pack left %d entries (want saved/ and compose.yaml)", len(ents))
	}
	os.WriteFile(compose, []byte("services:\n  app: {image: \"example/app:2\"}\n  db: {image: \"postgres:16\"}\n"), 0o644)
	dir := filepath.Join(work, "pkg") + "/"
	if code, _, stderr := hctl("pack", "--compose", compose, "--images-from", images, "--out", dir, "--id", "saved"); code != 0 {
		t.Fatalf("pack --compose to a directory: %s", stderr)
	}
	for _, p := range []string{"manifest.yaml", "images/app/oci-layout", "images/postgres"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	// The directory packs as any package directory.
	out := filepath.Join(work, "saved.hpkg")
	if code, _, stderr := hctl("pack", dir, "--allow-unsigned", "--out", out); code != 0 {
		t.Fatalf("pack DIR: %s", stderr)
	}
	if v := verifyPackage(t, out, nil); v.Manifest.ID != "saved" || len(v.Manifest.Images) != 2 {
		t.Fatalf("verified %+v", v.Manifest)
	}
	// A directory that holds a manifest already is not overwritten.
	if code, _, stderr := hctl("pack", "--compose", compose, "--manifest-only", "--out", dir); code == 0 || !strings.Contains(stderr, "is not empty") {
		t.Fatalf("second write: %d %s", code, stderr)
	}
}

// TestPackComposeRefused: a project that cannot map writes nothing and names the key.
func TestPackComposeRefused(t *testing.T) {
	work := t.TempDir()
	compose := filepath.Join(work, "compose.yaml")
	os.WriteFile(compose, []byte("services:\n  ha:\n    image: x\n    network_mode: host\n"), 0o644)
	code, _, stderr := hctl("pack", "--compose", compose, "--manifest-only", "--out", filepath.Join(work, "out")+"/")
	if code == 0 || !strings.Contains(stderr, "compose.yaml:4:19: services.ha.network_mode: cannot map") {
		t.Fatalf("%d %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(work, "out")); err == nil {
		t.Error("a directory was written")
	}
	// --manifest-only fetches nothing: the image need not exist anywhere.
	os.WriteFile(compose, []byte("services:\n  ha:\n    image: nowhere.invalid/x:1\n"), 0o644)
	if code, stdout, stderr := hctl("pack", "--compose", compose, "--manifest-only", "--out", filepath.Join(work, "m")+"/"); code != 0 || !strings.Contains(stdout, "put each image at images/<name>") {
		t.Fatalf("manifest-only: %d %s %s", code, stdout, stderr)
	}
	// Unsigned .hpkg needs a word.
	if code, _, stderr := hctl("pack", "--compose", compose); code == 0 || !strings.Contains(stderr, "give --key") {
		t.Fatalf("no key: %d %s", code, stderr)
	}
	// pack DIR and --compose do not mix.
	if code, _, _ := hctl("pack", work, "--compose", compose, "--allow-unsigned"); code == 0 {
		t.Fatal("DIR with --compose accepted")
	}
}
