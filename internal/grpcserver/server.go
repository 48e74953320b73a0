// Package grpcserver is the one gRPC server factory every Hearth daemon uses: peer
// credentials at the handshake, then interceptors for panic recovery, logging, the
// mapping of errors to status codes, authorization and a start-up gate; grpc.health.v1
// and the server reflection the daemon chooses registered; and a graceful stop with a
// deadline.
//
// Handlers return plain errors wrapping an errdefs kind; the server maps them to gRPC
// codes once, inside the logging interceptor, so the log shows the code the client gets.
package grpcserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/peercred"
)

// Config configures a server.
type Config struct {
	// Logger receives one line per call; slog.Default when nil.
	Logger *slog.Logger
	// Authorize decides which peers may call; nil allows root only.
	Authorize peercred.Policy
	// StopTimeout bounds the graceful stop; 10s when zero.
	StopTimeout time.Duration
	// Options are added to the server's (a codec, an unknown-service handler).
	Options []grpc.ServerOption
	// Reflection registers server reflection on the server, nil none. The host's daemons
	// use grpc-go's (stdreflection.Register); guestd, which lives in every container, a
	// lighter one (reflectsvc): linking grpc-go's costs every process that links it at
	// start, called or not. This package imports neither.
	Reflection func(*grpc.Server)
}

// Server is a gRPC server with health and reflection. Until SetServing is called, health
// reports NOT_SERVING and every call except health and reflection fails with Unavailable.
type Server struct {
	*grpc.Server
	health  *health.Server
	log     *slog.Logger
	stop    time.Duration
	serving atomic.Bool
	// stopping ends every stream's context when the server stops, so that long streams
	// (watches, followed logs) end instead of holding up the graceful stop.
	stopping      context.Context
	cancelStreams context.CancelFunc
}

// New returns a server; register services on it, then Serve.
func New(cfg Config) *Server {
	s := &Server{health: health.NewServer(), log: cfg.Logger, stop: cfg.StopTimeout}
	s.stopping, s.cancelStreams = context.WithCancel(context.Background())
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.stop == 0 {
		s.stop = 10 * time.Second
	}
	authz := cfg.Authorize
	if authz == nil {
		authz = peercred.RootOrGroup(-1)
	}
	s.Server = grpc.NewServer(append([]grpc.ServerOption{
		grpc.Creds(peercred.NewServer()),
		grpc.ChainUnaryInterceptor(s.recoverUnary, s.logUnary, statusUnary, authorizeUnary(authz), s.gateUnary),
		grpc.ChainStreamInterceptor(s.recoverStream, s.logStream, statusStream, authorizeStream(authz), s.gateStream, s.endWithServer),
	}, cfg.Options...)...)
	healthpb.RegisterHealthServer(s.Server, s.health)
	if cfg.Reflection != nil {
		cfg.Reflection(s.Server)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	return s
}

// SetServing opens the gate and reports SERVING for the server and each registered service.
// Daemons call it when their start-up reconcile is done.
func (s *Server) SetServing() {
	s.serving.Store(true)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for name := range s.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
}

// Serve serves on l until ctx is done, then stops gracefully: calls in flight get
// StopTimeout to finish before the server stops hard.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.Server.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.health.Shutdown()
	s.cancelStreams()
	done := make(chan struct{})
	go func() { s.Server.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.stop):
		s.log.Warn("graceful stop timed out; stopping hard", "timeout", s.stop)
		s.Server.Stop()
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// alwaysOpen lists the services that answer before SetServing.
func alwaysOpen(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}

func (s *Server) gate(method string) error {
	if s.serving.Load() || alwaysOpen(method) {
		return nil
	}
	return status.Error(codes.Unavailable, "daemon is starting (reconciling its state); retry shortly")
}

func (s *Server) gateUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.gate(info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) gateStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.gate(info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// endWithServer gives a stream a context that also ends when the server stops.
func (s *Server) endWithServer(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	stop := context.AfterFunc(s.stopping, cancel)
	defer stop()
	return h(srv, &stream{ServerStream: ss, ctx: ctx})
}

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }
