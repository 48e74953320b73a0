// Package guestclient is containerd-lite's client of the guestd inside a container:
// connections come from a dialer that checks the socket it reaches (hostfs.Tree.DialGuest),
// never from a path the container could have replaced.
package guestclient

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/errdefs"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
)

// Dialer connects to one container's guestd.
type Dialer func(ctx context.Context) (net.Conn, error)

// Conn returns a client connection to the guestd that d reaches.
func Conn(container string, d Dialer, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return dial.Func("guestd-of-"+container, d, opts...)
}

// Info asks guestd who it is.
func Info(ctx context.Context, container string, d Dialer) (*guestv1.GuestInfo, error) {
	conn, err := Conn(container, d)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := guestv1.NewGuestServiceClient(conn).GetInfo(ctx, &guestv1.GetInfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("ask guestd in %q: %w", container, errdefs.FromGRPC(err))
	}
	return resp.GetInfo(), nil
}

// Wait asks guestd until it answers or ctx ends.
func Wait(ctx context.Context, container string, d Dialer) (*guestv1.GuestInfo, error) {
	for delay := 2 * time.Millisecond; ; delay = min(2*delay, 20*time.Millisecond) {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		info, err := Info(actx, container, d)
		cancel()
		if err == nil {
			return info, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
	}
}
