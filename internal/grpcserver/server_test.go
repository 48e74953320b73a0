package grpcserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/peercred"
	"hearth.dev/internal/unixsock"
)

// testService has one method that does what its handler says.
func testService(handler func() error) grpc.ServiceDesc {
	return grpc.ServiceDesc{
		ServiceName: "test.Svc",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Do",
			Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				in := new(emptypb.Empty)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(context.Context, any) (any, error) { return &emptypb.Empty{}, handler() }
				return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/test.Svc/Do"}, h)
			},
		}},
	}
}

func start(t *testing.T, policy peercred.Policy, handler func() error) (*Server, *grpc.ClientConn, context.CancelFunc, chan error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sock")
	s := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Authorize: policy, StopTimeout: time.Second})
	desc := testService(handler)
	s.RegisterService(&desc, struct{}{})
	l, err := unixsock.Listen(path, unixsock.Options{UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	conn, err := dial.Unix(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); cancel(); <-done })
	return s, conn, cancel, done
}

func call(conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return conn.Invoke(ctx, "/test.Svc/Do", &emptypb.Empty{}, &emptypb.Empty{})
}

func checkHealth(t *testing.T, conn *grpc.ClientConn, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health check %q: %v", service, err)
	}
	return resp.GetStatus()
}

func TestGateAndHealth(t *testing.T) {
	s, conn, _, _ := start(t, peercred.RootOrGroup(-1).Or(peercred.UIDs(uint32(os.Getuid()))), func() error { return nil })
	if got := checkHealth(t, conn, ""); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("before SetServing: health %v, want NOT_SERVING", got)
	}
	if err := call(conn); status.Code(err) != codes.Unavailable {
		t.Errorf("call before SetServing: %v, want Unavailable", err)
	}
	s.SetServing()
	for _, svc := range []string{"", "test.Svc"} {
		if got := checkHealth(t, conn, svc); got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("after SetServing: health %q %v, want SERVING", svc, got)
		}
	}
	if err := call(conn); err != nil {
		t.Errorf("call after SetServing: %v", err)
	}
}

func TestInterceptors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		policy  peercred.Policy
		handler func() error
		code    codes.Code
	}{
		{"allowed", peercred.UIDs(uint32(os.Getuid())), func() error { return nil }, codes.OK},
		{"refused peer", peercred.UIDs(54321), func() error { return nil }, codes.PermissionDenied},
		{"panic recovered", peercred.UIDs(uint32(os.Getuid())), func() error { panic("boom") }, codes.Internal},
		{"handler error passes", peercred.UIDs(uint32(os.Getuid())), func() error { return status.Error(codes.NotFound, "nope") }, codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, conn, _, _ := start(t, tc.policy, tc.handler)
			s.SetServing()
			if err := call(conn); status.Code(err) != tc.code {
				t.Fatalf("call: %v, want %v", err, tc.code)
			}
			// The server survives a panic.
			if tc.code == codes.Internal {
				if err := call(conn); status.Code(err) != codes.Internal {
					t.Fatalf("second call after panic: %v", err)
				}
			}
		})
	}
}

func TestGracefulStop(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	s, conn, cancel, done := start(t, peercred.UIDs(uint32(os.Getuid())), func() error {
		close(entered)
		<-release
		return nil
	})
	s.SetServing()
	result := make(chan error, 1)
	go func() { result <- call(conn) }()
	<-entered
	cancel()
	// The call in flight finishes before Serve returns.
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) while a call was in flight", err)
	default:
	}
	close(release)
	if err := <-result; err != nil {
		t.Errorf("in-flight call: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		done <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the graceful stop")
	}
	if err := call(conn); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("call after stop: %v, want a failure", err)
	}
}

// TestStopEndsStreams: a stream that would run forever ends when the server stops, well
// before the graceful-stop deadline.
func TestStopEndsStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	s := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Authorize: peercred.UIDs(uint32(os.Getuid())), StopTimeout: 30 * time.Second})
	s.SetServing()
	l, err := unixsock.Listen(path, unixsock.Options{UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	conn, err := dial.Unix(path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	watch, err := healthpb.NewHealthClient(conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve waited for the open stream")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("stop took %v with a stream open", d)
	}
}
