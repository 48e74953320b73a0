package daemon

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"hearth.dev/internal/dial"
)

// TestLifecycle runs a daemon through its whole life: NOT_SERVING while it reconciles,
// SERVING and sd_notify READY=1 after, STOPPING=1 and a removed socket on stop.
func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	notify := filepath.Join(dir, "notify")
	nl, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	t.Setenv("NOTIFY_SOCKET", notify)

	socket := filepath.Join(dir, "run", "d.sock")
	reconciling := make(chan struct{})
	release := make(chan struct{})
	spec := Spec{
		Name: "testd",
		Init: func(ctx context.Context, env *Env) (Hooks, error) {
			return Hooks{Reconcile: func(ctx context.Context) error {
				close(reconciling)
				<-release
				return nil
			}}, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, spec, []string{"--socket", socket, "--state-dir", filepath.Join(dir, "state"), "--log-format", "json"}, &logs, &logs)
	}()
	<-reconciling
	if got := health(t, socket); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health while reconciling: %v, want NOT_SERVING", got)
	}
	close(release)
	if msg := readNotify(t, nl); msg != "READY=1" {
		t.Errorf("sd_notify: %q, want READY=1", msg)
	}
	if got := health(t, socket); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health after reconcile: %v, want SERVING", got)
	}
	cancel()
	if msg := readNotify(t, nl); msg != "STOPPING=1" {
		t.Errorf("sd_notify on stop: %q, want STOPPING=1", msg)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := dial.Unix(socket); err == nil {
		t.Error("socket still there after stop")
	}
	if !strings.Contains(logs.String(), `"msg":"serving"`) {
		t.Errorf("json log lacks the serving line:\n%s", logs.String())
	}
}

func health(t *testing.T, socket string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	conn, err := dial.Unix(socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetStatus()
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 256)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify message: %v", err)
	}
	return string(buf[:n])
}

func TestFlags(t *testing.T) {
	spec := Spec{Name: "testd", Summary: "testd does tests.", Init: func(context.Context, *Env) (Hooks, error) {
		return Hooks{}, errors.New("must not start")
	}}
	for _, tc := range []struct {
		args    []string
		wantErr string
		wantOut string
	}{
		{[]string{"--help"}, "help requested", "testd does tests."},
		{[]string{"--log-format", "xml"}, `log format "xml": use text or json`, ""},
		{[]string{"--log-level", "loud"}, `log level "loud"`, ""},
		{[]string{"--group", "no-such-group-here"}, `--group "no-such-group-here"`, ""},
		{[]string{"stray"}, `unexpected argument "stray"`, ""},
		{[]string{"--nope"}, "flag provided but not defined", ""},
	} {
		var out bytes.Buffer
		err := Run(context.Background(), spec, tc.args, &out, &out)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("Run(%v) = %v, want error containing %q", tc.args, err, tc.wantErr)
		}
		if !strings.Contains(out.String(), tc.wantOut) {
			t.Errorf("Run(%v) printed %q, want %q", tc.args, out.String(), tc.wantOut)
		}
	}
	if !errors.Is(Run(context.Background(), spec, []string{"-h"}, &bytes.Buffer{}, &bytes.Buffer{}), flag.ErrHelp) {
		t.Error("-h is not flag.ErrHelp")
	}
}
