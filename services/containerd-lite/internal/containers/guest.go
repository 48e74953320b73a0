package containers

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/errdefs"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
)

// GuestSocket is the name of guestd's socket in a container's rpc directory.
const GuestSocket = "guestd.sock"

// GuestInfo asks guestd inside a running container who it is.
func (m *Manager) GuestInfo(ctx context.Context, name string) (*guestv1.GuestInfo, error) {
	st, _, err := m.opts.Runtime.State(name)
	if err != nil {
		return nil, err
	}
	if st != lxcrt.Running {
		return nil, fmt.Errorf("container %q is %s: %w", name, st, errdefs.ErrFailedPrecondition)
	}
	return m.askGuest(ctx, name)
}

func (m *Manager) askGuest(ctx context.Context, name string) (*guestv1.GuestInfo, error) {
	conn, err := dial.Unix(filepath.Join(m.paths(name).rpc, GuestSocket))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
	defer conn.Close()
	resp, err := guestv1.NewGuestServiceClient(conn).GetInfo(ctx, &guestv1.GetInfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("ask guestd in %q: %w", name, err)
	}
	return resp.GetInfo(), nil
}

// waitGuest polls guestd until it answers or ctx ends.
func (m *Manager) waitGuest(ctx context.Context, name string) (*guestv1.GuestInfo, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		info, err := m.askGuest(actx, name)
		cancel()
		if err == nil {
			return info, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// GuestRPCDir returns the rpc directory of a running container, for calls to its guestd.
func (m *Manager) GuestRPCDir(name string) (string, error) {
	if _, err := m.opts.Store.GetContainer(name); err != nil {
		return "", err
	}
	st, _, err := m.opts.Runtime.State(name)
	if err != nil {
		return "", err
	}
	if st != lxcrt.Running {
		return "", fmt.Errorf("container %q is %s: start it first: %w", name, st, errdefs.ErrFailedPrecondition)
	}
	return m.paths(name).rpc, nil
}
