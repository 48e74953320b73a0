package guestclient

import (
	"context"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	guestv1 "hearth.dev/proto/hearth/guest/v1"
)

type infoServer struct {
	guestv1.UnimplementedGuestServiceServer
}

func (infoServer) GetInfo(context.Context, *guestv1.GetInfoRequest) (*guestv1.GetInfoResponse, error) {
	return &guestv1.GetInfoResponse{Info: &guestv1.GuestInfo{Hostname: "c1"}}, nil
}

// TestWaitUntilGuestdServes: while there is no socket, tries fail at the connect; once
// guestd serves, the connection of the try is the one its question goes over (no second
// connection), and Wait returns guestd's answer.
func TestWaitUntilGuestdServes(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "guestd.sock")
	var failed, made atomic.Int32
	d := func(ctx context.Context) (net.Conn, error) {
		var nd net.Dialer
		c, err := nd.DialContext(ctx, "unix", sock)
		if err != nil {
			failed.Add(1)
		} else {
			made.Add(1)
		}
		return c, err
	}
	const failing = 20 * time.Millisecond
	srv := grpc.NewServer()
	guestv1.RegisterGuestServiceServer(srv, infoServer{})
	t.Cleanup(srv.Stop)
	go func() {
		time.Sleep(failing)
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Error(err)
			return
		}
		srv.Serve(l)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := Wait(ctx, "c1", d)
	if err != nil {
		t.Fatal(err)
	}
	if info.GetHostname() != "c1" {
		t.Errorf("info %v, want guestd's answer", info)
	}
	if n := failed.Load(); n < 5 {
		t.Errorf("%d tries in the %v without a socket, want one about every millisecond", n, failing)
	}
	if n := made.Load(); n != 1 {
		t.Errorf("%d connections made, want 1: the question goes over the try's own", n)
	}
}

// TestWaitEndsWithContext: without a guestd, Wait ends with ctx and says why.
func TestWaitEndsWithContext(t *testing.T) {
	d := func(ctx context.Context) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "unix", filepath.Join(t.TempDir(), "none.sock"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := Wait(ctx, "c1", d); err == nil || ctx.Err() == nil {
		t.Fatalf("Wait = %v, want the context's end", err)
	}
}

// BenchmarkFailedTry is what one of Wait's tries costs while guestd has no socket yet;
// BenchmarkFailedInfo is the same question asked through a gRPC client made for it, as
// Wait tried before.
func BenchmarkFailedTry(b *testing.B) {
	d := missingSocket(b)
	for b.Loop() {
		if _, err := try(context.Background(), "c1", d); err == nil {
			b.Fatal("a try without a socket succeeded")
		}
	}
}

func BenchmarkFailedInfo(b *testing.B) {
	d := missingSocket(b)
	for b.Loop() {
		if _, err := Info(context.Background(), "c1", d); err == nil {
			b.Fatal("a question without a socket succeeded")
		}
	}
}

func missingSocket(b *testing.B) Dialer {
	sock := filepath.Join(b.TempDir(), "none.sock")
	return func(ctx context.Context) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "unix", sock)
	}
}
