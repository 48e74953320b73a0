// Package guestproxy forwards GuestService calls made on containerd-lite's socket to the
// guestd of the container named in the call's metadata, frame by frame: hearthctl talks
// to one socket, and a caller allowed on containerd-lite's socket reaches guestd without
// reaching into the container's directory.
package guestproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"hearth.dev/internal/dial"
)

// ContainerKey is the metadata key naming the container a GuestService call is for.
const ContainerKey = "hearth-container"

// Prefix is the method prefix forwarded.
const Prefix = "/hearth.guest.v1.GuestService/"

// frame is a message passed through without decoding.
type frame struct{ b []byte }

// Codec is the proto codec, except that frames pass through as they are. Install it on
// the server with grpc.ForceServerCodec.
type Codec struct{}

var _ encoding.Codec = Codec{}

// Marshal implements encoding.Codec.
func (Codec) Marshal(v any) ([]byte, error) {
	if f, ok := v.(*frame); ok {
		return f.b, nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("cannot marshal %T", v)
	}
	return proto.Marshal(m)
}

// Unmarshal implements encoding.Codec.
func (Codec) Unmarshal(data []byte, v any) error {
	if f, ok := v.(*frame); ok {
		f.b = append(f.b[:0], data...)
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("cannot unmarshal into %T", v)
	}
	return proto.Unmarshal(data, m)
}

// Name implements encoding.Codec.
func (Codec) Name() string { return "proto" }

// Proxy forwards calls; Dialer returns the dialer of a running container's guestd (one
// that checks the socket it reaches: the container owns the directory it is in).
type Proxy struct {
	Dialer func(container string) (func(context.Context) (net.Conn, error), error)
}

// ServerOptions install the proxy on a server.
func (p *Proxy) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodec(Codec{}), grpc.UnknownServiceHandler(p.handle)}
}

func (p *Proxy) handle(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	if !strings.HasPrefix(method, Prefix) {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	md, _ := metadata.FromIncomingContext(ss.Context())
	names := md.Get(ContainerKey)
	if len(names) != 1 || names[0] == "" {
		return status.Errorf(codes.InvalidArgument, "GuestService calls on containerd-lite name their container in the %q metadata", ContainerKey)
	}
	d, err := p.Dialer(names[0])
	if err != nil {
		return err
	}
	conn, err := dial.Func("guestd-of-"+names[0], d, grpc.WithDefaultCallOptions(grpc.ForceCodec(Codec{})))
	if err != nil {
		return status.Errorf(codes.Unavailable, "guestd of %s: %v", names[0], err)
	}
	defer conn.Close()
	out := metadata.MD{}
	for k, v := range md {
		if !strings.HasPrefix(k, ":") && k != "content-type" && k != "user-agent" && k != ContainerKey {
			out[k] = v
		}
	}
	ctx := metadata.NewOutgoingContext(ss.Context(), out)
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	// Caller → guestd.
	upErr := make(chan error, 1)
	go func() {
		for {
			f := &frame{}
			if err := ss.RecvMsg(f); err != nil {
				if errors.Is(err, io.EOF) {
					upErr <- cs.CloseSend()
					return
				}
				upErr <- err
				return
			}
			if err := cs.SendMsg(f); err != nil {
				upErr <- nil // the answer below carries guestd's error
				return
			}
		}
	}()
	// guestd → caller.
	if hdr, err := cs.Header(); err == nil {
		_ = ss.SendHeader(hdr)
	}
	for {
		f := &frame{}
		if err := cs.RecvMsg(f); err != nil {
			ss.SetTrailer(cs.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := ss.SendMsg(f); err != nil {
			return err
		}
	}
}
