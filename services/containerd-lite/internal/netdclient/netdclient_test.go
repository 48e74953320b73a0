package netdclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/grpcserver"
	"hearth.dev/internal/peercred"
	"hearth.dev/internal/unixsock"
	netv1 "hearth.dev/proto/hearth/net/v1"
)

// refusingNetd answers like netd when it cannot attach: a plain error with a kind, which
// netd's server maps to a code.
type refusingNetd struct {
	netv1.UnimplementedNetworkServiceServer
	err error
}

func (n refusingNetd) AttachContainer(context.Context, *netv1.AttachContainerRequest) (*netv1.AttachContainerResponse, error) {
	return nil, n.err
}

func (n refusingNetd) DetachContainer(context.Context, *netv1.DetachContainerRequest) (*netv1.DetachContainerResponse, error) {
	return nil, n.err
}

// serveNetd runs a real gRPC server answering with err on a temporary socket.
func serveNetd(t *testing.T, err error) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "netd.sock")
	srv := grpcserver.New(grpcserver.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Authorize: peercred.UIDs(uint32(os.Getuid())), StopTimeout: time.Second})
	netv1.RegisterNetworkServiceServer(srv, refusingNetd{err: err})
	srv.SetServing()
	l, lerr := unixsock.Listen(sock, unixsock.Options{UID: -1, GID: -1})
	if lerr != nil {
		t.Fatal(lerr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return sock
}

// TestNetdErrorsKeepTheirKind: netd's error, wrapped by containerd-lite with %w, reaches
// containerd-lite's client with netd's code and words and no rpc prefix.
func TestNetdErrorsKeepTheirKind(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		kind error
		code codes.Code
	}{
		{"subnet full", fmt.Errorf("subnet 10.88.0.0/29 is full: %w", errdefs.ErrResourceExhausted), errdefs.ErrResourceExhausted, codes.ResourceExhausted},
		{"bad pid", fmt.Errorf("container \"web\": init pid 0: %w", errdefs.ErrInvalidArgument), errdefs.ErrInvalidArgument, codes.InvalidArgument},
		{"not found", fmt.Errorf("container \"web\": %w", errdefs.ErrNotFound), errdefs.ErrNotFound, codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Client{Socket: serveNetd(t, tc.err)}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for op, err := range map[string]error{
				"attach": func() error { _, _, err := c.Attach(ctx, "web", 1, nil); return err }(),
				"detach": c.Detach(ctx, "web"),
			} {
				if !errors.Is(err, tc.kind) {
					t.Fatalf("%s: %v is not %v", op, err, tc.kind)
				}
				if err.Error() != tc.err.Error() {
					t.Errorf("%s: %q, want netd's words %q", op, err, tc.err)
				}
				// containerd-lite wraps it; its own server maps the code.
				wrapped := fmt.Errorf("attach container %q to netd's bridge: %w", "web", err)
				s := status.Convert(errdefs.ToGRPC(wrapped))
				if s.Code() != tc.code || s.Message() != wrapped.Error() || strings.Contains(s.Message(), "rpc error") {
					t.Errorf("%s: containerd-lite would answer %v %q, want %v with netd's words", op, s.Code(), s.Message(), tc.code)
				}
			}
		})
	}
}

func TestNoNetd(t *testing.T) {
	c := Client{Socket: filepath.Join(t.TempDir(), "netd.sock")}
	addr, ok, err := c.Attach(context.Background(), "web", 1, nil)
	if addr != "" || ok || err != nil {
		t.Errorf("Attach without netd = %q, %v, %v; want loopback only and no error", addr, ok, err)
	}
	if err := c.Detach(context.Background(), "web"); err != nil {
		t.Errorf("Detach without netd: %v", err)
	}
}
