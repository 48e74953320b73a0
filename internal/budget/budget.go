// Package budget bounds what one client of a gRPC socket can make the server hold: live
// connections, calls in flight, calls a second, and the memory each connection and call
// may pin. containerd-lite gives each container's host.sock its own Budget, so a container
// that floods its socket gets ResourceExhausted while every other container is served.
//
// A Budget works in three places, all wired by the caller:
//
//   - Listener wraps the socket's listener. The first MaxConns connections are served;
//     the next ExcessConns are accepted but every call on them fails with ResourceExhausted
//     naming the limit, and they are closed after ExcessLinger; any more are closed as soon
//     as they are accepted. Accept never waits on a client.
//   - ServerOptions gives the server interceptors that admit calls (MaxCalls at once,
//     CallsPerSecond), small buffers and fixed windows, message size limits, keepalive
//     enforcement and idle and handshake timeouts.
//   - Each connection follows the HTTP/2 frame headers its client sends (see guard) and
//     is closed when a stream carries more than one request's bytes or many tiny frames.
//     It stops reading while its writes are blocked, so a client that never reads cannot
//     make the server queue answers without end, and a write blocked for WriteTimeout
//     closes it.
//
// MaxBytes computes from the limits the most memory a Budget's client can make the
// server hold.
//
// A budgeted socket suits APIs whose calls send one request message (unary and
// server-streaming): a client stream would exceed the per-stream bytes.
package budget

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"hearth.dev/internal/peercred"
)

// Limits are what one client (one container) may use. Zero fields take the defaults of
// DefaultLimits.
type Limits struct {
	// MaxConns is how many connections are served at once (default 8: a guest needs one
	// or two).
	MaxConns int
	// ExcessConns is how many connections past MaxConns are accepted only to tell their
	// client why its calls fail (default 4; negative for none); any more are closed at
	// once.
	ExcessConns int
	// ExcessLinger is how long an excess connection lives (default 1s).
	ExcessLinger time.Duration

	// CallsPerSecond and CallBurst size the token bucket every call and stream draws one
	// token from (default 50 a second, bursts of 100).
	CallsPerSecond float64
	CallBurst      int
	// MaxCalls bounds the calls and streams running at once, on all connections together
	// (default 8).
	MaxCalls int
	// StreamsPerConn is the HTTP/2 stream limit of each connection (default 4): a
	// client queues its calls beyond it. Every open stream may hold a request, so this,
	// more than MaxCalls, sets the memory bound.
	StreamsPerConn uint32

	// MaxRecvMsgSize and MaxSendMsgSize bound one message (default 8 KiB received:
	// host effects carry names and paths up to PATH_MAX; 64 KiB sent).
	MaxRecvMsgSize int
	MaxSendMsgSize int
	// MaxHeaderListSize bounds the metadata of one call (default 8 KiB).
	MaxHeaderListSize uint32
	// MaxSmallFrames is how many DATA frames of at most SmallFrameSize bytes (or padded),
	// not ending their stream, one stream may carry before its connection is closed
	// (default 8). A client sends a unary or server-streaming request in one frame.
	MaxSmallFrames int

	// HandshakeTimeout bounds the time from accept to a working HTTP/2 connection
	// (default 5s). IdleTimeout closes a connection without calls for that long
	// (default 1m). WriteTimeout closes a connection whose client stops reading for
	// that long (default 10s).
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration
	WriteTimeout     time.Duration
}

// SmallFrameSize is the size up to which gRPC copies a received DATA frame into a buffer
// of its own instead of a pooled one; frames this small are counted by MaxSmallFrames.
const SmallFrameSize = 1024

// DefaultLimits are the limits of a container's host.sock.
func DefaultLimits() Limits {
	return Limits{
		MaxConns:          8,
		ExcessConns:       4,
		ExcessLinger:      time.Second,
		CallsPerSecond:    50,
		CallBurst:         100,
		MaxCalls:          8,
		StreamsPerConn:    4,
		MaxRecvMsgSize:    8 << 10,
		MaxSendMsgSize:    64 << 10,
		MaxHeaderListSize: 8 << 10,
		MaxSmallFrames:    8,
		HandshakeTimeout:  5 * time.Second,
		IdleTimeout:       time.Minute,
		WriteTimeout:      10 * time.Second,
	}
}

