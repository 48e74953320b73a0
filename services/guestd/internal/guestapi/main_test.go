package guestapi

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hearth.dev/internal/daemon"
	"hearth.dev/internal/dial"
	"hearth.dev/internal/grpcserver"
	"hearth.dev/internal/manifest"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	"hearth.dev/services/guestd/internal/launch"
	"hearth.dev/services/guestd/internal/logbuf"
	"hearth.dev/services/guestd/internal/reaper"
	"hearth.dev/services/guestd/internal/supervisor"
)

// The one reaper of the test process, as in guestd.
var rp *reaper.Reaper

func TestMain(m *testing.M) {
	var err error
	if rp, err = reaper.Start(); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

const busybox = "/bin/busybox"

// hostLaunch runs jobs and execs as plain processes of this host with busybox, where
// guestd would chroot them into subcontainers the host mounts (the launch package's
// Prepare and Build, tested in LXC). Spawning and signalling are the real launcher's.
type hostLaunch struct {
	*launch.Launcher
	dir string
}

func newHostLaunch(t *testing.T) *hostLaunch {
	if _, err := os.Stat(busybox); err != nil {
		t.Skipf("needs %s to run daemons: %v", busybox, err)
	}
	return &hostLaunch{Launcher: launch.New(nil, rp, nil, nil, quiet), dir: t.TempDir()}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func (h *hostLaunch) Build(name string, spec *manifest.Daemon, argv []string, extra map[string]string) (*launch.Command, error) {
	if argv == nil {
		argv = append([]string{"sh", "-c"}, spec.Command...)
	}
	env := []string{"PATH=/bin", "DIR=" + h.dir}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return &launch.Command{Path: busybox, Argv: argv, Attr: &syscall.ProcAttr{
		Dir: h.dir, Env: env, Sys: &syscall.SysProcAttr{Setpgid: true},
	}}, nil
}

func (h *hostLaunch) Prepare(context.Context, string, *manifest.Daemon, bool) error { return nil }
func (h *hostLaunch) Cleanup(string)                                                {}
func (h *hostLaunch) Release(context.Context, string) error                         { return nil }

func (h *hostLaunch) Start(name string, spec *manifest.Daemon, stdout, stderr *os.File) (int, <-chan reaper.Exit, error) {
	c, _ := h.Build(name, spec, nil, nil)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, nil, err
	}
	defer devnull.Close()
	c.Attr.Files = []uintptr{devnull.Fd(), stdout.Fd(), stderr.Fd()}
	return h.Spawn(c)
}

func (h *hostLaunch) Run(ctx context.Context, name string, spec *manifest.Daemon, argv []string) (reaper.Exit, error) {
	c, _ := h.Build(name, spec, argv, nil)
	pid, ch, err := h.Spawn(c)
	if err != nil {
		return reaper.Exit{}, err
	}
	select {
	case e := <-ch:
		return e, nil
	case <-ctx.Done():
		_ = h.Signal(pid, syscall.SIGKILL)
		return <-ch, ctx.Err()
	}
}

// newServer returns a guestd Server running the package in yaml ("" for none) on this
// host's processes. The package is not started.
func newTestServer(t *testing.T, yaml string) *Server {
	t.Helper()
	s := &Server{env: &daemon.Env{Name: "guestd", Logger: quiet}, info: Info(time.Now())}
	if yaml == "" {
		return s
	}
	h := newHostLaunch(t)
	m, err := manifest.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	s.bundle = &manifest.Bundle{Manifest: m}
	s.procs = h
	s.sup = supervisor.New(m, h, func(n string) *logbuf.Log {
		l, err := logbuf.New(filepath.Join(h.dir, n+".log"), 100, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}, quiet)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s.sup.StopAll(ctx)
	})
	return s
}

// serve serves s on a Unix socket in a temporary directory, with the server every daemon
// uses, and returns a client.
func serve(t *testing.T, s *Server) guestv1.GuestServiceClient {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "guestd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpcserver.New(grpcserver.Config{Logger: quiet, Authorize: HostOrContainerRoot})
	guestv1.RegisterGuestServiceServer(srv.Server, s)
	srv.SetServing()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	conn, err := dial.Unix(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return guestv1.NewGuestServiceClient(conn)
}

const header = "id: p\nversion: 1.0.0\nimages: {i: {ref: x}}\n"

// waitFor polls cond for up to 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: timed out", what)
}

func hasPrefix(b []byte, p string) bool { return strings.HasPrefix(string(b), p) }
