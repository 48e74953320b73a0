package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/imagesrc"
	"hearth.dev/services/containerd-lite/imagetest"
	"hearth.dev/services/containerd-lite/internal/store"
	"hearth.dev/services/containerd-lite/internal/unpack"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: images keep their files' owners")
	}
}

type env struct {
	svc   *Service
	dir   string
	users map[string][]string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{dir: dir, users: map[string][]string{}}
	e.svc, err = New(Options{Dir: filepath.Join(dir, "images"), Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		UsedBy: func(d string) ([]string, error) { return e.users[d], nil }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// The test image: busybox, then a layer that deletes, hides, links and re-owns.
func testLayers(t *testing.T) [][]imagetest.File {
	bb, err := imagetest.Busybox("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	base := append(bb,
		imagetest.File{Name: "etc/motd", Body: "hello"},
		imagetest.File{Name: "opt/", Type: tar.TypeDir},
		imagetest.File{Name: "opt/old-a", Body: "a"},
		imagetest.File{Name: "opt/old-b", Body: "b"},
		imagetest.File{Name: "usr/bin/", Type: tar.TypeDir},
		imagetest.File{Name: "usr/bin/su", Body: "su", Mode: 0o4755},
	)
	top := []imagetest.File{
		{Name: "etc/.wh.motd"},
		{Name: "opt/.wh..wh..opq"},
		{Name: "opt/new", Body: "n"},
		{Name: "var/lib/postgresql/", Type: tar.TypeDir, Mode: 0o700, UID: 999, GID: 999},
		{Name: "var/lib/postgresql/PG_VERSION", Body: "15", UID: 999, GID: 999, Mode: 0o600},
		{Name: "usr/bin/sudo-link", Type: tar.TypeLink, Link: "usr/bin/su"},
		{Name: "sbin", Type: tar.TypeSymlink, Link: "bin"},
		{Name: "abs", Type: tar.TypeSymlink, Link: "/etc/passwd"},
	}
	return [][]imagetest.File{base, top}
}

// expected is the flattened tree of testLayers: path → mode, owner, link or body.
func expectedTree() map[string]string {
	return map[string]string{
		"opt":                           "drwxr-xr-x 0:0",
		"opt/new":                       "-rw-r--r-- 0:0 n",
		"var/lib/postgresql":            "drwx------ 999:999",
		"var/lib/postgresql/PG_VERSION": "-rw------- 999:999 15",
		"usr/bin/su":                    "urwxr-xr-x 0:0 su",
		"usr/bin/sudo-link":             "urwxr-xr-x 0:0 su",
		"sbin":                          "Lrwxrwxrwx 0:0 -> bin",
		"abs":                           "Lrwxrwxrwx 0:0 -> /etc/passwd",
		"bin/sh":                        "Lrwxrwxrwx 0:0 -> busybox",
		"etc/passwd":                    "-rw-r--r-- 0:0 root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"tmp":                           "dtrwxrwxrwx 0:0",
	}
}

func describe(t *testing.T, root, rel string) string {
	t.Helper()
	p := filepath.Join(root, rel)
	fi, err := os.Lstat(p)
	if err != nil {
		return "missing"
	}
	st := fi.Sys().(*syscall.Stat_t)
	s := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		l, _ := os.Readlink(p)
		s += " -> " + l
	case fi.Mode().IsRegular():
		b, _ := os.ReadFile(p)
		s += " " + string(b)
	}
	return s
}

func checkTree(t *testing.T, root string, want map[string]string, absent ...string) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if got := describe(t, root, k); got != want[k] {
			t.Errorf("%s: got %q, want %q", k, got, want[k])
		}
	}
	for _, a := range absent {
		if _, err := os.Lstat(filepath.Join(root, a)); err == nil {
			t.Errorf("%s should not exist", a)
		}
	}
	// Hardlinks share an inode.
	a, _ := os.Lstat(filepath.Join(root, "usr/bin/su"))
	b, _ := os.Lstat(filepath.Join(root, "usr/bin/sudo-link"))
	if a != nil && b != nil && !os.SameFile(a, b) {
		t.Error("usr/bin/sudo-link is not a hardlink of usr/bin/su")
	}
}