// withDefaults fills the zero fields.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&l.MaxConns, d.MaxConns)
	set(&l.ExcessConns, d.ExcessConns)
	l.ExcessConns = max(l.ExcessConns, 0)
	setDur(&l.ExcessLinger, d.ExcessLinger)
	if l.CallsPerSecond == 0 {
		l.CallsPerSecond = d.CallsPerSecond
	}
	set(&l.CallBurst, d.CallBurst)
	set(&l.MaxCalls, d.MaxCalls)
	if l.StreamsPerConn == 0 {
		l.StreamsPerConn = d.StreamsPerConn
	}
	set(&l.MaxRecvMsgSize, d.MaxRecvMsgSize)
	set(&l.MaxSendMsgSize, d.MaxSendMsgSize)
	if l.MaxHeaderListSize == 0 {
		l.MaxHeaderListSize = d.MaxHeaderListSize
	}
	set(&l.MaxSmallFrames, d.MaxSmallFrames)
	setDur(&l.HandshakeTimeout, d.HandshakeTimeout)
	setDur(&l.IdleTimeout, d.IdleTimeout)
	setDur(&l.WriteTimeout, d.WriteTimeout)
	return l
}

// Budget is one client's share of a socket. Give each container its own.
type Budget struct {
	socket string
	limits Limits
	log    *slog.Logger

	mu     sync.Mutex
	conns  int // served connections open
	excess int // excess connections open

	calls  atomic.Int64 // calls and streams open
	bucket bucket

	counts counters
	warn   throttle
}

// New returns the budget of one client of socket (a name for messages, "host.sock").
// Zero fields of l take their defaults; log may be nil.
func New(socket string, l Limits, log *slog.Logger) *Budget {
	if log == nil {
		log = slog.Default()
	}
	l = l.withDefaults()
	b := &Budget{socket: socket, limits: l, log: log}
	b.bucket = bucket{rate: l.CallsPerSecond, burst: float64(l.CallBurst), tokens: float64(l.CallBurst)}
	b.warn.every = 10 * time.Second
	return b
}

// Limits returns the budget's limits, defaults filled in.
func (b *Budget) Limits() Limits { return b.limits }

// ServerOptions returns the options that bound a server's memory per connection and per
// call and admit calls within the budget. Append them to the server's own
// (grpcserver.Config.Options).
//
// They include the server's transport credentials: peercred's, wrapped so that the
// handshake reads the peer's credentials from the socket under the budget's connection.
// They replace any credentials set before them (grpc keeps the last).
func (b *Budget) ServerOptions() []grpc.ServerOption {
	l := b.limits
	return []grpc.ServerOption{
		grpc.Creds(Credentials(peercred.NewServer())),
		grpc.ChainUnaryInterceptor(b.unary),
		grpc.ChainStreamInterceptor(b.stream),
		grpc.MaxRecvMsgSize(l.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(l.MaxSendMsgSize),
		grpc.MaxHeaderListSize(l.MaxHeaderListSize),
		grpc.MaxConcurrentStreams(l.StreamsPerConn),
		// No read buffer: each read goes through the connection, which stops reading
		// while a write is blocked (see conn.Read).
		grpc.ReadBufferSize(0),
		grpc.WriteBufferSize(writeBuffer),
		grpc.SharedWriteBuffer(true),
		// Fixed windows: without them gRPC grows a connection's window up to 16 MiB.
		grpc.InitialWindowSize(window),
		grpc.InitialConnWindowSize(window),
		grpc.ConnectionTimeout(l.HandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: l.IdleTimeout,
			// A peer silent for Time is pinged, and closed unless it answers within
			// Timeout.
			Time:    l.IdleTimeout,
			Timeout: l.WriteTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 30 * time.Second}),
	}
}

