package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// grpcurl finds the grpcurl binary; make test puts the pinned one on PATH.
func grpcurl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("grpcurl")
	if err != nil {
		t.Fatal("grpcurl not found on PATH: run 'make tools' and add bin/tools to PATH (make test does)")
	}
	return p
}

// asUser runs a command with the given credentials and returns its combined output.
func asUser(uid, gid uint32, groups []uint32, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// testGroup is a group id no user of a fresh machine has.
const testGroup = 4242

func TestDaemonsServeHealthAndReflection(t *testing.T) {
	requireRoot(t)
	g := grpcurl(t)
	dir := tempDir(t)
	for _, tc := range []struct {
		daemon   string
		services []string
		methods  map[string]string // service → a method describe must show
		args     []string
	}{
		{"containerd-lite", []string{"hearth.container.v1.ContainerService"}, map[string]string{"hearth.container.v1.ContainerService": "StartContainer"}, []string{"--base-rootfs", baseRootfs}},
		{"netd", []string{"hearth.net.v1.NetworkService", "hearth.net.v1.BindingService", "hearth.net.v1.ChallengeService"}, map[string]string{"hearth.net.v1.BindingService": "CreateBinding", "hearth.net.v1.ChallengeService": "PresentChallenge"}, testBridge(t)},
		{"certd", []string{"hearth.cert.v1.CertificateService"}, map[string]string{"hearth.cert.v1.CertificateService": "WatchCertificates"}, nil},
		{"guestd", []string{"hearth.guest.v1.GuestService"}, map[string]string{"hearth.guest.v1.GuestService": "GetInfo"}, nil},
	} {
		t.Run(tc.daemon, func(t *testing.T) {
			if err := os.Mkdir(filepath.Join(dir, tc.daemon), 0o711); err != nil {
				t.Fatal(err)
			}
			runDir := filepath.Join(dir, tc.daemon, "run")
			sock := filepath.Join(runDir, tc.daemon+".sock")
			args := append([]string{"--run-dir", runDir, "--state-dir", filepath.Join(dir, tc.daemon, "state"), "--group", "4242"}, tc.args...)
			help, err := run(t, filepath.Join(binDir, tc.daemon), "--help")
			if err != nil || !strings.Contains(help, "Usage: "+tc.daemon) || !strings.Contains(help, "-state-dir") {
				t.Errorf("%s --help: %v\n%s", tc.daemon, err, help)
			}
			startDaemon(t, tc.daemon, sock, args...)

			// Socket 0660 root:group in a 0750 directory.
			checkMode(t, runDir, 0o750|os.ModeDir, 0, testGroup)
			checkMode(t, sock, 0o660|os.ModeSocket, 0, testGroup)

			out, err := run(t, g, "-plaintext", "-unix", sock, "list")
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range append([]string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"}, tc.services...) {
				if !strings.Contains(out, want+"\n") {
					t.Errorf("grpcurl list lacks %s:\n%s", want, out)
				}
			}
			for svc, method := range tc.methods {
				out, err := run(t, g, "-plaintext", "-unix", sock, "describe", svc)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(out, "rpc "+method+" (") {
					t.Errorf("describe %s lacks rpc %s:\n%s", svc, method, out)
				}
			}
			out, err = run(t, g, "-plaintext", "-unix", sock, "grpc.health.v1.Health/Check")
			if err != nil || !strings.Contains(out, `"SERVING"`) {
				t.Errorf("health check: %v\n%s", err, out)
			}

			// A member of the group may call the host daemons; guestd admits only the
			// container's root and the host.
			out, err = asUser(65534, 65534, []uint32{testGroup}, g, "-plaintext", "-unix", sock, "grpc.health.v1.Health/Check")
			if tc.daemon == "guestd" {
				if err == nil || !strings.Contains(out, "PermissionDenied") {
					t.Errorf("guestd admitted a group member: %v\n%s", err, out)
				}
			} else if err != nil || !strings.Contains(out, `"SERVING"`) {
				t.Errorf("group member refused: %v\n%s", err, out)
			}
			// Anyone else is stopped by the file modes...
			out, err = asUser(65534, 65534, nil, g, "-plaintext", "-unix", sock, "list")
			if err == nil || !strings.Contains(out, "permission denied") {
				t.Errorf("stranger reached the socket: %v\n%s", err, out)
			}
			// ...and, were the modes loosened, by the peer-credential check.
			if err := os.Chmod(runDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(sock, 0o666); err != nil {
				t.Fatal(err)
			}
			out, err = asUser(65534, 65534, nil, g, "-plaintext", "-unix", sock, "list")
			if err == nil || !strings.Contains(out, "PermissionDenied") {
				t.Errorf("stranger was not refused by the interceptor: %v\n%s", err, out)
			}
			// A container's root (uid 100000 on the host) is a stranger to the daemons.
			if tc.daemon != "guestd" {
				out, err = asUser(100000, 100000, nil, g, "-plaintext", "-unix", sock, "list")
				if err == nil || !strings.Contains(out, "PermissionDenied") {
					t.Errorf("container root was not refused: %v\n%s", err, out)
				}
			}
		})
	}
}

func checkMode(t *testing.T, path string, mode os.FileMode, uid, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode() != mode || st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: mode %v owner %d:%d, want %v %d:%d", path, fi.Mode(), st.Uid, st.Gid, mode, uid, gid)
	}
}
