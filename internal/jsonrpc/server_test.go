package jsonrpc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hearth.dev/internal/errkind"
)

// serve starts a server with m's methods plus "sleep" and "echo" on a socket in a
// temporary directory and returns its path.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	return serveWrapped(t, s, nil)
}

// serveWrapped is serve with the handler wrapped by wrap.
func serveWrapped(t *testing.T, s *Server, wrap func(Handler) Handler) string {
	t.Helper()
	m := testMux()
	Register(m, "echo", func(ctx context.Context, p map[string]any) (map[string]any, error) { return p, nil })
	Register(m, "sleep", func(ctx context.Context, p struct {
		MS int `json:"ms"`
	}) (int, error) {
		select {
		case <-time.After(time.Duration(p.MS) * time.Millisecond):
			return p.MS, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	s.Handler = m
	if wrap != nil {
		s.Handler = wrap(m)
	}
	path := filepath.Join(t.TempDir(), "rpc.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return path
}

type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, path string) *rawConn {
	t.Helper()
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t, nc, bufio.NewReaderSize(nc, 1<<16)}
}

func (c *rawConn) send(line string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(line + "\n")); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawConn) recv() string {
	c.t.Helper()
	line, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

func TestServerLines(t *testing.T) {
	path := serve(t, &Server{})
	tests := []struct {
		name, send string
		want       string // the answer line; "" for none (checked with a ping after)
	}{
		{"call", `{"jsonrpc":"2.0","id":1,"method":"bind","params":{"interface":"web","port":443}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"interface":"web","port":443}}`},
		{"string id", `{"jsonrpc":"2.0","id":"a","method":"echo","params":{"x":[1,2]}}`,
			`{"jsonrpc":"2.0","id":"a","result":{"x":[1,2]}}`},
		{"notification", `{"jsonrpc":"2.0","method":"echo","params":{}}`, ""},
		{"parse error", `{"jsonrpc"`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: unexpected end of JSON input","data":{"problem":"unexpected end of JSON input"}}}`},
		{"unknown method", `{"jsonrpc":"2.0","id":2,"method":"nope"}`,
			`{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"method not found: \"nope\"","data":{"method":"nope"}}}`},
		{"wrong type", `{"jsonrpc":"2.0","id":3,"method":"bind","params":{"port":"80"}}`,
			`{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"invalid params: port: want an integer from 0 to 65535, got a string","data":{"param":"port","problem":"want an integer from 0 to 65535, got a string"}}}`},
		{"kind", `{"jsonrpc":"2.0","id":4,"method":"bind","params":{"interface":"missing"}}`,
			`{"jsonrpc":"2.0","id":4,"error":{"code":-32001,"message":"interface \"missing\": not found","data":{"kind":"not_found"}}}`},
		{"panic", `{"jsonrpc":"2.0","id":5,"method":"panic"}`,
			`{"jsonrpc":"2.0","id":5,"error":{"code":-32603,"message":"internal error: method \"panic\" panicked: boom","data":{"kind":"internal"}}}`},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"echo","params":{"a":1}},{"jsonrpc":"2.0","method":"echo"},{"jsonrpc":"2.0","id":2,"method":"nope"},7]`,
			`[{"jsonrpc":"2.0","id":1,"result":{"a":1}},{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"method not found: \"nope\"","data":{"method":"nope"}}},{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: a request is an object, not a number","data":{"problem":"a request is an object, not a number"}}}]`},
		{"batch of notifications", `[{"jsonrpc":"2.0","method":"echo"},{"jsonrpc":"2.0","method":"echo"}]`, ""},
		{"empty batch", `[]`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: empty batch: a batch holds 1 to 1000 requests","data":{"problem":"empty batch: a batch holds 1 to 1000 requests"}}}`},
	}
	c := dialRaw(t, path)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			c.send(tt.send)
			if tt.want == "" {
				c.send(`{"jsonrpc":"2.0","id":"ping","method":"echo"}`)
				tt.want = `{"jsonrpc":"2.0","id":"ping","result":null}`
			}
			if got := c.recv(); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestServerBatchOfMax(t *testing.T) {
	path := serve(t, &Server{})
	c := dialRaw(t, path)
	var b strings.Builder
	b.WriteByte('[')
	for i := range MaxBatch {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"jsonrpc":"2.0","id":` + itoa(i) + `,"method":"echo","params":{"i":` + itoa(i) + `}}`)
	}
	b.WriteByte(']')
	c.send(b.String())
	var resp []struct {
		ID     int
		Result struct{ I int }
	}
	if err := json.Unmarshal([]byte(c.recv()), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp) != MaxBatch {
		t.Fatalf("%d answers, want %d", len(resp), MaxBatch)
	}
	for i, r := range resp {
		if r.ID != i || r.Result.I != i {
			t.Fatalf("answer %d: %+v", i, r)
		}
	}
	c.send("[" + strings.Repeat(`{"jsonrpc":"2.0","method":"echo"},`, MaxBatch) + `{"jsonrpc":"2.0","method":"echo"}]`)
	if got := c.recv(); !strings.Contains(got, `"code":-32600`) || !strings.Contains(got, "the most is 1000") {
		t.Fatalf("a batch over the most: %s", got)
	}
}

func TestServerLineTooLong(t *testing.T) {
	path := serve(t, &Server{})
	c := dialRaw(t, path)
	long := `{"jsonrpc":"2.0","id":1,"method":"echo","params":{"x":"` + strings.Repeat("a", MaxLineBytes) + `"}}`
	go c.nc.Write([]byte(long + "\n")) // the server stops reading half-way
	want := `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: line longer than 1048576 bytes: send smaller requests or split the batch","data":{"problem":"line too long","limit":1048576}}}`
	if got := c.recv(); got != want {
		t.Fatalf("got %s", got)
	}
	if _, err := c.br.ReadString('\n'); err == nil {
		t.Fatal("the connection stayed open after a line too long")
	}
	// A line of exactly the limit goes through.
	c = dialRaw(t, path)
	head, tail := `{"jsonrpc":"2.0","id":1,"method":"echo","params":{"x":"`, `"}}`
	c.send(head + strings.Repeat("b", MaxLineBytes-len(head)-len(tail)-100) + tail)
	if got := c.recv(); !strings.HasPrefix(got, `{"jsonrpc":"2.0","id":1,"result":{"x":"bbb`) {
		t.Fatalf("a line under the limit: %.200s", got)
	}
}

func TestServerLimits(t *testing.T) {
	t.Run("connections", func(t *testing.T) {
		path := serve(t, &Server{MaxConns: 2})
		a, b := dialRaw(t, path), dialRaw(t, path)
		a.send(`{"jsonrpc":"2.0","id":1,"method":"echo"}`)
		b.send(`{"jsonrpc":"2.0","id":1,"method":"echo"}`)
		a.recv()
		b.recv()
		c := dialRaw(t, path)
		if got := c.recv(); !strings.Contains(got, `"code":-32006`) || !strings.Contains(got, "2 connections are open") {
			t.Fatalf("third connection: %s", got)
		}
		a.nc.Close()
		waitFor(t, func() bool {
			// Until the server has seen a go, d is refused: answered and closed, maybe
			// before its request is written.
			d := dialRaw(t, path)
			if _, err := d.nc.Write([]byte(`{"jsonrpc":"2.0","id":1,"method":"echo"}` + "\n")); err != nil {
				return false
			}
			got, err := d.br.ReadString('\n')
			return err == nil && strings.Contains(got, `"result"`)
		})
	})
	t.Run("idle", func(t *testing.T) {
		path := serve(t, &Server{IdleTimeout: 200 * time.Millisecond})
		c := dialRaw(t, path)
		start := time.Now()
		if _, err := c.br.ReadString('\n'); err == nil {
			t.Fatal("read an answer from a silent connection")
		}
		if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
			t.Fatalf("a silent connection closed after %v, want ~200ms", d)
		}
		// A call longer than the idle timeout keeps its connection.
		c = dialRaw(t, path)
		c.send(`{"jsonrpc":"2.0","id":1,"method":"sleep","params":{"ms":600}}`)
		if got := c.recv(); got != `{"jsonrpc":"2.0","id":1,"result":600}` {
			t.Fatalf("slow call: %s", got)
		}
	})
	t.Run("in flight and order", func(t *testing.T) {
		var running, most atomic.Int32
		s := &Server{MaxInFlight: 3}
		path := serveWrapped(t, s, func(inner Handler) Handler {
			return HandlerFunc(func(ctx context.Context, method string, params json.RawMessage) (any, error) {
				n := running.Add(1)
				defer running.Add(-1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				return inner.Call(ctx, method, params)
			})
		})
		c := dialRaw(t, path)
		go func() {
			for i := range 20 {
				c.nc.Write([]byte(`{"jsonrpc":"2.0","id":` + itoa(i) + `,"method":"sleep","params":{"ms":` + itoa(20-i) + "}}\n"))
			}
		}()
		for i := range 20 {
			if got, want := c.recv(), `{"jsonrpc":"2.0","id":`+itoa(i)+`,"result":`+itoa(20-i)+`}`; got != want {
				t.Fatalf("answer %d: %s, want %s", i, got, want)
			}
		}
		if m := most.Load(); m > 3 || m < 2 {
			t.Fatalf("%d calls ran at once, want at most 3 (and more than 1)", m)
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("timed out")
}

func TestClient(t *testing.T) {
	path := serve(t, &Server{})
	ctx := context.Background()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tests := []struct {
		name, method string
		params       any
		result       string
		is           error // the kind of the error, nil for success
		code         int
	}{
		{"ok", "bind", map[string]any{"interface": "web", "port": 8080}, `{"interface":"web","port":8080}`, nil, 0},
		{"no params", "echo", nil, `null`, nil, 0},
		{"not found", "bind", map[string]any{"interface": "missing"}, "", errkind.NotFound, CodeNotFound},
		{"invalid", "bind", map[string]any{"port": "x"}, "", errkind.InvalidArgument, CodeInvalidParams},
		{"no method", "nope", nil, "", errkind.Unimplemented, CodeMethodNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := c.CallRaw(ctx, tt.method, tt.params)
			if tt.is == nil {
				if err != nil || string(raw) != tt.result {
					t.Fatalf("%s, %v; want %s", raw, err, tt.result)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code || !errors.Is(err, tt.is) {
				t.Fatalf("error %v, want code %d and kind %v", err, tt.code, tt.is)
			}
		})
	}
	// A deadline ends the call and the connection.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := c.Call(short, "sleep", map[string]int{"ms": 2000}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call past its deadline: %v", err)
	}
	var n int
	if err := Call(ctx, path, "sleep", map[string]int{"ms": 1}, &n); err != nil || n != 1 {
		t.Fatalf("Call: %d, %v", n, err)
	}
}

func TestServerConcurrentClients(t *testing.T) {
	path := serve(t, &Server{})
	var wg sync.WaitGroup
	var bad atomic.Int32
	for w := range 8 {
		wg.Go(func() {
			c, err := Dial(context.Background(), path)
			if err != nil {
				bad.Add(1)
				return
			}
			defer c.Close()
			for i := range 500 {
				var r map[string]int
				if err := c.Call(context.Background(), "echo", map[string]int{"w": w, "i": i}, &r); err != nil || r["w"] != w || r["i"] != i {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d calls failed", bad.Load())
	}
}
