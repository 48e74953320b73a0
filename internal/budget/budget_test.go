package budget

import (
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"hearth.dev/internal/errdefs"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tests := []struct {
		name  string
		rate  float64
		burst int
		takes []int // times of the takes, in ms
		want  int   // takes that succeed
	}{
		{"burst at once", 10, 5, []int{0, 0, 0, 0, 0, 0, 0}, 5},
		{"refills at the rate", 10, 1, []int{0, 50, 100, 150, 200}, 3},
		{"never above the burst", 100, 2, []int{0, 10000, 10000, 10000}, 3},
		{"steady at the rate", 50, 1, func() []int {
			var ts []int
			for ms := 0; ms < 1000; ms++ {
				ts = append(ts, ms)
			}
			return ts
		}(), 50},
		{"clock going back gives nothing", 10, 1, []int{1000, 0, 100, 1050}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := bucket{rate: tt.rate, burst: float64(tt.burst), tokens: float64(tt.burst)}
			got := 0
			for _, ms := range tt.takes {
				wait := k.take(at(ms))
				if wait == 0 {
					got++
				} else if wait < 0 || wait > time.Duration(float64(time.Second)/tt.rate)+time.Millisecond {
					t.Errorf("take at %dms: wait %s, want (0, 1/rate]", ms, wait)
				}
			}
			if got != tt.want {
				t.Errorf("%d takes succeeded, want %d", got, tt.want)
			}
		})
	}
}

func TestGuard(t *testing.T) {
	l := DefaultLimits()
	data := func(id uint32, n int, flags byte) []byte { return frameBytes(frameData, flags, id, make([]byte, n)) }
	repeat := func(n int, f []byte) []byte {
		var b []byte
		for range n {
			b = append(b, f...)
		}
		return b
	}
	cat := func(parts ...[]byte) []byte {
		b := []byte(clientPreface)
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	headers := frameBytes(frameHeaders, flagEndHeaders, 1, requestHeaders("/a/b"))
	tests := []struct {
		name    string
		in      []byte
		wantErr bool
	}{
		{"unary request in one frame", cat(headers, data(1, 100, flagEndStream)), false},
		{"largest request", cat(headers, data(1, l.MaxRecvMsgSize+5, flagEndStream)), false},
		{"request split in full frames", cat(headers, data(1, 4096, 0), data(1, 4096, 0), data(1, 5, flagEndStream)), false},
		{"request over the size", cat(headers, data(1, 4096, 0), data(1, 4096, 0), data(1, 6, flagEndStream)), true},
		{"one stream sending on after its request", cat(headers, data(1, 4096, 0), data(1, 4096, 0), data(1, 4096, 0)), true},
		{"small frames up to the limit", cat(headers, repeat(l.MaxSmallFrames, data(1, 1, 0)), data(1, 1, flagEndStream)), false},
		{"small frames over the limit", cat(headers, repeat(l.MaxSmallFrames+1, data(1, 1, 0))), true},
		{"padded frames count as small", cat(headers, repeat(l.MaxSmallFrames+1, data(1, 2000, flagPadded))), true},
		{"empty frames cost nothing", cat(headers, repeat(1000, data(1, 0, 0)), data(1, 10, flagEndStream)), false},
		{"small frames on many streams, each ended", cat(func() []byte {
			var b []byte
			for id := uint32(1); id < 400; id += 2 {
				b = append(b, data(id, 1, 0)...)
				b = append(b, data(id, 1, flagEndStream)...)
			}
			return b
		}()), false},
		{"a stream ended by reset is forgotten", cat(repeat(l.MaxSmallFrames, data(1, 1, 0)), frameBytes(frameRSTStream, 0, 1, make([]byte, 4)), repeat(l.MaxSmallFrames, data(1, 1, 0))), false},
		{"too many streams left open", func() []byte {
			b := cat()
			for id := uint32(1); id < 2*uint32(4*l.StreamsPerConn+17); id += 2 {
				b = append(b, data(id, 10, 0)...)
			}
			return b
		}(), true},
		{"other frames pass", cat(frameBytes(0x6, 0, 0, make([]byte, 8)), frameBytes(0x8, 0, 0, make([]byte, 4)), frameBytes(0x4, 0, 0, make([]byte, 6))), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Whole, then in every split a reader could see.
			for _, step := range []int{len(tt.in), 1, 7, 9, 1000} {
				var g guard
				g.init(l)
				var err error
				for p := tt.in; len(p) > 0 && err == nil; {
					n := min(step, len(p))
					err = g.scan(p[:n])
					p = p[n:]
				}
				if (err != nil) != tt.wantErr {
					t.Fatalf("reads of %d bytes: err = %v, want error %v", step, err, tt.wantErr)
				}
				if err != nil && !errors.Is(err, errdefs.ErrResourceExhausted) {
					t.Errorf("err = %v, want ResourceExhausted", err)
				}
			}
		})
	}
}

