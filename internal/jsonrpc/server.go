package jsonrpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The defaults of Server's limits.
const (
	DefaultMaxConns       = 16
	DefaultMaxInFlight    = 8
	DefaultMaxQueuedBytes = 4 << 20
	DefaultIdleTimeout    = 30 * time.Second
	DefaultWriteTimeout   = 30 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("jsonrpc: server closed")

// Server serves a Handler on stream listeners (Unix sockets) as described in the
// package doc. Set its fields before the first Serve; zero limits take the defaults.
type Server struct {
	Handler Handler
	Logger  *slog.Logger // nil: slog.Default()

	// MaxConns is how many connections are served at once; the next ones are answered
	// with one CodeResourceExhausted error and closed.
	MaxConns int
	// MaxInFlight is how many calls of one connection run at once, and how many lines
	// of one connection may wait to be answered; the server reads no more of that
	// connection until one is answered.
	MaxInFlight int
	// MaxQueuedBytes bounds the bytes of the lines read but not yet answered, all
	// connections together (a line longer than it is let through alone).
	MaxQueuedBytes int
	// IdleTimeout closes a connection that has had no call in flight and has not sent a
	// whole line for that long (a client that connects and sends nothing, or half a
	// line).
	IdleTimeout time.Duration
	// WriteTimeout closes a connection whose client does not read an answer for that
	// long.
	WriteTimeout time.Duration

	initOnce sync.Once
	budget   *budget
	mu       sync.Mutex
	closed   bool
	lns      map[net.Listener]struct{}
	conns    map[*conn]struct{}
	serving  sync.WaitGroup // connections and Serve loops
	stopping atomic.Bool    // no more lines are read

	work chan func()   // idle workers wait here for a call to run
	quit chan struct{} // closed by Shutdown: idle workers end

	testHookBusyIdle func() // called when the idle timer fires with calls in flight
}

// workerIdle is how long a worker waits for another call before it ends. Calls run on
// workers kept between calls and connections: a call through gRPC grows a goroutine's
// stack to several KiB, which a new goroutine would grow again, copying it, for every
// call.
const workerIdle = 10 * time.Second

// spawn runs f on an idle worker, or on a new one.
func (s *Server) spawn(f func()) {
	select {
	case s.work <- f:
	default:
		go s.worker(f)
	}
}

func (s *Server) worker(f func()) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		f()
		t.Reset(workerIdle)
		select {
		case f = <-s.work:
		case <-t.C:
			return
		case <-s.quit:
			return
		}
	}
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.Logger == nil {
			s.Logger = slog.Default()
		}
		if s.MaxConns <= 0 {
			s.MaxConns = DefaultMaxConns
		}
		if s.MaxInFlight <= 0 {
			s.MaxInFlight = DefaultMaxInFlight
		}
		if s.MaxQueuedBytes <= 0 {
			s.MaxQueuedBytes = DefaultMaxQueuedBytes
		}
		if s.IdleTimeout <= 0 {
			s.IdleTimeout = DefaultIdleTimeout
		}
		if s.WriteTimeout <= 0 {
			s.WriteTimeout = DefaultWriteTimeout
		}
		s.budget = newBudget(int64(s.MaxQueuedBytes))
		s.lns = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.work = make(chan func())
		s.quit = make(chan struct{})
	})
}

// Serve accepts connections on l and serves them until Shutdown or Close, then returns
// ErrServerClosed, or until ctx ends: then l is closed, the connections accepted on it are
// closed without waiting for their calls (whose contexts, derived from ctx, end too), and
// Serve returns ctx's error. Serve closes l. It returns once every connection it accepted
// is closed.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.init()
	if s.Handler == nil {
		l.Close()
		return errors.New("jsonrpc: Server.Handler is nil")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.lns[l] = struct{}{}
	s.serving.Add(1)
	s.mu.Unlock()
	defer s.serving.Done()

	var mine sync.WaitGroup // this listener's connections
	defer mine.Wait()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer func() {
		s.mu.Lock()
		delete(s.lns, l)
		s.mu.Unlock()
		l.Close()
	}()

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if s.stopping.Load() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors and the like: wait a little, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.Logger.Warn("jsonrpc: accept failed; retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		backoff = 0
		c, refusal := s.newConn(ctx, nc)
		if refusal != nil {
			mine.Add(1)
			go func() {
				defer mine.Done()
				s.refuse(nc, refusal)
			}()
			continue
		}
		mine.Add(1)
		go func() {
			defer mine.Done()
			c.serve()
		}()
	}
}

