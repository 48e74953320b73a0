package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/peercred"
)

func (s *Server) recovered(method string, r any) error {
	s.log.Error("panic in handler", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return status.Errorf(codes.Internal, "internal error in %s (the daemon log has the details)", method)
}

func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(info.FullMethod, r)
		}
	}()
	return h(ctx, req)
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(info.FullMethod, r)
		}
	}()
	return h(srv, ss)
}

func (s *Server) logCall(ctx context.Context, method string, start time.Time, err error) {
	code := status.Code(err)
	lvl := slog.LevelDebug
	switch code {
	// ResourceExhausted too: a flood would write a line per refused call, and whoever
	// refuses (a budget) logs its refusals at a bounded rate itself.
	case codes.OK, codes.Canceled, codes.NotFound, codes.AlreadyExists, codes.InvalidArgument, codes.FailedPrecondition, codes.ResourceExhausted:
	case codes.Internal, codes.Unknown, codes.DataLoss:
		lvl = slog.LevelError
	default:
		lvl = slog.LevelWarn
	}
	if alwaysOpen(method) && code == codes.OK {
		lvl = slog.LevelDebug - 4
	}
	attrs := []any{"method", method, "code", code.String(), "duration", time.Since(start).Round(time.Microsecond)}
	if c, ok := peercred.FromContext(ctx); ok {
		attrs = append(attrs, "peer_uid", c.UID, "peer_pid", c.PID)
	}
	if err != nil {
		attrs = append(attrs, "error", status.Convert(err).Message())
	}
	s.log.Log(ctx, lvl, "call", attrs...)
}

func (s *Server) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	s.logCall(ctx, info.FullMethod, start, err)
	return resp, err
}

func (s *Server) logStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	err := h(srv, ss)
	s.logCall(ss.Context(), info.FullMethod, start, err)
	return err
}

// statusUnary maps the handler's error to a gRPC status with errdefs.ToGRPC; a status
// passes through unchanged.
func statusUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	return resp, errdefs.ToGRPC(err)
}

// statusStream is statusUnary for streams.
func statusStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return errdefs.ToGRPC(h(srv, ss))
}

func authorize(ctx context.Context, p peercred.Policy) error {
	c, ok := peercred.FromContext(ctx)
	if !ok {
		return status.Error(codes.PermissionDenied, "caller's credentials are unknown: connect over the daemon's Unix socket")
	}
	if err := p(c); err != nil {
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return nil
}

func authorizeUnary(p peercred.Policy) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := authorize(ctx, p); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

func authorizeStream(p peercred.Policy) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := authorize(ss.Context(), p); err != nil {
			return err
		}
		return h(srv, ss)
	}
}