func TestMaxBytes(t *testing.T) {
	def := New("host.sock", Limits{}, quiet).MaxBytes()
	t.Logf("MaxBytes with the default limits: %.2f MiB", float64(def)/mib)
	if def > 6*mib {
		t.Errorf("default budget %d bytes, want a few MiB", def)
	}
	tests := []struct {
		name string
		l    Limits
	}{
		{"more connections", Limits{MaxConns: 16}},
		{"more streams a connection", Limits{StreamsPerConn: 8}},
		{"larger requests", Limits{MaxRecvMsgSize: 64 << 10}},
		{"larger answers", Limits{MaxSendMsgSize: 1 << 20}},
		{"more small frames", Limits{MaxSmallFrames: 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New("host.sock", tt.l, quiet).MaxBytes(); got <= def {
				t.Errorf("MaxBytes = %d, want more than the default %d", got, def)
			}
		})
	}
}

func TestListenerSlots(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b := New("s.sock", Limits{MaxConns: 2, ExcessConns: 1, ExcessLinger: time.Hour}, quiet)
	l := b.Listener(ln)

	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	dialN := func(n int) {
		for range n {
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
		}
	}
	// Four clients: two served, one excess, one closed at accept. Accept returns three and
	// would block on the fourth call: the dropped one never comes out.
	dialN(4)
	var served []net.Conn
	for range 3 {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		served = append(served, c)
	}
	if got, want := b.Stats(), (Stats{Conns: 2, ExcessConns: 1}); got.Conns != want.Conns || got.ExcessConns != want.ExcessConns {
		t.Fatalf("stats %+v, want %d served and %d excess", got, want.Conns, want.ExcessConns)
	}
	if !served[2].(*conn).excess || served[0].(*conn).excess {
		t.Error("the third connection should be the excess one, and only it")
	}
	// The fourth is dropped when the next Accept runs; its client sees the close.
	next := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			next <- c
		}
	}()
	if _, closed := drainUntilClosed(clients[3], 2*time.Second); !closed {
		t.Error("the connection beyond the excess was not closed at accept")
	}

	// Closing twice gives one slot back, and the next client is served.
	served[0].Close()
	served[0].Close()
	dialN(1)
	var c net.Conn
	select {
	case c = <-next:
	case <-time.After(2 * time.Second):
		t.Fatal("a freed slot was not given to the next client")
	}
	if c.(*conn).excess {
		t.Error("the freed slot was a served one; the new connection was marked excess")
	}
	if s := b.Stats(); s.Conns != 2 || s.ExcessConns != 1 || s.DroppedConns != 1 {
		t.Errorf("stats %+v, want 2 served, 1 excess, 1 dropped", s)
	}
	for _, s := range append(served[1:], c) {
		s.Close()
	}
	if s := b.Stats(); s.Conns != 0 || s.ExcessConns != 0 {
		t.Errorf("after closing everything, stats %+v", s)
	}
}
