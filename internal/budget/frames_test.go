package budget

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

const watchMethod = "/grpc.health.v1.Health/Watch"

// emptyRequest is a gRPC message holding an empty HealthCheckRequest.
var emptyRequest = []byte{0, 0, 0, 0, 0}

// TestFrames opens a Watch stream by hand and sends its request in the frames of each
// case, without ending the stream: frames that would cost the server far more than they
// carry close the connection at once; a well-formed stream stays open. (Without the
// guard, a request sent one byte a frame pins ~47 bytes of heap per byte sent.)
func TestFrames(t *testing.T) {
	l := DefaultLimits()
	data := func(flags byte, payload []byte) []byte { return frameBytes(frameData, flags, 1, payload) }
	repeat := func(n int, f []byte) []byte { return bytes.Repeat(f, n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	padded := append([]byte{255}, make([]byte, 255)...) // one byte of data, 255 of padding
	announce := []byte{0, 0, 0, 0x20, 0}                // a message of 8 KiB follows
	tests := []struct {
		name       string
		frames     []byte // DATA frames of stream 1
		wantClosed bool
	}{
		{"a watch waiting for its answers", data(0, emptyRequest), false},
		{"a request one byte a frame", cat(data(0, announce), repeat(1000, data(0, []byte{0}))), true},
		{"one byte a frame after the request", cat(data(0, emptyRequest), repeat(1000, data(0, []byte{0}))), true},
		{"padded frames", cat(data(0, emptyRequest), repeat(100, data(flagPadded, padded))), true},
		{"more than one request", cat(data(0, emptyRequest), repeat(3, data(0, make([]byte, 4096)))), true},
		{"small frames within the limit", cat(data(0, emptyRequest), repeat(l.MaxSmallFrames-1, data(0, []byte{0}))), false},
	}
	s := serve(t, l)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.b.Stats().ClosedFrames
			heap := heapAfterGC()
			c := rawConn(t, s.path)
			headers := frameBytes(frameHeaders, flagEndHeaders, 1, requestHeaders(watchMethod))
			if _, err := c.Write(cat(headers, tt.frames)); err != nil && !tt.wantClosed {
				t.Fatal(err)
			}
			d, closed := drainUntilClosed(c, 500*time.Millisecond)
			grown := int64(heapAfterGC()) - int64(heap)
			if closed {
				t.Logf("closed after %s; heap grew %d KiB", d.Round(time.Millisecond), grown>>10)
			} else {
				t.Logf("open after 500ms; heap grew %d KiB", grown>>10)
			}
			if closed != tt.wantClosed {
				t.Fatalf("connection closed: %v, want %v", closed, tt.wantClosed)
			}
			if got := s.b.Stats().ClosedFrames - before; tt.wantClosed && got != 1 {
				t.Errorf("ClosedFrames went up by %d, want 1", got)
			}
			if grown > 512<<10 {
				t.Errorf("the server's heap grew by %d KiB", grown>>10)
			}
			c.Close()
		})
	}
	waitFor(t, 2*time.Second, "every connection's slot comes back", func() bool { return s.b.Stats().Conns == 0 })
}

// TestClientThatDoesNotRead opens calls as fast as it can and never reads the answers.
// The server stops reading once its answers are stuck, and closes the connection after
// WriteTimeout; its memory stays put, and another container is served throughout.
func TestClientThatDoesNotRead(t *testing.T) {
	l := DefaultLimits()
	l.WriteTimeout = time.Second
	s, other := serve(t, l), serve(t, l)
	stop := make(chan struct{})
	lat := victim(other.client(t), stop)
	live := liveSampler(stop)
	heap := heapAfterGC()

	c := rawConn(t, s.path)
	headers := requestHeaders("/grpc.health.v1.Health/Check")
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	var sent, calls int
	var err error
	for id := uint32(1); err == nil && id < 1<<31-2; id += 2 {
		var n int
		n, err = c.Write(frameBytes(frameHeaders, flagEndHeaders|flagEndStream, id, headers))
		sent += n
		calls++
	}
	took := time.Since(start)
	close(stop)
	latencies, peakLive := <-lat, <-live

	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server had not closed the connection after %s (%d calls, %d KiB sent)", took, calls, sent>>10)
	}
	t.Logf("the server closed the connection after %s: %d calls sent (%d KiB) before it stopped reading (%v)",
		took.Round(time.Millisecond), calls, sent>>10, err)
	t.Logf("live heap: %.1f MiB before, %.1f MiB at most", float64(heap)/mib, float64(peakLive)/mib)
	median, slowest := summary(latencies)
	t.Logf("other container: %d checks, median %s, slowest %s", len(latencies), median, slowest)

	if st := s.b.Stats(); st.ClosedWrites != 1 {
		t.Errorf("stats %+v, want one connection closed for not reading", st)
	}
	if sent > 4*mib {
		t.Errorf("the server read %d KiB from a client that read nothing", sent>>10)
	}
	if peakLive > heap+uint64(s.b.MaxBytes()) {
		t.Errorf("live heap reached %.1f MiB from %.1f MiB, more than MaxBytes", float64(peakLive)/mib, float64(heap)/mib)
	}
	if len(latencies) == 0 || slowest >= time.Second {
		t.Errorf("other container: %d checks, slowest %s", len(latencies), slowest)
	}
	if _, err := s.client(t).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("a well-behaved client after the attack: %v", err)
	}
}
