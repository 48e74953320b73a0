package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"hearth.dev/internal/dial"
)

var (
	binDir     string
	baseRootfs string
)

func TestMain(m *testing.M) {
	code, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		os.Exit(1)
	}
	if code >= 0 {
		os.Exit(code)
	}
	code = m.Run()
	// The example packages built for this run (hundreds of MiB with hello-pg's images).
	if examplesDir != "" {
		os.RemoveAll(examplesDir)
	}
	os.Exit(code)
}

// setup finds or builds the binaries and the base rootfs.
func setup() (int, error) {
	binDir = os.Getenv("HEARTH_BIN_DIR")
	baseRootfs = os.Getenv("HEARTH_BASE_ROOTFS")
	if binDir != "" && baseRootfs != "" {
		return -1, nil
	}
	tmp, err := os.MkdirTemp("", "hearth-bin-")
	if err != nil {
		return 0, err
	}
	if binDir == "" {
		binDir = tmp
		for _, b := range []struct{ name, pkg string }{
			{"containerd-lite", "../services/containerd-lite"},
			{"netd", "../services/netd"},
			{"certd", "../services/certd"},
			{"guestd", "../services/guestd"},
			{"hearth-effect", "../services/guestd/cmd/hearth-effect"},
			{"hearthctl", "../cmd/hearthctl"},
		} {
			args := []string{"build", "-o", filepath.Join(binDir, b.name)}
			if b.name == "guestd" {
				args = append(args, "-tags", "grpcnotrace") // as make builds it
			}
			cmd := exec.Command("go", append(args, b.pkg)...)
			if b.name == "guestd" || b.name == "hearth-effect" {
				cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				return 0, fmt.Errorf("build %s: %v\n%s", b.name, err, out)
			}
		}
		// guestd-init is C, built as make builds it (with musl where it is installed).
		cmd := exec.Command(initCC(), "-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o", filepath.Join(binDir, "guestd-init"), "../services/guestd/init/guestd-init.c")
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("build guestd-init: %v\n%s", err, out)
		}
	}
	if baseRootfs == "" {
		baseRootfs = filepath.Join(tmp, "base-rootfs")
		out, err := exec.Command("../deploy/base-rootfs/build.sh", baseRootfs, filepath.Join(binDir, "guestd"), filepath.Join(binDir, "hearth-effect")).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("build base rootfs: %v\n%s", err, out)
		}
	}
	return -1, nil
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: LXC containers, mounts and other users' credentials (CI runs as root)")
	}
}

// tempDir returns a fresh directory whose parents other users may traverse, with a
// short path (Unix socket paths are limited to 107 bytes).
func tempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "h")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeLab(t, d) })
	return d
}

