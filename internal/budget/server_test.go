package budget

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/grpcserver"
	"hearth.dev/internal/peercred"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// budgeted is a real server, as containerd-lite makes one for a container: the shared
// server factory with the budget's options, on a Unix socket through the budget's
// listener. It serves grpc.health.v1 (Check answers at once; Watch streams until the
// client goes).
type budgeted struct {
	b    *Budget
	path string
}

func serve(t testing.TB, l Limits) *budgeted {
	t.Helper()
	dir, err := os.MkdirTemp("", "budget")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "host.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	b := New("host.sock", l, quiet)
	srv := grpcserver.New(grpcserver.Config{
		Logger:      quiet,
		Authorize:   peercred.UIDs(uint32(os.Getuid())),
		StopTimeout: time.Second,
		Options:     b.ServerOptions(),
	})
	srv.SetServing()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, b.Listener(ln)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &budgeted{b: b, path: path}
}

// dial returns a new client connection of its own.
func (s *budgeted) dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	cc, err := dial.Unix(s.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// client returns a health client on a connection of its own.
func (s *budgeted) client(t testing.TB) healthpb.HealthClient {
	return healthpb.NewHealthClient(s.dial(t))
}

// waitFor polls cond every 5ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// victim checks another container's server every 20ms until stop is closed and returns
// each call's duration; a failed call counts as an hour.
func victim(c healthpb.HealthClient, stop <-chan struct{}) <-chan []time.Duration {
	out := make(chan []time.Duration, 1)
	go func() {
		var lat []time.Duration
		for {
			select {
			case <-stop:
				out <- lat
				return
			case <-time.After(20 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			start := time.Now()
			_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
			d := time.Since(start)
			cancel()
			if err != nil {
				d = time.Hour
			}
			lat = append(lat, d)
		}
	}()
	return out
}

// summary returns the median and largest duration.
func summary(lat []time.Duration) (median, maxd time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}

// openFDs counts this process's open descriptors (one of them the directory read).
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// heap returns the bytes of heap and goroutine stacks in use after a full collection.
func heapAfterGC() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	return heapNow()
}

func heapNow() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// sampler records the most descriptors and heap seen until stop is closed.
func sampler(t testing.TB, stop <-chan struct{}) <-chan [2]uint64 {
	out := make(chan [2]uint64, 1)
	go func() {
		var most [2]uint64
		for {
			if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
				most[0] = max(most[0], uint64(len(ents)))
			}
			most[1] = max(most[1], heapNow())
			select {
			case <-stop:
				out <- most
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return out
}

const mib = 1 << 20

// HTTP/2 by hand, for clients that misbehave.

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func frameBytes(typ, flags byte, id uint32, payload []byte) []byte {
	b := make([]byte, 9, 9+len(payload))
	b[0], b[1], b[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	b[3], b[4] = typ, flags
	binary.BigEndian.PutUint32(b[5:], id)
	return append(b, payload...)
}

// requestHeaders is an HPACK block of literal fields for a gRPC call of method.
func requestHeaders(method string) []byte {
	var b []byte
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", "host"},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		b = append(b, 0x00, byte(len(f[0])))
		b = append(b, f[0]...)
		b = append(b, byte(len(f[1])))
		b = append(b, f[1]...)
	}
	return b
}

const flagEndHeaders = 0x4

// rawConn opens a connection and sends the client preface and empty settings.
func rawConn(t testing.TB, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A connection the server closes at once may refuse the preface: that close is what
	// the callers look for.
	if _, err := c.Write(append([]byte(clientPreface), frameBytes(0x4, 0, 0, nil)...)); err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	return c
}

// drainUntilClosed reads c until the server closes it or d passes, and returns how long
// that took, or false.
func drainUntilClosed(c net.Conn, d time.Duration) (time.Duration, bool) {
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return 0, false
			}
			return time.Since(start), true
		}
	}
}
