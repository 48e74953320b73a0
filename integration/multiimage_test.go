package integration

import (
	"archive/tar"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	containerv1 "hearth.dev/proto/hearth/container/v1"
	"hearth.dev/services/containerd-lite/imagetest"
)

// importTestImages imports two images into the lab: "bb" (busybox) and "other" (busybox
// with a file of its own and a /run symlink).
func importTestImages(t *testing.T, l *lab) {
	t.Helper()
	bb, err := imagetest.Busybox("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	dir := tempDir(t)
	imgs := map[string]v1.Image{
		"bb": imagetest.Image(v1.Config{}, bb),
		"other": imagetest.Image(v1.Config{}, append(bb, imagetest.File{Name: "etc/other", Body: "second image"},
			imagetest.File{Name: "var/", Type: tar.TypeDir}, imagetest.File{Name: "run", Type: tar.TypeSymlink, Link: "/var/run"})),
	}
	for n, img := range imgs {
		must(t, imagetest.WriteOCILayout(filepath.Join(dir, n), img))
		if _, err := hearthctl(t, l.runDir, "image", "import", filepath.Join(dir, n), "--name", n); err != nil {
			t.Fatal(err)
		}
	}
}

// inside runs a command in a container as root, or as uid:gid when given.
func (l *lab) inside(t *testing.T, name string, uidgid []string, cmd ...string) (string, error) {
	t.Helper()
	args := []string{"-P", l.lxcPath(), "-n", name}
	if len(uidgid) == 2 {
		args = append(args, "-u", uidgid[0], "-g", uidgid[1])
	}
	return run(t, "lxc-attach", append(append(args, "--"), cmd...)...)
}

func (l *lab) host(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	return l.inside(t, name, nil, append([]string{"/sbin/guestd", "host"}, args...)...)
}

func (l *lab) inspect(t *testing.T, name string) *containerv1.GetContainerResponse {
	t.Helper()
	resp := &containerv1.GetContainerResponse{}
	hearthctlJSON(t, l.runDir, resp, "container", "inspect", name)
	return resp
}

// hostMounts counts each mount point at or below dir in the host's mount table.
func hostMounts(t *testing.T, dir string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range mountsUnder(t, dir) {
		out[m]++
	}
	return out
}

func TestMultiImageContainer(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	importTestImages(t, l)
	create := func(name string, args ...string) {
		t.Helper()
		if _, err := hearthctl(t, l.runDir, append([]string{"container", "create", name}, args...)...); err != nil {
			t.Fatal(err)
		}
		if _, err := hearthctl(t, l.runDir, "container", "start", name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hearthctl(t, l.runDir, "container", "rm", "--force", "--purge-volumes", name) })
	}
	create("alpha", "--image", "bb=bb", "--image", "other=other", "--volume", "data", "--memory", "256Mi", "--cpus", "0.5", "--pids", "64")
	create("beta", "--image", "betaimg=bb", "--volume", "secret")

	t.Run("both images mounted read-only", func(t *testing.T) {
		out, err := l.inside(t, "alpha", nil, "cat", "/media/hearth/images/other/etc/other")
		if err != nil || out != "second image" {
			t.Fatalf("other image: %q %v", out, err)
		}
		if out, err := l.inside(t, "alpha", nil, "stat", "-c", "%u:%g %a", "/media/hearth/images/bb/bin/busybox"); err != nil || strings.TrimSpace(out) != "0:0 755" {
			t.Errorf("busybox in the bb image as seen inside: %q %v (want root-owned through the idmap)", out, err)
		}
		if _, err := l.inside(t, "alpha", nil, "touch", "/media/hearth/images/bb/x"); err == nil || !strings.Contains(err.Error(), "Read-only") {
			t.Errorf("write into an image: %v", err)
		}
		d := l.inspect(t, "alpha").GetDetails()
		if len(d.GetImages()) != 2 || !d.GetImages()[0].GetMounted() || !d.GetImages()[1].GetMounted() {
			t.Errorf("inspect images: %v", d.GetImages())
		}
		// An image a container uses is not removed unless forced.
		if _, err := hearthctl(t, l.runDir, "image", "rm", "other"); err == nil || !strings.Contains(err.Error(), "used by container(s) alpha") {
			t.Errorf("image rm of a used image: %v", err)
		}
		img := &containerv1.Image{}
		hearthctlJSON(t, l.runDir, img, "image", "inspect", "other")
		if len(img.GetUsedBy()) != 1 || img.GetUsedBy()[0] != "alpha" {
			t.Errorf("image inspect used_by: %v", img.GetUsedBy())
		}
	})

	t.Run("overlays from inside", func(t *testing.T) {
		out, err := l.host(t, "alpha", "create-overlay", "other", "app")
		if err != nil || !strings.Contains(out, `"path":"/media/hearth/subcontainers/app"`) {
			t.Fatalf("create-overlay: %q %v", out, err)
		}
		// Idempotent.
		if _, err := l.host(t, "alpha", "create-overlay", "other", "app"); err != nil {
			t.Fatalf("second create-overlay: %v", err)
		}
		if _, err := l.inside(t, "alpha", nil, "sh", "-c", "echo changed > /media/hearth/subcontainers/app/etc/other && echo new > /media/hearth/subcontainers/app/etc/new"); err != nil {
			t.Fatal(err)
		}
		if out, _ := l.inside(t, "alpha", nil, "cat", "/media/hearth/images/other/etc/other"); out != "second image" {
			t.Errorf("the image changed under its overlay: %q", out)
		}
		img := &containerv1.Image{}
		hearthctlJSON(t, l.runDir, img, "image", "inspect", "other")
		if b, _ := os.ReadFile(filepath.Join(img.GetRootfs(), "etc/other")); string(b) != "second image" {
			t.Errorf("stored image changed: %q", b)
		}
		if _, err := os.Stat(filepath.Join(img.GetRootfs(), "etc/new")); err == nil {
			t.Error("a write in the overlay reached the stored image")
		}
		if _, err := l.host(t, "alpha", "destroy-overlay", "app"); err != nil {
			t.Fatal(err)
		}
		if out, _ := l.inside(t, "alpha", nil, "cat", "/proc/self/mountinfo"); strings.Contains(out, "subcontainers/app") {
			t.Errorf("overlay still mounted inside after destroy:\n%s", out)
		}
		for m := range hostMounts(t, l.stateDir) {
			if strings.Contains(m, "subcontainers") {
				t.Errorf("overlay mount left on the host: %s", m)
			}
		}
		if _, err := l.host(t, "alpha", "destroy-overlay", "app"); err != nil {
			t.Errorf("destroying a destroyed overlay: %v", err)
		}
	})

	t.Run("volume owned through the idmap and kept", func(t *testing.T) {
		if _, err := l.host(t, "alpha", "create-overlay", "bb", "db"); err != nil {
			t.Fatal(err)
		}
		if _, err := l.host(t, "alpha", "bind-volume", "data", "db", "/var/lib/pg"); err != nil {
			t.Fatal(err)
		}
		dir := "/media/hearth/subcontainers/db/var/lib/pg"
		if _, err := l.inside(t, "alpha", nil, "sh", "-c", "mkdir "+dir+"/d && chown 999:999 "+dir+"/d"); err != nil {
			t.Fatal(err)
		}
		if _, err := l.inside(t, "alpha", []string{"999", "999"}, "sh", "-c", "echo row > "+dir+"/d/table"); err != nil {
			t.Fatal(err)
		}
		d := l.inspect(t, "alpha").GetDetails()
		if len(d.GetVolumes()) == 0 || d.GetHostIdCount() != 65536 {
			t.Fatalf("inspect shows volumes %v, %d host ids", d.GetVolumes(), d.GetHostIdCount())
		}
		hostFile := filepath.Join(d.GetVolumes()[0].GetHostPath(), "d", "table")
		fi, err := os.Stat(hostFile)
		if err != nil {
			t.Fatal(err)
		}
		want := d.GetHostIdBase() + 999
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != want || st.Gid != want {
			t.Errorf("file written by uid 999 inside is %d:%d on the host, want %d:%d (the container's range starts at %d)", st.Uid, st.Gid, want, want, d.GetHostIdBase())
		}
	})

	t.Run("limits read back and enforced", func(t *testing.T) {
		d := l.inspect(t, "alpha").GetDetails()
		cg := d.GetCgroupLimits()
		if cg.GetMemoryBytes() != 256<<20 || cg.GetPids() != 64 || cg.GetCpus() != 0.5 {
			t.Errorf("cgroup holds %v, want memory 256Mi, pids 64, cpus 0.5", cg)
		}
		if d.GetUsage().GetPids() <= 0 || d.GetUsage().GetMemoryBytes() <= 0 {
			t.Errorf("usage %v", d.GetUsage())
		}
		out, err := l.inside(t, "alpha", nil, "sh", "-c", "for i in $(seq 100); do sleep 1 & done; wait")
		if msg := out + fmt.Sprint(err); !strings.Contains(msg, "fork") && !strings.Contains(msg, "Resource temporarily unavailable") {
			t.Errorf("100 processes under a pids limit of 64 all forked: %q %v", out, err)
		}
	})

	t.Run("isolation", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"create-overlay", "betaimg", "steal"}, "NotFound"},
			{[]string{"create-overlay", "bb", "../../etc"}, "InvalidArgument"},
			{[]string{"bind-volume", "secret", "db", "/mnt"}, "NotFound"},
			{[]string{"bind-volume", "data", "db", "/../../../etc"}, "InvalidArgument"},
			{[]string{"bind-volume", "data", "db", "relative/path"}, "InvalidArgument"},
			{[]string{"bind-volume", "data", "nosuch", "/mnt"}, "NotFound"},
		} {
			if out, err := l.host(t, "alpha", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("guestd host %v from alpha: %q %v, want %s", tc.args, out, err, tc.want)
			}
		}
		// A symlink planted in the overlay cannot send a bind outside it.
		if _, err := l.inside(t, "alpha", nil, "ln", "-s", "/", "/media/hearth/subcontainers/db/escape"); err != nil {
			t.Fatal(err)
		}
		if _, err := l.host(t, "alpha", "bind-volume", "data", "db", "/escape/hearth-escape"); err != nil {
			t.Fatalf("bind through an in-root symlink: %v", err)
		}
		if _, err := os.Stat("/hearth-escape"); err == nil {
			os.Remove("/hearth-escape")
			t.Fatal("a bind followed a container's symlink onto the host")
		}
		if _, err := l.host(t, "beta", "create-overlay", "betaimg", "b1"); err != nil {
			t.Fatal(err)
		}
		out, err := l.inside(t, "alpha", nil, "cat", "/proc/self/mountinfo")
		if err != nil || strings.Contains(out, "/beta/") || strings.Contains(out, "subcontainers/b1") || strings.Contains(out, "volumes/beta") {
			t.Errorf("alpha sees beta's mounts:\n%s", out)
		}
	})

	t.Run("kill -9 of containerd-lite", func(t *testing.T) {
		pids := map[string]int32{}
		for _, n := range []string{"alpha", "beta"} {
			pids[n] = l.inspect(t, n).GetContainer().GetInitPid()
		}
		before := hostMounts(t, l.stateDir)
		l.cld.stop(syscall.SIGKILL)
		l.start(t)
		for n, pid := range pids {
			got := l.inspect(t, n)
			if got.GetContainer().GetInitPid() != pid {
				t.Errorf("%s restarted: init pid %d, was %d", n, got.GetContainer().GetInitPid(), pid)
			}
			if len(got.GetDetails().GetOverlays()) == 0 {
				t.Errorf("%s lost its overlays: %v", n, got.GetDetails())
			}
		}
		after := hostMounts(t, l.stateDir)
		var twice []string
		for m, c := range after {
			if c > 1 {
				twice = append(twice, m)
			}
		}
		sort.Strings(twice)
		if len(twice) > 0 || len(after) != len(before) {
			t.Errorf("mounts after restart: %d (before %d), mounted twice: %v", len(after), len(before), twice)
		}
		// The overlays still work.
		if out, err := l.inside(t, "alpha", nil, "cat", "/media/hearth/subcontainers/db/var/lib/pg/d/table"); err != nil || out != "row\n" {
			t.Errorf("volume through the overlay after restart: %q %v", out, err)
		}
	})

	t.Run("volume survives destroy and re-create", func(t *testing.T) {
		if _, err := hearthctl(t, l.runDir, "container", "rm", "--force", "alpha"); err != nil {
			t.Fatal(err)
		}
		if m := mountsUnder(t, filepath.Join(l.stateDir, "containers", "alpha")); len(m) > 0 {
			t.Errorf("mounts left after rm: %v", m)
		}
		create("alpha", "--image", "bb=bb", "--volume", "data")
		if _, err := l.host(t, "alpha", "create-overlay", "bb", "db"); err != nil {
			t.Fatal(err)
		}
		if _, err := l.host(t, "alpha", "bind-volume", "data", "db", "/srv"); err != nil {
			t.Fatal(err)
		}
		out, err := l.inside(t, "alpha", nil, "cat", "/media/hearth/subcontainers/db/srv/d/table")
		if err != nil || out != "row\n" {
			t.Errorf("volume content after re-create: %q %v", out, err)
		}
	})
}