func TestImportFormats(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	src := t.TempDir()
	cfg := v1.Config{Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "echo hi"}, Env: []string{"A=1"}, User: "999:999",
		WorkingDir: "/opt", ExposedPorts: map[string]struct{}{"8080/tcp": {}}, Labels: map[string]string{"l": "v"}}
	img := imagetest.Image(cfg, testLayers(t)...)
	wantDigest, _ := img.ConfigName()

	layoutDir := filepath.Join(src, "layout")
	if err := imagetest.WriteOCILayout(layoutDir, img); err != nil {
		t.Fatal(err)
	}
	ociTar := filepath.Join(src, "oci.tar")
	if err := imagetest.WriteOCIArchive(ociTar, img); err != nil {
		t.Fatal(err)
	}
	dockerTar := filepath.Join(src, "docker.tar")
	if err := imagetest.WriteDockerArchive(dockerTar, img, "app:1"); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct{ path, name string }{
		{layoutDir, "from-layout"}, {ociTar, "from-oci-archive"}, {dockerTar, "from-docker"},
	} {
		var phases []string
		got, err := e.svc.Import(context.Background(), tc.path, tc.name, func(p Progress) {
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
			}
		})
		if err != nil {
			t.Fatalf("import %s: %v", tc.path, err)
		}
		if got.Digest != wantDigest.String() {
			t.Fatalf("import %s: digest %s, want %s", tc.path, got.Digest, wantDigest)
		}
		if i == 0 {
			if strings.Join(phases, ",") != "reading,unpacking,committing" {
				t.Errorf("progress phases %v", phases)
			}
			checkTree(t, got.Rootfs, expectedTree(), "etc/motd", "opt/old-a", "opt/old-b")
			c := got.Config
			if strings.Join(c.Entrypoint, " ") != "/bin/sh" || c.User != "999:999" || c.WorkingDir != "/opt" ||
				strings.Join(c.ExposedPorts, ",") != "8080/tcp" || c.Labels["l"] != "v" || strings.Join(c.Env, ",") != "A=1" {
				t.Errorf("config not kept: %+v", c)
			}
		} else if len(phases) > 1 && phases[1] == "unpacking" {
			t.Errorf("import %s unpacked again an image already stored", tc.path)
		}
	}
	// One image, three names, one tree on disk.
	list, err := e.svc.List(context.Background())
	if err != nil || len(list) != 1 || len(list[0].Names) != 3 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "images", "rootfs")); len(ents) != 1 {
		t.Errorf("%d trees stored, want 1", len(ents))
	}

	// A plain root file system tarball is its own image.
	bb, _ := imagetest.Busybox("/bin/busybox")
	rootTar := filepath.Join(src, "rootfs.tar")
	if err := imagetest.WriteRootfsTar(rootTar, bb...); err != nil {
		t.Fatal(err)
	}
	plain, err := e.svc.Import(context.Background(), rootTar, "plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, plain.Rootfs, map[string]string{"bin/sh": "Lrwxrwxrwx 0:0 -> busybox", "tmp": "dtrwxrwxrwx 0:0"})
	if again, err := e.svc.Import(context.Background(), rootTar, "", nil); err != nil || again.Digest != plain.Digest {
		t.Errorf("re-import of the tarball: %v %v", again.Digest, err)
	}
	// The digest hashed while unpacking is the one hearthctl pack gives the same tarball.
	if src, err := imagesrc.Open(rootTar, t.TempDir()); err != nil {
		t.Fatal(err)
	} else if d, _ := src.Image.ConfigName(); d.String() != plain.Digest {
		t.Errorf("import digest %s, imagesrc.Open's %s", plain.Digest, d)
	}
	// Compressed, it is the same image.
	gzTar := rootTar + ".gz"
	gzipFile(t, rootTar, gzTar)
	if gz, err := e.svc.Import(context.Background(), gzTar, "plain-gz", nil); err != nil || gz.Digest != plain.Digest {
		t.Errorf("import of the gzipped tarball: %v %v, want %s", gz.Digest, err, plain.Digest)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "images", "tmp")); len(ents) != 0 {
		t.Errorf("import left scratch files: %v", ents)
	}
}