// removeLab removes a test directory even after a failed test left containers running
// in it: their inits are killed, what is mounted below it is unmounted, then it goes.
// Removing a tree with mounts still in it would delete through them.
func removeLab(t testing.TB, d string) {
	lxcPath := filepath.Join(d, "state", "lxc")
	if ents, err := os.ReadDir(lxcPath); err == nil {
		for _, e := range ents {
			if out, err := exec.Command("lxc-info", "-P", lxcPath, "-n", e.Name(), "-p", "-H").Output(); err == nil {
				if pid := strings.TrimSpace(string(out)); pid != "" {
					t.Logf("cleanup: killing container %s (init %s) left by the test", e.Name(), pid)
					exec.Command("lxc-stop", "-k", "-P", lxcPath, "-n", e.Name()).Run()
				}
			}
		}
	}
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var targets []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], d+"/") {
			targets = append(targets, f[4])
		}
	}
	sort.Slice(targets, func(i, j int) bool { return len(targets[i]) > len(targets[j]) })
	for _, m := range targets {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
	if len(targets) > 0 {
		t.Logf("cleanup: unmounted %d mounts the test left under %s", len(targets), d)
	}
	os.RemoveAll(d)
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemonProc is a daemon started by a test.
type daemonProc struct {
	name   string
	socket string
	cmd    *exec.Cmd
	log    *syncBuffer
	done   chan struct{}
}

// startDaemon starts bin/<name> with args and waits until its health check says SERVING.
// It stops the daemon when t ends.
func startDaemon(t testing.TB, name, socket string, args ...string) *daemonProc {
	t.Helper()
	return startDaemonOwned(t, t, name, socket, args...)
}

// startDaemonOwned is startDaemon for a daemon that outlives t: owner stops it, or, when
// owner is nil, the caller does.
func startDaemonOwned(t, owner testing.TB, name, socket string, args ...string) *daemonProc {
	t.Helper()
	return startDaemonEnv(t, owner, nil, name, socket, args...)
}

// startDaemonEnv is startDaemonOwned with extra environment for the daemon.
func startDaemonEnv(t, owner testing.TB, env []string, name, socket string, args ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{name: name, socket: socket, log: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(filepath.Join(binDir, name), append([]string{"--socket", socket, "--log-level", "debug"}, args...)...)
	d.cmd.Env = append(os.Environ(), env...)
	var out io.Writer = d.log
	if dir := os.Getenv("HEARTH_TEST_DAEMON_LOGS"); dir != "" {
		// An engineer's copy of every daemon's log, kept after the test (one file per
		// daemon and process: <name>-<test's pid>-<n>.log).
		f, err := os.CreateTemp(dir, fmt.Sprintf("%s-%d-*.log", name, os.Getpid()))
		if err != nil {
			t.Fatalf("HEARTH_TEST_DAEMON_LOGS: %v", err)
		}
		out = io.MultiWriter(d.log, f)
		defer func() { go func() { <-d.done; f.Close() }() }()
	}
	d.cmd.Stdout = out
	d.cmd.Stderr = out
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	if owner != nil {
		owner.Cleanup(func() {
			d.stop(syscall.SIGTERM)
			if owner.Failed() {
				t.Logf("%s log:\n%s", name, d.log.String())
			}
		})
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := d.healthy(); err == nil {
			return d
		} else if time.Now().After(deadline) {
			t.Fatalf("%s not SERVING after 15s: %v\nlog:\n%s", name, err, d.log.String())
		}
		select {
		case <-d.done:
			t.Fatalf("%s exited: %v\nlog:\n%s", name, d.cmd.ProcessState, d.log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (d *daemonProc) healthy() error { return healthCheck(d.socket, time.Second) }

// healthCheck asks the gRPC health service on socket, within timeout, and fails unless
// it answers SERVING.
func healthCheck(socket string, timeout time.Duration) error {
	conn, err := dial.Unix(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("health %v", resp.GetStatus())
	}
	return nil
}

// stop signals the daemon and waits for it to exit (SIGKILL after 15s).
func (d *daemonProc) stop(sig syscall.Signal) {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// run runs a command and returns its stdout; stderr is included in the error.
func run(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// runSplit runs a command and returns its stdout and stderr apart.
func runSplit(name string, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// hearthctl runs bin/hearthctl with --run-dir runDir.
func hearthctl(t testing.TB, runDir string, args ...string) (string, error) {
	t.Helper()
	return run(t, filepath.Join(binDir, "hearthctl"), append([]string{"--run-dir", runDir}, args...)...)
}

// hearthctlJSON runs hearthctl -o json and decodes its answer into m.
func hearthctlJSON(t testing.TB, runDir string, m proto.Message, args ...string) {
	t.Helper()
	out, err := hearthctl(t, runDir, append([]string{"-o", "json"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("decode hearthctl %v output: %v\n%s", args, err, out)
	}
}

// initCC is the C compiler make builds guestd-init with: musl's where it is installed.
func initCC() string {
	if p, err := exec.LookPath("musl-gcc"); err == nil {
		return p
	}
	return "cc"
}
