// Package dial connects gRPC clients to Hearth's Unix sockets.
package dial

import (
	"context"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Unix returns a client connection to the gRPC server on the Unix socket at path. The
// connection is made lazily; a missing socket is reported at once with a hint.
func Unix(path string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("socket %s: %w (is the daemon running? set --run-dir or HEARTH_RUN_DIR to where it listens)", path, err)
	}
	return Func(path, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}, opts...)
}

// Func returns a client connection whose every connection comes from dialer (which may
// check what it connects to each time); label names it in errors.
func Func(label string, dialer func(context.Context) (net.Conn, error), opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return dialer(ctx) }),
	}, opts...)
	// The target is only a label: the dialer connects.
	return grpc.NewClient("passthrough:///"+label, opts...)
}