// newConn registers a connection, or says why it is refused.
func (s *Server) newConn(ctx context.Context, nc net.Conn) (*conn, *Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, &Error{Code: CodeUnavailable, Message: "the server is shutting down", Data: mustJSON(kindData{"unavailable"})}
	}
	if len(s.conns) >= s.MaxConns {
		return nil, &Error{
			Code:    CodeResourceExhausted,
			Message: fmt.Sprintf("%d connections are open, the most this server allows: close idle ones, or retry", s.MaxConns),
			Data:    mustJSON(kindData{"resource_exhausted"}),
		}
	}
	c := &conn{
		s:     s,
		nc:    nc,
		br:    bufio.NewReaderSize(nc, 4096),
		queue: make(chan *line, s.MaxInFlight),
		sem:   make(chan struct{}, s.MaxInFlight),
		dead:  make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	s.conns[c] = struct{}{}
	s.serving.Add(1)
	return c, nil
}

// refuse answers a connection the server will not serve with e, and closes it.
func (s *Server) refuse(nc net.Conn, e *Error) {
	defer nc.Close()
	s.Logger.Warn("jsonrpc: connection refused", "err", e.Message)
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write(append(appendError(nil, nil, e), '\n'))
}

// Shutdown stops the server gracefully: it closes the listeners, reads no more lines,
// lets the calls in flight finish and their answers be written, and closes each
// connection once it is answered. If ctx ends first, the remaining connections are
// closed without their answers and their calls' contexts end; Shutdown then returns ctx's
// error. Serve returns ErrServerClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	if !s.closed {
		close(s.quit)
	}
	s.closed = true
	s.stopping.Store(true)
	for l := range s.lns {
		l.Close()
	}
	for c := range s.conns {
		c.nc.SetReadDeadline(past)
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.serving.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.die()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// Close is Shutdown without a deadline.
func (s *Server) Close() error {
	return s.Shutdown(context.Background())
}

var past = time.Unix(1, 0)

// conn is one served connection. Its reader (serve) reads lines, starts their calls and
// queues them in order; its writer writes each line's answer once it is ready.
type conn struct {
	s      *Server
	nc     net.Conn
	br     *bufio.Reader
	buf    []byte
	ctx    context.Context // the calls' context
	cancel context.CancelFunc

	queue    chan *line    // lines read, in order, waiting for their answers
	sem      chan struct{} // calls running
	pending  atomic.Int64  // lines read and not yet answered
	last     atomic.Int64  // when a line was last read or answered (UnixNano)
	dead     chan struct{} // closed by die
	dieOnce  sync.Once
	answered chan struct{} // closed when the writer is done
}

// A line is the answer to one line read: nil out for none (notifications).
type line struct {
	done  chan struct{} // closed once out is set
	out   []byte
	bytes int64 // its share of the server's budget
	parts [][]byte
	left  atomic.Int32 // calls of a batch still running
}

var errTooLong = errors.New("line too long")

func (c *conn) serve() {
	s := c.s
	defer func() {
		c.nc.Close()
		c.cancel()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.serving.Done()
	}()
	c.answered = make(chan struct{})
	go c.write()
	defer func() {
		close(c.queue)
		<-c.answered
	}()

	c.touch()
	c.setReadDeadline(time.Now().Add(s.IdleTimeout))
	for {
		data, err := c.readLine()
		if errors.Is(err, errTooLong) {
			e := invalidRequest(fmt.Sprintf("line longer than %d bytes: send smaller requests or split the batch", MaxLineBytes))
			e.Data = mustJSON(struct {
				Problem string `json:"problem"`
				Limit   int    `json:"limit"`
			}{"line too long", MaxLineBytes})
			l := &line{done: make(chan struct{}), out: append(appendError(nil, nil, e), '\n')}
			close(l.done)
			c.enqueue(l)
			return // the rest of the line cannot be told from the next request
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, net.ErrClosed) {
				s.Logger.Debug("jsonrpc: read", "err", err)
			}
			return
		}
		c.touch()
		if len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		n := int64(len(data))
		if !s.budget.acquire(n, c.dead) {
			return
		}
		l := c.start(data, n)
		if !c.enqueue(l) {
			return
		}
		c.setReadDeadline(time.Now().Add(s.IdleTimeout))
	}
}