// Sizes fixed by the options above and by gRPC itself, used by MaxBytes.
const (
	window      = 64 << 10 // the smallest window gRPC accepts
	writeBuffer = 4 << 10
	maxFrame    = 16 << 10 // the largest frame gRPC reads
	hpackTable  = 4 << 10
	stack       = 8 << 10  // a goroutine's stack
	connState   = 16 << 10 // transport, framer, control buffer, flow control
	streamState = 4 << 10  // stream, context, metadata maps
	// poolWaste is how much larger than its payload the buffer holding an unpadded DATA
	// frame over SmallFrameSize can be: gRPC's pool rounds 1025 bytes up to 4 KiB and
	// 4097 up to 16 KiB. Smaller and padded frames are counted by the guard.
	poolWaste = 4
)

// MaxBytes is the most memory the budget's client can make the server hold at once:
//
//	conns × (write buffer + frame buffer + HPACK table + header list + 3 goroutines + state
//	         + StreamsPerConn × stream)
//	stream = poolWaste × request + 2 × request + header list
//	         + MaxSmallFrames × (SmallFrameSize + 128) + goroutine + state
//	+ MaxCalls × MaxSendMsgSize
//
// where conns is MaxConns+ExcessConns and request is MaxRecvMsgSize plus its prefix: the
// frames holding it as it arrives, its contiguous copy and the decoded message. Every
// open stream gets a goroutine and may hold a request, admitted or not; only admitted
// calls answer with more than a status. The figure leans on how gRPC buffers; the tests
// measure the server under attack against it.
func (b *Budget) MaxBytes() int64 {
	l := b.limits
	request := l.MaxRecvMsgSize + 5
	stream := poolWaste*request + 2*request + int(l.MaxHeaderListSize) +
		l.MaxSmallFrames*(SmallFrameSize+128) + stack + streamState
	conn := writeBuffer + maxFrame + hpackTable + int(l.MaxHeaderListSize) + 3*stack + connState +
		int(l.StreamsPerConn)*stream
	return int64(l.MaxConns+l.ExcessConns)*int64(conn) + int64(l.MaxCalls)*int64(l.MaxSendMsgSize)
}

// Stats counts what the budget admitted and refused.
type Stats struct {
	Conns, ExcessConns int   // open now
	Calls              int64 // calls and streams open now
	DroppedConns       int64 // closed at accept: beyond ExcessConns
	RefusedExcess      int64 // calls on excess connections
	RefusedRate        int64 // calls over CallsPerSecond
	RefusedCalls       int64 // calls over MaxCalls
	ClosedFrames       int64 // connections closed for small frames
	ClosedWrites       int64 // connections closed for not reading their answers
}

type counters struct {
	dropped, excess, rate, calls, frames, writes atomic.Int64
}

// Stats returns the budget's counts.
func (b *Budget) Stats() Stats {
	b.mu.Lock()
	s := Stats{Conns: b.conns, ExcessConns: b.excess}
	b.mu.Unlock()
	s.Calls = b.calls.Load()
	s.DroppedConns = b.counts.dropped.Load()
	s.RefusedExcess = b.counts.excess.Load()
	s.RefusedRate = b.counts.rate.Load()
	s.RefusedCalls = b.counts.calls.Load()
	s.ClosedFrames = b.counts.frames.Load()
	s.ClosedWrites = b.counts.writes.Load()
	return s
}

// throttle logs one line per kind and period, counting the lines it held back, so a
// flood does not become a flood of log lines.
type throttle struct {
	every time.Duration
	mu    sync.Mutex
	kinds map[string]*throttled
}

type throttled struct {
	last    time.Time
	skipped int
}

func (b *Budget) warnf(kind, format string, args ...any) {
	t := &b.warn
	now := time.Now()
	t.mu.Lock()
	if t.kinds == nil {
		t.kinds = map[string]*throttled{}
	}
	k := t.kinds[kind]
	if k == nil {
		k = &throttled{}
		t.kinds[kind] = k
	}
	if !k.last.IsZero() && now.Sub(k.last) < t.every {
		k.skipped++
		t.mu.Unlock()
		return
	}
	skipped := k.skipped
	k.last, k.skipped = now, 0
	t.mu.Unlock()
	b.log.LogAttrs(context.Background(), slog.LevelWarn, fmt.Sprintf(format, args...),
		slog.String("socket", b.socket), slog.String("limit", kind), slog.Int("held_back", skipped))
}
