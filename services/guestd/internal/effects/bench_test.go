package effects

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/jsonrpc"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	"hearth.dev/services/guestd/internal/hostclient"
)

// BenchmarkShimOverhead: identity.get through the shim (JSON-RPC client, server and
// handler, then gRPC to an in-process host) next to the bare gRPC call: the shim's own
// cost, without the container's scheduling.
func BenchmarkShimOverhead(b *testing.B) {
	dir := b.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, "host.sock"))
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	hostv1.RegisterHostServiceServer(srv, testHost{})
	go srv.Serve(l)
	defer srv.Stop()
	conn, err := dial.Unix(filepath.Join(dir, "host.sock"), hostclient.DialOptions()...)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	h, err := New(conn, map[protoreflect.FullName]LocalFunc{
		"hearth.host.v1.SubcontainerService.Exec": func(context.Context, proto.Message) (proto.Message, error) { return nil, nil },
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	el, err := net.Listen("unix", filepath.Join(dir, "effects.sock"))
	if err != nil {
		b.Fatal(err)
	}
	js := &jsonrpc.Server{Handler: h}
	go js.Serve(context.Background(), el)
	defer js.Close()
	ctx := context.Background()
	c, err := jsonrpc.Dial(ctx, filepath.Join(dir, "effects.sock"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	bare := hostv1.NewHostServiceClient(conn)
	b.Run("shim", func(b *testing.B) {
		for range b.N {
			if err := c.Call(ctx, "identity.get", nil, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("grpc", func(b *testing.B) {
		for range b.N {
			if _, err := bare.GetIdentity(ctx, &hostv1.GetIdentityRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("handler", func(b *testing.B) {
		for range b.N {
			if _, err := h.Call(ctx, "identity.get", nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
