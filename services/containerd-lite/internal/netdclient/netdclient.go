// Package netdclient is containerd-lite's side of netd: attach a running container to the
// bridge, detach it when it stops. When netd's socket is absent, containers keep loopback
// only and nothing fails. netd's errors come back with netd's code and words (errdefs.FromGRPC),
// so the caller can wrap them with %w and the user still reads netd's answer.
package netdclient

import (
	"context"
	"errors"
	"fmt"
	"os"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/errdefs"
	netv1 "hearth.dev/proto/hearth/net/v1"
)

// Client calls netd on its socket, connecting per call (netd may come and go).
type Client struct {
	Socket string
}

// Attach implements containers.Network.
func (c Client) Attach(ctx context.Context, container string, pid int) (string, bool, error) {
	if _, err := os.Stat(c.Socket); errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	conn, err := dial.Unix(c.Socket)
	if err != nil {
		return "", false, fmt.Errorf("netd: %w: %w", err, errdefs.ErrUnavailable)
	}
	defer conn.Close()
	resp, err := netv1.NewNetworkServiceClient(conn).AttachContainer(ctx, &netv1.AttachContainerRequest{Container: container, InitPid: int32(pid)})
	if err != nil {
		return "", false, errdefs.FromGRPC(err)
	}
	return resp.GetAttachment().GetAddress(), true, nil
}

// Detach implements containers.Network.
func (c Client) Detach(ctx context.Context, container string) error {
	if _, err := os.Stat(c.Socket); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	conn, err := dial.Unix(c.Socket)
	if err != nil {
		return fmt.Errorf("netd: %w: %w", err, errdefs.ErrUnavailable)
	}
	defer conn.Close()
	_, err = netv1.NewNetworkServiceClient(conn).DetachContainer(ctx, &netv1.DetachContainerRequest{Container: container})
	return errdefs.FromGRPC(err)
}
