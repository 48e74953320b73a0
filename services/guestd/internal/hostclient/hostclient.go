// Package hostclient is guestd's side of the host socket: the effects the container asks
// of the host.
package hostclient

import (
	"context"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"

	"hearth.dev/internal/dial"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// Socket is the host's socket as the container sees it.
const Socket = "/media/hearth/rpc/host.sock"

// Dial connects to the host socket at path (Socket inside a container).
func Dial(path string) (hostv1.HostServiceClient, *grpc.ClientConn, error) {
	conn, err := dial.Unix(path)
	if err != nil {
		return nil, nil, err
	}
	return hostv1.NewHostServiceClient(conn), conn, nil
}

// Whoami prints the container's name as the host knows it: "guestd whoami", a check
// that the host socket works from inside.
func Whoami(w io.Writer, path string) error {
	cl, conn, err := Dial(path)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cl.GetIdentity(ctx, &hostv1.GetIdentityRequest{})
	if err != nil {
		return fmt.Errorf("ask the host at %s: %w", path, err)
	}
	_, err = fmt.Fprintln(w, resp.GetContainer())
	return err
}
