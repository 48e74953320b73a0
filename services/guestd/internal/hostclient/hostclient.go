// Package hostclient is guestd's side of the host socket: the effects the container asks
// of the host.
package hostclient

import (
	"context"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/errdefs"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// Socket is the host's socket as the container sees it.
const Socket = "/media/hearth/host/host.sock"

// DialOptions are the options of guestd's connection to host.sock. Fixed flow-control
// windows turn off gRPC's bandwidth estimator, which otherwise sends a ping (and makes
// the host answer one) after nearly every answer it receives: two more frames, and
// writes, per effect. The windows are the host's own (internal/budget): effects are
// small messages. The connection's buffers are small too (see ConnBuffer).
func DialOptions() []grpc.DialOption {
	const window = 64 << 10
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(window),
		grpc.WithInitialConnWindowSize(window),
		grpc.WithReadBufferSize(ConnBuffer),
		grpc.WithWriteBufferSize(ConnBuffer),
		grpc.WithSharedWriteBuffer(true),
	}
}

// ConnBuffer is the read and write buffer size of guestd's gRPC connections (its client
// to host.sock, and its server's connections from the host), instead of gRPC's 32 KiB
// each. What they carry are small messages (effects, status, log lines); a larger frame
// is read in several reads. With a shared write buffer, a connection holds its write
// buffer only while it writes.
const ConnBuffer = 8 << 10

// Dial connects to the host socket at path (Socket inside a container).
func Dial(path string) (hostv1.HostServiceClient, *grpc.ClientConn, error) {
	conn, err := dial.Unix(path, DialOptions()...)
	if err != nil {
		return nil, nil, err
	}
	return hostv1.NewHostServiceClient(conn), conn, nil
}

// Command runs "guestd host VERB ARGS...": the host's effects by hand, from inside the
// container, for package authors and tests. It prints the answer as JSON.
func Command(w io.Writer, path string, args []string) error {
	usage := fmt.Errorf(`usage: guestd host VERB ARGS...
  whoami                                  the container's name on the host
  create-overlay IMAGE NAME               overlay of IMAGE at /media/hearth/subcontainers/NAME
  destroy-overlay NAME
  bind-volume VOLUME OVERLAY PATH [ro]    bind a volume at PATH inside the overlay
  list-overlays`)
	if len(args) == 0 {
		return usage
	}
	cl, conn, err := Dial(path)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var resp proto.Message
	switch verb, a := args[0], args[1:]; {
	case verb == "whoami" && len(a) == 0:
		resp, err = cl.GetIdentity(ctx, &hostv1.GetIdentityRequest{})
	case verb == "create-overlay" && len(a) == 2:
		resp, err = cl.CreateOverlay(ctx, &hostv1.CreateOverlayRequest{Image: a[0], Name: a[1]})
	case verb == "destroy-overlay" && len(a) == 1:
		resp, err = cl.DestroyOverlay(ctx, &hostv1.DestroyOverlayRequest{Name: a[0]})
	case verb == "bind-volume" && (len(a) == 3 || len(a) == 4 && a[3] == "ro"):
		resp, err = cl.BindVolume(ctx, &hostv1.BindVolumeRequest{Volume: a[0], Subcontainer: a[1], Path: a[2], ReadOnly: len(a) == 4})
	case verb == "list-overlays" && len(a) == 0:
		resp, err = cl.ListOverlays(ctx, &hostv1.ListOverlaysRequest{})
	default:
		return usage
	}
	if err != nil {
		return err
	}
	b, err := protojson.Marshal(resp)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
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

// Host implements the launcher's host effects over host.sock.
type Host struct {
	Client hostv1.HostServiceClient
}

// CreateOverlay asks the host for a subcontainer root.
func (h Host) CreateOverlay(ctx context.Context, image, name string) (string, error) {
	resp, err := h.Client.CreateOverlay(ctx, &hostv1.CreateOverlayRequest{Image: image, Name: name})
	if err != nil {
		return "", errdefs.FromGRPC(err)
	}
	return resp.GetOverlay().GetPath(), nil
}

// DestroyOverlay asks the host to remove a subcontainer root.
func (h Host) DestroyOverlay(ctx context.Context, name string) error {
	_, err := h.Client.DestroyOverlay(ctx, &hostv1.DestroyOverlayRequest{Name: name})
	return errdefs.FromGRPC(err)
}

// BindVolume asks the host to bind a volume into a subcontainer.
func (h Host) BindVolume(ctx context.Context, volume, sub, path string, readOnly bool) error {
	_, err := h.Client.BindVolume(ctx, &hostv1.BindVolumeRequest{Volume: volume, Subcontainer: sub, Path: path, ReadOnly: readOnly})
	return errdefs.FromGRPC(err)
}
