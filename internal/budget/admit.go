package budget

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Admission is done by interceptors rather than a tap handle: gRPC never ends the
// context of a stream its tap refuses, so a refused call carrying a deadline would keep
// a timer until that deadline, and a client could pile them up without end.

func (b *Budget) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	done, err := b.admit(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	defer done()
	return h(ctx, req)
}

func (b *Budget) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	done, err := b.admit(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	defer done()
	return h(srv, ss)
}

// admit decides whether a call may run; an admitted call holds one of MaxCalls until it
// calls done.
func (b *Budget) admit(ctx context.Context, method string) (done func(), err error) {
	l := b.limits
	c := connOf(ctx)
	if c == nil || c.b != b {
		return nil, status.Errorf(codes.Internal, "%s: the connection did not come through this budget's listener (a server set-up error)", b.socket)
	}
	if c.excess {
		b.counts.excess.Add(1)
		b.warnf("connections", "refused a call on an excess connection: the client holds %d connections", l.MaxConns)
		return nil, status.Errorf(codes.ResourceExhausted,
			"this container holds %d connections to %s, the most allowed: close idle ones (this connection closes within %s)",
			l.MaxConns, b.socket, l.ExcessLinger)
	}
	if n := b.calls.Add(1); n > int64(l.MaxCalls) {
		b.calls.Add(-1)
		b.counts.calls.Add(1)
		b.warnf("calls", "refused %s: %d calls and streams open", method, l.MaxCalls)
		return nil, status.Errorf(codes.ResourceExhausted,
			"this container has %d calls and streams open on %s, the most allowed: wait for one to end, or end streams it no longer reads",
			l.MaxCalls, b.socket)
	}
	if wait := b.bucket.take(time.Now()); wait > 0 {
		b.calls.Add(-1)
		b.counts.rate.Add(1)
		b.warnf("rate", "refused %s: over %g calls a second", method, l.CallsPerSecond)
		return nil, status.Errorf(codes.ResourceExhausted,
			"this container called %s more than %g times a second (bursts of %d), the most allowed: slow down, and retry in %s",
			b.socket, l.CallsPerSecond, l.CallBurst, wait.Round(time.Millisecond))
	}
	return func() { b.calls.Add(-1) }, nil
}

// connOf returns the budget's connection a call arrived on: the connection's remote
// address is an addr, which gRPC puts in the call's peer.
func connOf(ctx context.Context) *conn {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	a, ok := p.Addr.(addr)
	if !ok {
		return nil
	}
	return a.c
}

// bucket is a token bucket: it holds up to burst tokens and gains rate a second.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// take takes a token at now and returns 0, or returns how long until one is there.
func (k *bucket) take(now time.Time) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.last.IsZero() && now.After(k.last) {
		k.tokens = min(k.burst, k.tokens+now.Sub(k.last).Seconds()*k.rate)
	}
	if now.After(k.last) {
		k.last = now
	}
	if k.tokens >= 1 {
		k.tokens--
		return 0
	}
	return time.Duration((1 - k.tokens) / k.rate * float64(time.Second))
}
