package grpcserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/peercred"
	"hearth.dev/internal/unixsock"
)

// errService has a unary method Do and a server-streaming method Watch. Both take a
// case number; Watch sends one message first, so its error comes mid-stream. fail
// returns the handler's error for a case.
func errService(name string, fail func(ctx context.Context, n int32) error) grpc.ServiceDesc {
	return grpc.ServiceDesc{
		ServiceName: name,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Do",
			Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.Int32Value)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, req any) (any, error) {
					return wrapperspb.String("done"), fail(ctx, req.(*wrapperspb.Int32Value).GetValue())
				}
				return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + name + "/Do"}, h)
			},
		}},
		Streams: []grpc.StreamDesc{{
			StreamName:    "Watch",
			ServerStreams: true,
			Handler: func(_ any, ss grpc.ServerStream) error {
				in := new(wrapperspb.Int32Value)
				if err := ss.RecvMsg(in); err != nil {
					return err
				}
				if err := ss.SendMsg(wrapperspb.String("first")); err != nil {
					return err
				}
				return fail(ss.Context(), in.GetValue())
			},
		}},
	}
}

// syncBuffer is a log sink the test reads while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// records returns the log records written since the last call, and forgets them.
func (s *syncBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, rec)
	}
	s.b.Reset()
	return out
}

// serveErrs starts a serving server with errService on a temporary socket and returns a
// client connection to it and its log.
func serveErrs(t *testing.T, name string, fail func(ctx context.Context, n int32) error) (*grpc.ClientConn, *syncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sock")
	log := &syncBuffer{}
	s := New(Config{
		Logger:      slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Authorize:   peercred.UIDs(uint32(os.Getuid())),
		StopTimeout: time.Second,
	})
	desc := errService(name, fail)
	s.RegisterService(&desc, struct{}{})
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
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return conn, log
}

// callers run case n on a service: unary, and streaming (the error after a first message).
var callers = []struct {
	name string
	call func(ctx context.Context, conn *grpc.ClientConn, service string, n int32) error
}{
	{"unary", func(ctx context.Context, conn *grpc.ClientConn, service string, n int32) error {
		return conn.Invoke(ctx, "/"+service+"/Do", wrapperspb.Int32(n), new(wrapperspb.StringValue))
	}},
	{"stream", func(ctx context.Context, conn *grpc.ClientConn, service string, n int32) error {
		cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/"+service+"/Watch")
		if err != nil {
			return err
		}
		if err := cs.SendMsg(wrapperspb.Int32(n)); err != nil {
			return err
		}
		if err := cs.CloseSend(); err != nil {
			return err
		}
		first := new(wrapperspb.StringValue)
		if err := cs.RecvMsg(first); err != nil {
			return fmt.Errorf("first message: %w", err)
		}
		if first.GetValue() != "first" {
			return fmt.Errorf("first message %q", first.GetValue())
		}
		return cs.RecvMsg(first)
	}},
}

// errCases are the errors handlers return in TestErrorKinds: every kind, wrapped with %w.
var errCases = []struct {
	name string
	err  error
	code codes.Code
	kind error // nil: no kind to find
}{
	{"invalid argument", fmt.Errorf("container name %q: use lower-case letters: %w", "Bad_Name", errdefs.ErrInvalidArgument), codes.InvalidArgument, errdefs.ErrInvalidArgument},
	{"not found", fmt.Errorf("container %q: %w", "web", errdefs.ErrNotFound), codes.NotFound, errdefs.ErrNotFound},
	{"already exists", fmt.Errorf("container %q: %w", "web", errdefs.ErrAlreadyExists), codes.AlreadyExists, errdefs.ErrAlreadyExists},
	{"failed precondition", fmt.Errorf("container %q is running: stop it first: %w", "web", errdefs.ErrFailedPrecondition), codes.FailedPrecondition, errdefs.ErrFailedPrecondition},
	{"permission denied", fmt.Errorf("name %q belongs to another package: %w", "a.local", errdefs.ErrPermissionDenied), codes.PermissionDenied, errdefs.ErrPermissionDenied},
	{"unavailable", fmt.Errorf("guestd of %q does not answer: %w", "web", errdefs.ErrUnavailable), codes.Unavailable, errdefs.ErrUnavailable},
	{"resource exhausted", fmt.Errorf("subnet %s is full: %w", "10.88.0.0/29", errdefs.ErrResourceExhausted), codes.ResourceExhausted, errdefs.ErrResourceExhausted},
	{"unimplemented", fmt.Errorf("bindings: %w", errdefs.ErrUnimplemented), codes.Unimplemented, errdefs.ErrUnimplemented},
	{"aborted", fmt.Errorf("record changed meanwhile, retry: %w", errdefs.ErrAborted), codes.Aborted, errdefs.ErrAborted},
	{"internal", fmt.Errorf("pseudo-terminal: %w", errdefs.ErrInternal), codes.Internal, errdefs.ErrInternal},
	{"canceled", fmt.Errorf("wait for guestd: %w", context.Canceled), codes.Canceled, context.Canceled},
	{"deadline exceeded", fmt.Errorf("wait for guestd: %w", context.DeadlineExceeded), codes.DeadlineExceeded, context.DeadlineExceeded},
	{"cause and kind", fmt.Errorf("dial: %w: %w", errors.New("connection refused"), errdefs.ErrUnavailable), codes.Unavailable, errdefs.ErrUnavailable},
	{"no kind", errors.New("something broke"), codes.Unknown, nil},
	{"status passes unchanged", status.Error(codes.DataLoss, "the journal is torn"), codes.DataLoss, nil},
	{"code without a kind, from another daemon", fmt.Errorf("ask certd: %w", errdefs.FromGRPC(status.Error(codes.Unauthenticated, "who are you"))), codes.Unauthenticated, nil},
}

