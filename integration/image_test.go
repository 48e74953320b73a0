package integration

import (
	"archive/tar"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	containerv1 "hearth.dev/proto/hearth/container/v1"
	"hearth.dev/services/containerd-lite/imagetest"
)

// TestImages drives the image store through hearthctl and the daemon: the four import
// formats, a pull of a multi-platform index from a registry on loopback, names, removal
// and garbage collection.
func TestImages(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	src := tempDir(t)
	bb, err := imagetest.Busybox("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	img := imagetest.Image(v1.Config{Cmd: []string{"/bin/sh"}, User: "0"},
		append(bb, imagetest.File{Name: "etc/motd", Body: "hi"}, imagetest.File{Name: "opt/", Type: tar.TypeDir}, imagetest.File{Name: "opt/x", Body: "x"}),
		[]imagetest.File{{Name: "etc/.wh.motd"}, {Name: "opt/.wh..wh..opq"}, {Name: "opt/y", Body: "y", UID: 999, GID: 999}, {Name: "hl", Type: tar.TypeLink, Link: "bin/busybox"}})
	digest, _ := img.ConfigName()
	paths := map[string]string{
		"layout": filepath.Join(src, "layout"), "oci": filepath.Join(src, "oci.tar"),
		"docker": filepath.Join(src, "docker.tar"), "rootfs": filepath.Join(src, "rootfs.tar"),
	}
	must(t, imagetest.WriteOCILayout(paths["layout"], img))
	must(t, imagetest.WriteOCIArchive(paths["oci"], img))
	must(t, imagetest.WriteDockerArchive(paths["docker"], img, "app:1"))
	must(t, imagetest.WriteRootfsTar(paths["rootfs"], bb...))

	var rootfs string
	for _, f := range []string{"layout", "oci", "docker"} {
		out := &containerv1.Image{}
		hearthctlJSON(t, l.runDir, out, "image", "import", paths[f], "--name", "app-"+f)
		if out.GetDigest() != digest.String() {
			t.Fatalf("%s import: digest %s, want %s", f, out.GetDigest(), digest)
		}
		rootfs = out.GetRootfs()
	}
	for rel, want := range map[string]string{"opt/y": "y", "bin/busybox": "", "etc/passwd": "root:x:0:0"} {
		b, err := os.ReadFile(filepath.Join(rootfs, rel))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s in the stored image: %v", rel, err)
		}
	}
	for _, gone := range []string{"etc/motd", "opt/x"} {
		if _, err := os.Lstat(filepath.Join(rootfs, gone)); err == nil {
			t.Errorf("%s survived its whiteout", gone)
		}
	}
	// Plain output: progress lines on stderr (not a terminal), the result on stdout.
	stdout, stderr, err := runSplit(filepath.Join(binDir, "hearthctl"), "--run-dir", l.runDir, "image", "import", paths["rootfs"], "--name", "busybox")
	if err != nil || !strings.Contains(stdout, "busybox:latest") || !strings.Contains(stderr, "unpacking: layer 1/1") {
		t.Fatalf("rootfs import: %v\nstdout %s\nstderr %s", err, stdout, stderr)
	}

	// Pull a multi-platform index from a registry on loopback.
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	other := imagetest.ForPlatform(imagetest.Image(v1.Config{}, []imagetest.File{{Name: "arch", Body: "s390x"}}), v1.Platform{OS: "linux", Architecture: "s390x"})
	ref, _ := name.ParseReference(host+"/multi:1", name.Insecure)
	must(t, remote.WriteIndex(ref, imagetest.Index(other, img)))
	pulled := &containerv1.Image{}
	hearthctlJSON(t, l.runDir, pulled, "image", "pull", "--insecure", host+"/multi:1")
	if pulled.GetDigest() != digest.String() {
		t.Fatalf("pull resolved to %s, want this platform's %s", pulled.GetDigest(), digest)
	}

	list := &containerv1.ListImagesResponse{}
	hearthctlJSON(t, l.runDir, list, "image", "ls")
	if len(list.GetImages()) != 2 {
		t.Fatalf("ls: %d images, want 2 (the app stored once, busybox)", len(list.GetImages()))
	}
	if ents, _ := os.ReadDir(filepath.Join(l.stateDir, "images", "rootfs")); len(ents) != 2 {
		t.Errorf("%d trees on disk, want 2", len(ents))
	}
	// Names: tag, untag, remove with the last name, prune.
	if _, err := hearthctl(t, l.runDir, "image", "tag", "busybox", "bb:stable"); err != nil {
		t.Fatal(err)
	}
	if out, err := hearthctl(t, l.runDir, "image", "rm", "busybox"); err != nil || !strings.Contains(out, "untagged") {
		t.Fatalf("rm of one of two names: %v %s", err, out)
	}
	if out, err := hearthctl(t, l.runDir, "image", "rm", "bb:stable"); err != nil || !strings.Contains(out, "deleted sha256:") {
		t.Fatalf("rm of the last name: %v %s", err, out)
	}
	if _, err := hearthctl(t, l.runDir, "image", "inspect", "busybox"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("inspect after rm: %v", err)
	}
	for _, bad := range [][]string{
		{"image", "import", filepath.Join(src, "nope.tar")},
		{"image", "tag", "app-layout", "Not A Name"},
		{"image", "pull", "::bad::"},
	} {
		if _, err := hearthctl(t, l.runDir, bad...); err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
			t.Errorf("hearthctl %v: %v, want InvalidArgument", bad, err)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