func gzipFile(t *testing.T, from, to string) {
	t.Helper()
	raw, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(raw)
	zw.Close()
	if err := os.WriteFile(to, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A hostile root file system tarball is refused as a hostile layer is, leaving nothing.
func TestImportRefusesHostileRootfsTar(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	tarPath := filepath.Join(t.TempDir(), "evil.tar")
	if err := imagetest.WriteRootfsTar(tarPath,
		imagetest.File{Name: "ok", Body: "fine"},
		imagetest.File{Name: "link", Type: tar.TypeSymlink, Link: "../../../../../../tmp"},
		imagetest.File{Name: "link/hearth-pwned-rootfs", Body: "x"},
	); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.Import(context.Background(), tarPath, "evil", nil)
	if !errors.Is(err, unpack.ErrRefused) || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tarPath) {
		t.Fatalf("import of a hostile tarball: %v", err)
	}
	if _, err := os.Lstat("/tmp/hearth-pwned-rootfs"); err == nil {
		os.Remove("/tmp/hearth-pwned-rootfs")
		t.Fatal("the tarball wrote outside the store")
	}
	if list, _ := e.svc.List(context.Background()); len(list) != 0 {
		t.Errorf("a refused image is listed: %+v", list)
	}
	for _, d := range []string{"tmp", "rootfs"} {
		if ents, _ := os.ReadDir(filepath.Join(e.dir, "images", d)); len(ents) != 0 {
			t.Errorf("images/%s holds %v after a refused import", d, ents)
		}
	}
}

func TestImportRefusesHostileLayer(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := imagetest.Image(v1.Config{}, []imagetest.File{
		{Name: "ok", Body: "fine"},
		{Name: "link", Type: tar.TypeSymlink, Link: "../../../../../../tmp"},
		{Name: "link/hearth-pwned", Body: "x"},
	})
	dir := filepath.Join(t.TempDir(), "layout")
	if err := imagetest.WriteOCILayout(dir, img); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.Import(context.Background(), dir, "evil", nil)
	if !errors.Is(err, unpack.ErrRefused) || !strings.Contains(err.Error(), `"link/hearth-pwned"`) {
		t.Fatalf("import of a hostile layer: %v", err)
	}
	if _, err := os.Lstat("/tmp/hearth-pwned"); err == nil {
		os.Remove("/tmp/hearth-pwned")
		t.Fatal("the layer wrote outside the store")
	}
	if list, _ := e.svc.List(context.Background()); len(list) != 0 {
		t.Errorf("a refused image is listed: %+v", list)
	}
	for _, d := range []string{"tmp", "rootfs"} {
		if ents, _ := os.ReadDir(filepath.Join(e.dir, "images", d)); len(ents) != 0 {
			t.Errorf("images/%s holds %v after a refused import", d, ents)
		}
	}
}

func TestImportBadInput(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	notTar := filepath.Join(dir, "notes.txt")
	os.WriteFile(notTar, []byte("just some text, not an archive at all, nothing to see here ............................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................"), 0o644)
	empty := filepath.Join(dir, "empty-dir")
	os.Mkdir(empty, 0o755)
	for _, tc := range []struct{ path, name, want string }{
		{filepath.Join(dir, "missing.tar"), "", "no such file"},
		{notTar, "", "not a tar archive"},
		{empty, "", "must be an OCI image layout"},
		{empty, "Bad Name", "image name"},
	} {
		_, err := e.svc.Import(context.Background(), tc.path, tc.name, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errdefs.Code(err).String() != "InvalidArgument" {
			t.Errorf("Import(%s, %q) = %v, want InvalidArgument containing %q", tc.path, tc.name, err, tc.want)
		}
	}
}

// registryWithAuth serves go-containerregistry's registry on 127.0.0.1 behind basic auth.
func registryWithAuth(t *testing.T, user, pass string) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestPull(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	host := registryWithAuth(t, "hearth", "s3cret")
	// Credentials come from the docker config file.
	cfgDir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("hearth:s3cret"))
	os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)), 0o600)
	t.Setenv("DOCKER_CONFIG", cfgDir)

	bb, _ := imagetest.Busybox("/bin/busybox")
	mine := imagetest.Image(v1.Config{Cmd: []string{"sh"}}, append(bb, imagetest.File{Name: "arch", Body: "mine"}))
	other := imagetest.ForPlatform(imagetest.Image(v1.Config{}, []imagetest.File{{Name: "arch", Body: "other"}}),
		v1.Platform{OS: "linux", Architecture: "s390x"})
	idx := imagetest.Index(other, mine)
	kc := remote.WithAuth(&basic{"hearth", "s3cret"})
	single, _ := name.ParseReference(host+"/app:1", name.Insecure)
	multi, _ := name.ParseReference(host+"/multi:1", name.Insecure)
	if err := remote.Write(single, mine, kc); err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(multi, idx, kc); err != nil {
		t.Fatal(err)
	}

	got, err := e.svc.Pull(context.Background(), host+"/multi:1", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := mine.ConfigName()
	if got.Digest != want.String() {
		t.Fatalf("pulled %s from the index, want this platform's %s", got.Digest, want)
	}
	checkTree(t, got.Rootfs, map[string]string{"arch": "-rw-r--r-- 0:0 mine"})
	if len(got.Names) != 1 || got.Names[0] != host+"/multi:1" {
		t.Errorf("names %v", got.Names)
	}
	// The same image by another reference is not stored twice.
	again, err := e.svc.Pull(context.Background(), host+"/app:1", "app", true, nil)
	if err != nil || again.Digest != got.Digest || len(again.Names) != 2 {
		t.Fatalf("second pull: %+v %v", again, err)
	}
	// Without credentials the registry refuses.
	os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(`{}`), 0o600)
	if _, err := e.svc.Pull(context.Background(), host+"/app:1", "x", true, nil); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") && !strings.Contains(err.Error(), "401") {
		t.Errorf("pull without credentials: %v", err)
	}
}