// TestErrorKinds sends every error kind through a real server's interceptors, from a
// unary handler and mid-stream: the client gets the kind's code and the handler's words,
// FromGRPC gives back the kind, and the server's log shows the code the client got.
func TestErrorKinds(t *testing.T) {
	conn, log := serveErrs(t, "test.Errs", func(_ context.Context, n int32) error { return errCases[n].err })
	for _, c := range callers {
		for i, tc := range errCases {
			t.Run(c.name+"/"+tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err := c.call(ctx, conn, "test.Errs", int32(i))
				s, ok := status.FromError(err)
				if !ok || s.Code() != tc.code {
					t.Fatalf("client got %v, want code %v", err, tc.code)
				}
				words := tc.err.Error()
				if se, isStatus := tc.err.(interface{ GRPCStatus() *status.Status }); isStatus {
					words = se.GRPCStatus().Message()
				}
				if s.Message() != words {
					t.Errorf("client got message %q, want %q", s.Message(), words)
				}
				got := errdefs.FromGRPC(err)
				if got.Error() != words {
					t.Errorf("FromGRPC message %q, want %q", got.Error(), words)
				}
				if tc.kind != nil && !errors.Is(got, tc.kind) {
					t.Errorf("errors.Is(FromGRPC(err), %v) = false", tc.kind)
				}
				if errdefs.Code(got) != tc.code {
					t.Errorf("FromGRPC(err) has code %v, want %v", errdefs.Code(got), tc.code)
				}
				// The call's log line is written before the status goes out.
				var calls []map[string]any
				for _, r := range log.records(t) {
					if r["msg"] == "call" {
						calls = append(calls, r)
					}
				}
				if len(calls) != 1 {
					t.Fatalf("logged %d calls, want 1: %v", len(calls), calls)
				}
				if calls[0]["code"] != tc.code.String() || calls[0]["error"] != words {
					t.Errorf("log says code %v error %q, want %v %q", calls[0]["code"], calls[0]["error"], tc.code, words)
				}
			})
		}
	}
}

// TestErrorTwoHops: server A's handler calls server B, which fails NotFound; A wraps the
// error with %w (after FromGRPC) or passes it on. A's client sees NotFound and B's words.
func TestErrorTwoHops(t *testing.T) {
	const bWords = `container "web": not found`
	connB, _ := serveErrs(t, "test.B", func(context.Context, int32) error {
		return fmt.Errorf("container %q: %w", "web", errdefs.ErrNotFound)
	})
	hops := []struct {
		name  string
		pass  func(error) error
		words string
	}{
		{"wrapped", func(err error) error { return fmt.Errorf("attach %q to the bridge: %w", "web", errdefs.FromGRPC(err)) }, `attach "web" to the bridge: ` + bWords},
		{"passed on", func(err error) error { return err }, bWords},
		{"converted, not wrapped", errdefs.FromGRPC, bWords},
	}
	// A's case number says which of B's methods it calls (even: Do, odd: Watch) and how
	// it passes B's error on (n/2).
	connA, _ := serveErrs(t, "test.A", func(ctx context.Context, n int32) error {
		err := callers[n%2].call(ctx, connB, "test.B", 0)
		if status.Code(err) != codes.NotFound {
			return fmt.Errorf("B answered %v, not NotFound: %w", err, errdefs.ErrInternal)
		}
		return hops[n/2].pass(err)
	})
	for _, c := range callers {
		for hi, h := range hops {
			for bi, b := range callers {
				t.Run(fmt.Sprintf("%s/%s/B %s", c.name, h.name, b.name), func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					err := c.call(ctx, connA, "test.A", int32(hi*2+bi))
					if status.Code(err) != codes.NotFound {
						t.Fatalf("client of A got %v, want NotFound", err)
					}
					got := errdefs.FromGRPC(err)
					if !errors.Is(got, errdefs.ErrNotFound) {
						t.Errorf("errors.Is(%v, ErrNotFound) = false", got)
					}
					if got.Error() != h.words {
						t.Errorf("client of A reads %q, want %q", got.Error(), h.words)
					}
				})
			}
		}
	}
}
