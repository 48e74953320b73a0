package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/grpcserver"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// depPackages stands in for containerd-lite's PackageService: wallet depends on node and
// both run; shop depends on nothing and runs; cold waits for node. It records the
// starts and stops asked of it.
type depPackages struct {
	containerv1.UnimplementedPackageServiceServer
	mu    sync.Mutex
	calls []string
}

func (d *depPackages) record(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, s)
}

func (d *depPackages) StartPackage(_ context.Context, req *containerv1.StartPackageRequest) (*containerv1.StartPackageResponse, error) {
	d.record("start " + req.GetId())
	switch req.GetId() {
	case "node", "wallet", "shop":
		return &containerv1.StartPackageResponse{Package: &containerv1.Package{Id: req.GetId(), State: "running"}}, nil
	case "cold":
		return &containerv1.StartPackageResponse{Package: &containerv1.Package{Id: "cold", State: "stopped"},
			WaitingFor: []*hostv1.Wait{{Package: "node", Reason: "interface rpc not ready (daemon d is starting)"}}}, nil
	}
	return nil, fmt.Errorf("package %q is not installed: %w", req.GetId(), errdefs.ErrNotFound)
}

func (d *depPackages) StopPackage(_ context.Context, req *containerv1.StopPackageRequest) (*containerv1.StopPackageResponse, error) {
	plan := []string{req.GetId()}
	if req.GetId() == "node" {
		plan = []string{"wallet", "node"}
	}
	if req.GetDryRun() {
		d.record("plan " + req.GetId())
		return &containerv1.StopPackageResponse{Stopped: plan}, nil
	}
	if len(plan) > 1 && !req.GetCascade() {
		d.record("refused " + req.GetId())
		return nil, fmt.Errorf("wallet depends on node and runs: stop it first, or stop with cascade (hearthctl stop --cascade node) to stop it too: %w", errdefs.ErrFailedPrecondition)
	}
	d.record(fmt.Sprintf("stop %s cascade=%v", req.GetId(), req.GetCascade()))
	return &containerv1.StopPackageResponse{Stopped: plan}, nil
}

func TestStartStopWithDependencies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		terminal string // what the user types; "" when stdin is no terminal
		code     int
		stdout   string
		stderr   []string
		calls    string
	}{
		{"start", []string{"start", "shop"}, "", 0, "shop\trunning\n", nil, "start shop"},
		{"start waits", []string{"start", "cold"}, "", 0,
			"cold\twaiting: it starts by itself once these are there\n  waiting for node: interface rpc not ready (daemon d is starting)\n", nil, "start cold"},
		{"stop without dependents", []string{"stop", "shop"}, "y\n", 0, "shop\tstopped\n", nil, "plan shop,stop shop cascade=false"},
		{"stop refused off a terminal", []string{"stop", "node"}, "", 1, "",
			[]string{"wallet depends on node and runs", "hearthctl stop --cascade node", "FailedPrecondition"}, "refused node"},
		{"stop asks: yes", []string{"stop", "node"}, "y\n", 0, "wallet\tstopped\nnode\tstopped\n",
			[]string{"wallet depends on node and runs. Stop wallet too? [y/N] "}, "plan node,stop node cascade=true"},
		{"stop asks: no", []string{"stop", "node"}, "\n", 1, "",
			[]string{"Stop wallet too? [y/N] ", "node not stopped: wallet depends on it (stop --cascade node stops it too)"}, "plan node"},
		{"stop --cascade does not ask", []string{"stop", "--cascade", "node"}, "n\n", 0, "wallet\tstopped\nnode\tstopped\n", nil, "stop node cascade=true"},
		{"json does not ask", []string{"-o", "json", "stop", "node"}, "y\n", 1, "", []string{"wallet depends on node"}, "refused node"},
		{"restart --cascade starts dependencies first", []string{"restart", "--cascade", "node"}, "", 0, "node\trunning\nwallet\trunning\n", nil,
			"stop node cascade=true,start node,start wallet"},
		{"start unknown", []string{"start", "nope"}, "", 1, "", []string{`package "nope" is not installed`}, "start nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d := &depPackages{}
			serve(t, dir, "containerd-lite", func(s *grpcserver.Server) { containerv1.RegisterPackageServiceServer(s, d) })
			old := askTerminal
			t.Cleanup(func() { askTerminal = old })
			askTerminal = func() io.Reader {
				if tc.terminal == "" {
					return nil
				}
				return strings.NewReader(tc.terminal)
			}
			code, stdout, stderr := run(t, dir, tc.args...)
			if code != tc.code || stdout != tc.stdout {
				t.Errorf("exit %d, stdout %q; want %d, %q (stderr %q)", code, stdout, tc.code, tc.stdout, stderr)
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q; want it to contain %q", stderr, w)
				}
			}
			if got := strings.Join(d.calls, ","); got != tc.calls {
				t.Errorf("calls %q, want %q", got, tc.calls)
			}
		})
	}
}
