package jsonrpc

import (
	"context"
	"net"
	"path/filepath"
	"testing"
)

// BenchmarkRoundTrip is one call and its answer over a Unix socket, with a handler that
// does nothing: the protocol's own cost.
func BenchmarkRoundTrip(b *testing.B) {
	var m Mux
	Register(&m, "nop", func(ctx context.Context, p struct{}) (struct{}, error) { return struct{}{}, nil })
	path := filepath.Join(b.TempDir(), "b.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{Handler: &m}
	go s.Serve(context.Background(), l)
	defer s.Close()
	c, err := Dial(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	for range b.N {
		if err := c.Call(context.Background(), "nop", nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