func (c *conn) enqueue(l *line) bool {
	c.pending.Add(1)
	select {
	case c.queue <- l:
		return true
	case <-c.dead:
		c.pending.Add(-1)
		c.s.budget.release(l.bytes)
		return false
	}
}

// readLine returns the next line, without its newline, in c.buf. It waits while calls
// are in flight and ends with os.ErrDeadlineExceeded once the connection is idle.
func (c *conn) readLine() ([]byte, error) {
	if cap(c.buf) > 64<<10 {
		c.buf = nil // a long line's buffer is not kept
	}
	c.buf = c.buf[:0]
	for {
		frag, err := c.br.ReadSlice('\n')
		if len(c.buf)+len(frag) > MaxLineBytes+1 || (err != nil && len(c.buf)+len(frag) > MaxLineBytes) {
			return nil, errTooLong
		}
		c.buf = append(c.buf, frag...)
		switch {
		case err == nil:
			return c.buf[:len(c.buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, os.ErrDeadlineExceeded) && c.keepWaiting():
			continue
		case errors.Is(err, io.EOF) && len(c.buf) > 0:
			return c.buf, nil // the last line may go without its newline
		default:
			return nil, err
		}
	}
}

// keepWaiting decides, when the read deadline passes, whether the connection stays
// open: while calls are in flight, or answers were written less than IdleTimeout ago.
func (c *conn) keepWaiting() bool {
	if c.s.stopping.Load() {
		return false
	}
	idle := c.s.IdleTimeout
	if c.pending.Load() > 0 {
		if h := c.s.testHookBusyIdle; h != nil {
			h()
		}
		c.setReadDeadline(time.Now().Add(idle))
		return true
	}
	if until := time.Unix(0, c.last.Load()).Add(idle); time.Now().Before(until) {
		c.setReadDeadline(until)
		return true
	}
	return false
}

// setReadDeadline sets the read deadline unless the server is stopping: Shutdown sets
// the flag before it moves every deadline to the past, so one of the two sees the other.
func (c *conn) setReadDeadline(t time.Time) {
	c.nc.SetReadDeadline(t)
	if c.s.stopping.Load() {
		c.nc.SetReadDeadline(past)
	}
}

func (c *conn) touch() { c.last.Store(time.Now().UnixNano()) }

// die closes the connection now: the writer stops, the calls' context ends.
func (c *conn) die() {
	c.dieOnce.Do(func() {
		close(c.dead)
		c.cancel()
		c.nc.Close()
	})
}

// write writes the answers in the order of the lines, until the reader closes the queue.
func (c *conn) write() {
	defer close(c.answered)
	for l := range c.queue {
		select {
		case <-l.done:
		case <-c.dead:
		case <-c.ctx.Done():
			c.die()
		}
		if l.out != nil && !c.isDead() {
			c.nc.SetWriteDeadline(time.Now().Add(c.s.WriteTimeout))
			if _, err := c.nc.Write(l.out); err != nil {
				c.s.Logger.Debug("jsonrpc: write", "err", err)
				c.die()
			}
		}
		c.s.budget.release(l.bytes)
		c.touch()
		c.pending.Add(-1)
	}
}

func (c *conn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// start parses a line and starts its calls; the line's done is closed when they end.
func (c *conn) start(data []byte, n int64) *line {
	l := &line{done: make(chan struct{}), bytes: n}
	reqs, batch, fail := parse(data)
	if fail != nil {
		l.out = append(appendError(nil, nil, fail), '\n')
		close(l.done)
		return l
	}
	if !batch {
		if !c.acquire() {
			close(l.done)
			return l
		}
		c.s.spawn(func() {
			defer c.release()
			if out := c.call(reqs[0]); out != nil {
				l.out = append(out, '\n')
			}
			close(l.done)
		})
		return l
	}
	l.parts = make([][]byte, len(reqs))
	l.left.Store(int32(len(reqs)) + 1) // + 1 until every call is started
	for i, r := range reqs {
		if r.err != nil {
			l.parts[i] = appendError(nil, r.id, r.err)
			l.partDone()
			continue
		}
		if !c.acquire() {
			break // the connection is closing: nobody waits for this line
		}
		c.s.spawn(func() {
			defer c.release()
			l.parts[i] = c.call(r)
			l.partDone()
		})
	}
	l.partDone()
	return l
}

func (c *conn) acquire() bool {
	select {
	case c.sem <- struct{}{}:
		return true
	case <-c.dead:
		return false
	}
}

func (c *conn) release() { <-c.sem }

// partDone counts a batch call done; the last joins the answers.
func (l *line) partDone() {
	if l.left.Add(-1) != 0 {
		return
	}
	size := 2
	for _, p := range l.parts {
		size += len(p) + 1
	}
	out := make([]byte, 0, size)
	for _, p := range l.parts {
		if p == nil {
			continue
		}
		if len(out) == 0 {
			out = append(out, '[')
		} else {
			out = append(out, ',')
		}
		out = append(out, p...)
	}
	if len(out) > 0 {
		l.out = append(out, ']', '\n')
	}
	l.parts = nil
	close(l.done)
}

// call runs one request and returns its answer, or nil for a notification.
func (c *conn) call(r request) (out []byte) {
	if r.err != nil {
		return appendError(nil, r.id, r.err)
	}
	defer func() {
		if v := recover(); v != nil {
			c.s.Logger.Error("jsonrpc: handler panicked", "method", r.method, "panic", v, "stack", string(debug.Stack()))
			out = nil
			if r.id != nil {
				out = appendError(nil, r.id, &Error{
					Code:    CodeInternalError,
					Message: fmt.Sprintf("internal error: method %q panicked: %v", r.method, v),
					Data:    mustJSON(kindData{"internal"}),
				})
			}
		}
	}()
	res, err := c.s.Handler.Call(c.ctx, r.method, r.params)
	if r.id == nil {
		if err != nil {
			c.s.Logger.Info("jsonrpc: notification failed", "method", r.method, "err", err)
		}
		return nil
	}
	if err != nil {
		return appendError(nil, r.id, toError(err))
	}
	enc, err := json.Marshal(res)
	if err != nil {
		return appendError(nil, r.id, &Error{
			Code:    CodeInternalError,
			Message: fmt.Sprintf("internal error: the result of %q cannot be encoded: %v", r.method, err),
			Data:    mustJSON(kindData{"internal"}),
		})
	}
	if len(enc) > MaxLineBytes-64 {
		return appendError(nil, r.id, &Error{
			Code:    CodeResourceExhausted,
			Message: "the result of " + strconv.Quote(r.method) + " is " + strconv.Itoa(len(enc)) + " bytes, more than a line holds (" + strconv.Itoa(MaxLineBytes) + ")",
			Data:    mustJSON(kindData{"resource_exhausted"}),
		})
	}
	return appendResult(make([]byte, 0, len(enc)+len(r.id)+32), r.id, enc)
}

// budget bounds a quantity shared by all connections: the bytes of lines read and not
// yet answered. One acquire larger than the whole budget goes through when nothing else
// holds any, so that no line waits forever.
type budget struct {
	mu      sync.Mutex
	used    int64
	max     int64
	waiters int
	wake    chan struct{} // closed and replaced by release when someone waits
}

func newBudget(max int64) *budget { return &budget{max: max, wake: make(chan struct{})} }

// acquire takes n, waiting for releases; it gives up, returning false, when cancel closes.
func (b *budget) acquire(n int64, cancel <-chan struct{}) bool {
	b.mu.Lock()
	for b.used > 0 && b.used+n > b.max {
		b.waiters++
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-cancel:
			b.mu.Lock()
			b.waiters--
			b.mu.Unlock()
			return false
		}
		b.mu.Lock()
		b.waiters--
	}
	b.used += n
	b.mu.Unlock()
	return true
}

func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if b.waiters > 0 {
		close(b.wake)
		b.wake = make(chan struct{})
	}
	b.mu.Unlock()
}
