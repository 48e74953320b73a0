// Package hostsock serves each running container its own host.sock: a gRPC server whose
// only service is HostService for that container, on a socket in the container's
// host-only directory (owned by the host's root, group the container's root, 0660), so the
// socket is the caller's identity. Each server has a budget of its own (connections,
// concurrent calls, calls per second, bytes held): a container that exceeds it gets
// ResourceExhausted, and the other containers' servers do not notice.
package hostsock

import (
	"context"
	"log/slog"
	"sync"

	"hearth.dev/internal/budget"
	"hearth.dev/internal/grpcserver"
	"hearth.dev/internal/grpcserver/stdreflection"
	"hearth.dev/internal/peercred"
	"hearth.dev/internal/unixsock"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// Servers keeps the host.sock servers of running containers.
type Servers struct {
	log     *slog.Logger
	service func(container string) hostv1.HostServiceServer
	limits  budget.Limits

	mu      sync.Mutex
	running map[string]*server
}

type server struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns the servers. service makes one container's HostService; limits bound each
// container's server (zero fields take the budget's defaults).
func New(log *slog.Logger, service func(container string) hostv1.HostServiceServer, limits budget.Limits) *Servers {
	return &Servers{log: log, service: service, limits: limits, running: map[string]*server{}}
}

// Serve serves the container on a socket at path, which only the host's root and the
// container's root (host uid rootUID, whose group owns the socket) may call. Serving a
// container served already is a no-op.
func (s *Servers) Serve(container, path string, rootUID int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.running[container]; ok {
		return nil
	}
	l, err := unixsock.Listen(path, unixsock.Options{UID: 0, GID: rootUID})
	if err != nil {
		return err
	}
	log := s.log.With("container", container, "socket", "host.sock")
	b := budget.New("host.sock", s.limits, log)
	srv := grpcserver.New(grpcserver.Config{Logger: log, Authorize: peercred.UIDs(0, uint32(rootUID)), Options: b.ServerOptions(),
		Reflection: stdreflection.Register})
	hostv1.RegisterHostServiceServer(srv, s.service(container))
	srv.SetServing()
	ctx, cancel := context.WithCancel(context.Background())
	hs := &server{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(hs.done)
		if err := srv.Serve(ctx, b.Listener(l)); err != nil {
			log.Error("host socket stopped", "error", err)
		}
	}()
	s.running[container] = hs
	return nil
}

// Stop stops serving the container and waits until its server has stopped.
func (s *Servers) Stop(container string) {
	s.mu.Lock()
	hs, ok := s.running[container]
	delete(s.running, container)
	s.mu.Unlock()
	if ok {
		hs.cancel()
		<-hs.done
	}
}

// Close stops every server.
func (s *Servers) Close() {
	s.mu.Lock()
	names := make([]string, 0, len(s.running))
	for n := range s.running {
		names = append(names, n)
	}
	s.mu.Unlock()
	for _, n := range names {
		s.Stop(n)
	}
}