type basic struct{ user, pass string }

func (b *basic) Authorization() (*authConfig, error) {
	return &authConfig{Username: b.user, Password: b.pass}, nil
}

func TestNamesDeleteAndPrune(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	a := imagetest.Image(v1.Config{}, []imagetest.File{{Name: "a", Body: "a"}})
	b := imagetest.Image(v1.Config{}, []imagetest.File{{Name: "b", Body: "b"}})
	for n, img := range map[string]v1.Image{"a": a, "b": b} {
		if err := imagetest.WriteOCILayout(filepath.Join(dir, n), img); err != nil {
			t.Fatal(err)
		}
	}
	ia, err := e.svc.Import(ctx, filepath.Join(dir, "a"), "app", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Tag(ctx, "app", "app:stable"); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"app", "app:latest", "app:stable", ia.Digest, ia.Digest[7:19]} {
		if d, err := e.svc.Resolve(ref); err != nil || d != ia.Digest {
			t.Errorf("Resolve(%q) = %q, %v", ref, d, err)
		}
	}
	// Removing one of two names keeps the image.
	if del, err := e.svc.Delete(ctx, "app:stable", false); err != nil || len(del) != 0 {
		t.Fatalf("Delete(app:stable) = %v, %v", del, err)
	}
	// A used image is refused, then removed by force with its files kept until unused.
	e.users[ia.Digest] = []string{"web"}
	if _, err := e.svc.Delete(ctx, "app", false); errdefs.Code(err).String() != "FailedPrecondition" || !strings.Contains(err.Error(), "web") {
		t.Fatalf("Delete of a used image: %v", err)
	}
	if del, err := e.svc.Delete(ctx, "app", true); err != nil || len(del) != 1 {
		t.Fatalf("forced Delete = %v, %v", del, err)
	}
	if _, err := os.Stat(ia.Rootfs); err != nil {
		t.Fatalf("files of an image in use were removed: %v", err)
	}
	if _, err := e.svc.Get(ctx, "app"); errdefs.Code(err).String() != "NotFound" {
		t.Fatalf("Get after delete: %v", err)
	}
	// b loses its only name when the name moves: unnamed, unused, pruned. a's files go once unused.
	ib, err := e.svc.Import(ctx, filepath.Join(dir, "b"), "tmp", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Import(ctx, filepath.Join(dir, "a"), "tmp", nil); err != nil {
		t.Fatal(err)
	}
	delete(e.users, ia.Digest)
	removed, freed, err := e.svc.Prune(ctx)
	if err != nil || len(removed) != 1 || removed[0] != ib.Digest || freed != 1 {
		t.Fatalf("Prune = %v %d %v", removed, freed, err)
	}
	if _, err := os.Stat(ib.Rootfs); !os.IsNotExist(err) {
		t.Errorf("pruned image's files remain: %v", err)
	}
	if _, err := e.svc.Resolve("tmp"); err != nil {
		t.Errorf("named image pruned: %v", err)
	}
}

func TestReconcileSweepsInterruptedImports(t *testing.T) {
	e := newEnv(t)
	half := filepath.Join(e.dir, "images", "tmp", "import-123", "rootfs", "etc")
	os.MkdirAll(half, 0o755)
	stray := filepath.Join(e.dir, "images", "rootfs", strings.Repeat("ab", 32))
	os.MkdirAll(stray, 0o755)
	if err := e.svc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(e.dir, "images", "tmp", "import-123"), stray} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived reconcile", p)
		}
	}
}

func TestNormalizeName(t *testing.T) {
	for in, want := range map[string]string{
		"app": "app:latest", "app:1.2": "app:1.2", "127.0.0.1:5000/x/y": "127.0.0.1:5000/x/y:latest",
		"127.0.0.1:5000/x:v1": "127.0.0.1:5000/x:v1", "a.b-c_d/e": "a.b-c_d/e:latest",
		"App": "", "a b": "", "": "", "a:": "", "../x": "",
	} {
		got, err := NormalizeName(in)
		if want == "" {
			if err == nil {
				t.Errorf("NormalizeName(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
