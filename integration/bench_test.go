package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"hearth.dev/internal/dial"
	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// BenchmarkContainerCreateStartStop measures a container's whole life through
// containerd-lite's API: create, start until guestd answers inside, stop, delete.
func BenchmarkContainerCreateStartStop(b *testing.B) {
	requireRoot(b)
	dir := tempDir(b)
	runDir := filepath.Join(dir, "run")
	d := startDaemon(b, "containerd-lite", filepath.Join(runDir, "containerd-lite.sock"),
		"--run-dir", runDir, "--state-dir", filepath.Join(dir, "state"), "--base-rootfs", baseRootfs)
	conn, err := dial.Unix(d.socket)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	cl := containerv1.NewContainerServiceClient(conn)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("bench%d", i)
		if _, err := cl.CreateContainer(ctx, &containerv1.CreateContainerRequest{Name: name}); err != nil {
			b.Fatal(err)
		}
		if _, err := cl.StartContainer(ctx, &containerv1.StartContainerRequest{Name: name}); err != nil {
			b.Fatal(err)
		}
		if _, err := cl.StopContainer(ctx, &containerv1.StopContainerRequest{Name: name}); err != nil {
			b.Fatal(err)
		}
		if _, err := cl.DeleteContainer(ctx, &containerv1.DeleteContainerRequest{Name: name}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLXCExecuteSameRootfs is the peer: bare lxc-execute running /bin/true in an
// unprivileged container with the same id map on a copy of the same base rootfs.
func BenchmarkLXCExecuteSameRootfs(b *testing.B) {
	requireRoot(b)
	dir := tempDir(b)
	rootfs := filepath.Join(dir, "rootfs")
	if out, err := exec.Command("cp", "-a", baseRootfs, rootfs).CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	if out, err := exec.Command("chown", "-R", "100000:100000", rootfs).CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	cfg := filepath.Join(dir, "config")
	conf := fmt.Sprintf(`lxc.cap.drop = mac_admin mac_override sys_time sys_module sys_rawio
lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp
lxc.pty.max = 1024
lxc.rootfs.path = dir:%s
lxc.idmap = u 0 100000 65536
lxc.idmap = g 0 100000 65536
lxc.net.0.type = empty
lxc.net.0.flags = up
lxc.autodev = 1
lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed
lxc.tty.max = 0
`, rootfs)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	lxcPath := filepath.Join(dir, "lxc")
	os.MkdirAll(lxcPath, 0o711)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := exec.Command("lxc-execute", "-P", lxcPath, "-n", fmt.Sprintf("x%d", i), "-f", cfg, "--", "/bin/true").CombinedOutput()
		if err != nil {
			b.Fatalf("lxc-execute: %v %s", err, out)
		}
	}
}
