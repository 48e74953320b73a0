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

	"google.golang.org/grpc"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/errdefs"
	netv1 "hearth.dev/proto/hearth/net/v1"
	"hearth.dev/services/containerd-lite/internal/containers"
)

// Client calls netd on its socket, connecting per call (netd may come and go).
type Client struct {
	Socket string
}

// ErrNoNetd says netd is not running (its socket is absent).
var ErrNoNetd = fmt.Errorf("netd is not running: start it for LAN names, domains and onion addresses: %w", errdefs.ErrUnavailable)

// call runs f with a connection to netd, or returns ErrNoNetd.
func (c Client) call(f func(*grpc.ClientConn) error) error {
	if _, err := os.Stat(c.Socket); errors.Is(err, os.ErrNotExist) {
		return ErrNoNetd
	}
	conn, err := dial.Unix(c.Socket)
	if err != nil {
		return fmt.Errorf("netd: %w: %w", err, errdefs.ErrUnavailable)
	}
	defer conn.Close()
	return errdefs.FromGRPC(f(conn))
}

// Attach implements containers.Network.
func (c Client) Attach(ctx context.Context, container string, pid int, ifaces []containers.Interface) (string, bool, error) {
	var addr string
	req := &netv1.AttachContainerRequest{Container: container, InitPid: int32(pid)}
	for _, i := range ifaces {
		p := &netv1.InterfacePort{Name: i.Name, Port: uint32(i.Port), Protocol: netv1.Protocol_PROTOCOL_TCP}
		if i.HTTP {
			p.Protocol = netv1.Protocol_PROTOCOL_HTTP
		}
		req.Interfaces = append(req.Interfaces, p)
	}
	err := c.call(func(conn *grpc.ClientConn) error {
		resp, err := netv1.NewNetworkServiceClient(conn).AttachContainer(ctx, req)
		addr = resp.GetAttachment().GetAddress()
		return err
	})
	if errors.Is(err, ErrNoNetd) {
		return "", false, nil
	}
	return addr, err == nil, err
}

// Resolver implements containers.Network.
func (c Client) Resolver(ctx context.Context) string {
	var dns string
	_ = c.call(func(conn *grpc.ClientConn) error {
		resp, err := netv1.NewNetworkServiceClient(conn).GetNetwork(ctx, &netv1.GetNetworkRequest{})
		dns = resp.GetNetwork().GetDns()
		return err
	})
	return dns
}

// Detach implements containers.Network.
func (c Client) Detach(ctx context.Context, container string) error {
	err := c.call(func(conn *grpc.ClientConn) error {
		_, err := netv1.NewNetworkServiceClient(conn).DetachContainer(ctx, &netv1.DetachContainerRequest{Container: container})
		return err
	})
	if errors.Is(err, ErrNoNetd) {
		return nil
	}
	return err
}

// Bind creates (or finds) a binding.
func (c Client) Bind(ctx context.Context, req *netv1.CreateBindingRequest) (*netv1.Binding, error) {
	var b *netv1.Binding
	err := c.call(func(conn *grpc.ClientConn) error {
		resp, err := netv1.NewBindingServiceClient(conn).CreateBinding(ctx, req)
		b = resp.GetBinding()
		return err
	})
	return b, err
}

// Unbind deletes one binding (id), or all of a container's (container).
func (c Client) Unbind(ctx context.Context, id, container string) ([]string, error) {
	var deleted []string
	err := c.call(func(conn *grpc.ClientConn) error {
		resp, err := netv1.NewBindingServiceClient(conn).DeleteBinding(ctx, &netv1.DeleteBindingRequest{Id: id, Container: container})
		deleted = resp.GetDeleted()
		return err
	})
	return deleted, err
}

// Bindings lists a container's bindings.
func (c Client) Bindings(ctx context.Context, container string) ([]*netv1.Binding, error) {
	var out []*netv1.Binding
	err := c.call(func(conn *grpc.ClientConn) error {
		resp, err := netv1.NewBindingServiceClient(conn).ListBindings(ctx, &netv1.ListBindingsRequest{Container: container})
		out = resp.GetBindings()
		return err
	})
	return out, err
}

// Expose implements containers.Network: each binding is created, or found as it is.
func (c Client) Expose(ctx context.Context, container string, ex []containers.Exposure) error {
	var errs []error
	for _, e := range ex {
		req := &netv1.CreateBindingRequest{Container: container, Interface: e.Interface, Port: uint32(e.Port), Protocol: netv1.Protocol_PROTOCOL_TCP}
		if e.HTTP {
			req.Protocol = netv1.Protocol_PROTOCOL_HTTP
		}
		switch e.Where {
		case "lan":
			req.Exposure = netv1.Exposure_EXPOSURE_LAN
		case "tor":
			req.Exposure = netv1.Exposure_EXPOSURE_TOR
		default:
			continue
		}
		if _, err := c.Bind(ctx, req); err != nil {
			if errors.Is(err, ErrNoNetd) {
				return nil
			}
			errs = append(errs, fmt.Errorf("%s on %s: %w", e.Interface, e.Where, err))
		}
	}
	return errors.Join(errs...)
}

// Unexpose implements containers.Network.
func (c Client) Unexpose(ctx context.Context, container string) error {
	_, err := c.Unbind(ctx, "", container)
	if errors.Is(err, ErrNoNetd) {
		return nil
	}
	return err
}
