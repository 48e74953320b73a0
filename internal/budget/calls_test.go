package budget

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/grpcserver"
	"hearth.dev/internal/peercred"
)

// wantExhausted checks that err is ResourceExhausted with a message containing want.
func wantExhausted(t testing.TB, err error, want string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), want) {
		t.Fatalf("got %v, want ResourceExhausted saying %q", err, want)
	}
}

func TestExcessConnections(t *testing.T) {
	s := serve(t, Limits{MaxConns: 2, ExcessConns: 2, ExcessLinger: time.Second})
	ctx := context.Background()
	cc1 := s.dial(t)
	c1, c2 := healthpb.NewHealthClient(cc1), s.client(t)
	for _, c := range []healthpb.HealthClient{c1, c2} {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}

	// The third connection is accepted, and told why nothing works.
	c3 := s.client(t)
	_, err := c3.Check(ctx, &healthpb.HealthCheckRequest{})
	wantExhausted(t, err, "this container holds 2 connections to host.sock, the most allowed: close idle ones")

	// The fourth (the last excess one) is closed after the linger, whatever its client does.
	start := time.Now()
	raw4 := rawConn(t, s.path)
	// The fifth is closed at once.
	raw5 := rawConn(t, s.path)
	if d, closed := drainUntilClosed(raw5, 2*time.Second); !closed || d > 500*time.Millisecond {
		t.Errorf("a connection beyond the excess: closed %v after %s, want closed at once", closed, d)
	}
	_, closed := drainUntilClosed(raw4, 3*time.Second)
	d := time.Since(start)
	if !closed || d < 900*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("an excess connection: closed %v after %s, want about 1s", closed, d)
	}
	t.Logf("excess connection closed %s after it was opened", d.Round(time.Millisecond))

	// Served clients are unaffected; when one goes, a new client is served.
	if _, err := c2.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a served client failed while others were refused: %v", err)
	}
	before := s.b.Stats()
	cc1.Close()
	waitFor(t, 2*time.Second, "the slot of a closed client comes back", func() bool { return s.b.Stats().Conns < before.Conns })
	if _, err := s.client(t).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("a new client after one left: %v", err)
	}
	if st := s.b.Stats(); st.RefusedExcess < 1 || st.DroppedConns < 1 {
		t.Errorf("stats %+v: want refused calls on excess connections and dropped connections counted", st)
	}
}

func TestCallCap(t *testing.T) {
	s := serve(t, Limits{MaxCalls: 3, StreamsPerConn: 8})
	c := s.client(t)
	var cancels []context.CancelFunc
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
	}()
	watch := func() error {
		ctx, cancel := context.WithCancel(context.Background())
		w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		if err != nil {
			cancel()
			return err
		}
		cancels = append(cancels, cancel)
		return nil
	}
	for i := range 3 {
		if err := watch(); err != nil {
			t.Fatalf("stream %d of 3: %v", i+1, err)
		}
	}
	const msg = "this container has 3 calls and streams open on host.sock, the most allowed"
	wantExhausted(t, watch(), msg)
	_, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{})
	wantExhausted(t, err, msg)

	// Ending a stream frees its slot.
	cancels[0]()
	cancels = cancels[1:]
	waitFor(t, time.Second, "an ended stream's slot comes back", func() bool { return s.b.Stats().Calls < 3 })
	if err := watch(); err != nil {
		t.Fatalf("a stream after one ended: %v", err)
	}
	for _, cancel := range cancels {
		cancel()
	}
	cancels = nil
	waitFor(t, time.Second, "every slot comes back", func() bool { return s.b.Stats().Calls == 0 })
	if _, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("a call after every stream ended: %v", err)
	}
}

func TestCallFlood(t *testing.T) {
	l := DefaultLimits()
	s, other := serve(t, l), serve(t, l)
	stop := make(chan struct{})
	lat := victim(other.client(t), stop)

	c := s.client(t)
	const calls, workers = 10000, 8
	var ok, exhausted atomic.Int64
	var wrong atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for range calls / workers {
				_, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{})
				switch st := status.Convert(err); {
				case err == nil:
					ok.Add(1)
				case st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "more than 50 times a second (bursts of 100)"):
					exhausted.Add(1)
				default:
					wrong.Store(err)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	latencies := <-lat

	if err := wrong.Load(); err != nil {
		t.Fatalf("a call failed otherwise than by the rate limit: %v", err)
	}
	admitted := ok.Load()
	most := int64(float64(l.CallBurst) + l.CallsPerSecond*elapsed.Seconds() + 1)
	t.Logf("%d calls in %s (%.0f a second): %d admitted (at most %d by the bucket), %d refused",
		calls, elapsed.Round(time.Millisecond), calls/elapsed.Seconds(), admitted, most, exhausted.Load())
	if admitted < int64(l.CallBurst) || admitted > most {
		t.Errorf("%d calls admitted, want between the burst %d and %d", admitted, l.CallBurst, most)
	}
	if admitted+exhausted.Load() != calls {
		t.Errorf("admitted %d + refused %d != %d", admitted, exhausted.Load(), calls)
	}
	median, slowest := summary(latencies)
	t.Logf("other container: %d checks, median %s, slowest %s", len(latencies), median, slowest)
	if len(latencies) == 0 || slowest >= time.Second {
		t.Errorf("other container: %d checks, slowest %s, want under 1s", len(latencies), slowest)
	}
}

// TestWithoutListener: a server given the options but not the listener refuses every
// call, saying why, rather than serving without limits.
func TestWithoutListener(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	b := New("s.sock", Limits{}, quiet)
	srv := grpcserver.New(grpcserver.Config{Logger: quiet, Authorize: peercred.UIDs(uint32(os.Getuid())), Options: b.ServerOptions()})
	srv.SetServing()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	s := &budgeted{b: b, path: path}
	_, err = s.client(t).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "did not come through this budget's listener") {
		t.Errorf("got %v, want Internal naming the listener", err)
	}
}
