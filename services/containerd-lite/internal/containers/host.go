package containers

import (
	"context"
	"path/filepath"

	"hearth.dev/internal/grpcserver"
	"hearth.dev/internal/peercred"
	"hearth.dev/internal/unixsock"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// HostSocket is the name of a container's host socket in its rpc directory.
const HostSocket = "host.sock"

type hostServer struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// serveHost serves HostService on the container's host.sock, owned by the container's
// root, admitting only that user and the host's root. Serving twice is a no-op.
func (m *Manager) serveHost(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.hosts[name]; ok {
		return nil
	}
	root := m.opts.IDMap.RootUID()
	l, err := unixsock.Listen(filepath.Join(m.paths(name).rpc, HostSocket), unixsock.Options{UID: root, GID: root})
	if err != nil {
		return err
	}
	log := m.log.With("container", name, "socket", HostSocket)
	srv := grpcserver.New(grpcserver.Config{Logger: log, Authorize: peercred.UIDs(0, uint32(root))})
	hostv1.RegisterHostServiceServer(srv, m.opts.HostService(name))
	srv.SetServing()
	ctx, cancel := context.WithCancel(context.Background())
	hs := &hostServer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(hs.done)
		if err := srv.Serve(ctx, l); err != nil {
			log.Error("host socket stopped", "error", err)
		}
	}()
	m.hosts[name] = hs
	return nil
}

func (m *Manager) stopHost(name string) {
	m.mu.Lock()
	hs, ok := m.hosts[name]
	delete(m.hosts, name)
	m.mu.Unlock()
	if ok {
		hs.cancel()
		<-hs.done
	}
}
