// Package proxy is netd's edge: the TLS and HTTP reverse proxy on the host's HTTPS and
// HTTP addresses (:443 and :80).
//
// On the HTTPS address each connection's ClientHello is read first. A handshake that
// offers acme-tls/1 for a name with a pending TLS-ALPN-01 challenge gets the challenge
// certificate and nothing else. A server name routed as passthrough has its raw TCP
// stream spliced to the backend, which terminates TLS itself. Every other connection is
// terminated here, with the name's certificate, and speaks HTTP/1.1 or HTTP/2 (ALPN h2);
// each request goes to the backend routed for its Host over pooled HTTP/1.1 keep-alive
// connections, with X-Forwarded-For, -Host and -Proto set by the proxy (the client's are
// dropped), bodies streamed both ways and WebSocket upgrades passed through.
//
// On the HTTP address, HTTP-01 challenges are answered for any host and every other
// request is redirected (308) to https with the same host, path and query.
//
// How it goes fast (bench/proxy.sh compares it with nginx): terminated HTTP/1.1
// connections are served by a loop of the package's own (h1conn.go), one goroutine per
// connection, heads parsed in place, a response's head and small body written in one
// TLS record and one system call; HTTP/2 ones by net/http's server, whose frame
// flushes are gathered into fewer writes (batchwrite.go). Both forward through the same
// exchange (exchange.go), which parses backend responses in place too. Sockets are
// read and written with raw system calls through the runtime's poller (sockio.go): a
// loopback write is long enough that, as an ordinary system call, the runtime would
// hand the processor to another thread for most of them.
//
// The routing table, the certificates and the challenges can change at any time, while
// connections are open: a change applies to the connections (routes: the requests) that
// start after it.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config tunes a Proxy. Zero fields take the defaults named beside them.
type Config struct {
	// GetCertificate returns the certificate for a handshake's server name. Nil: the
	// Proxy's own store, Proxy.Certs.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	Logger         *slog.Logger // nil: discard

	// HandshakeTimeout bounds reading the ClientHello and the TLS handshake (10s).
	HandshakeTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers, against slow clients (10s).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long (120s), and passthrough
	// connections whose one direction has ended and the other stays silent this long.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps a request's head, its request line and headers (64 KiB);
	// more gets 431. A backend's response head may have 4 times as much.
	MaxHeaderBytes int
	// MaxConns caps the connections served at once on all the Proxy's listeners
	// (4096). Beyond it, new connections wait (one per listener accepted, the others
	// in the listen queue) until one closes.
	MaxConns int
	// DialTimeout bounds connecting to a backend (5s).
	DialTimeout time.Duration
	// MaxIdleBackendConns caps the idle keep-alive connections kept per backend (128).
	MaxIdleBackendConns int
	// RedirectPort is the port put in redirects to https. Zero: the port of the
	// HTTPS listener when it is not 443, else none.
	RedirectPort int
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HandshakeTimeout, 10*time.Second)
	def(&c.ReadHeaderTimeout, 10*time.Second)
	def(&c.IdleTimeout, 120*time.Second)
	def(&c.DialTimeout, 5*time.Second)
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 4096
	}
	if c.MaxIdleBackendConns <= 0 {
		c.MaxIdleBackendConns = 128
	}
}

// Proxy is the reverse proxy. Make it with New, give it routes, certificates and
// listeners; Close or Shutdown ends it.
type Proxy struct {
	cfg        Config
	log        *slog.Logger
	routes     routes
	certs      Certs
	challenges Challenges

	tlsConfig *tls.Config
	backends  *backends

	// The HTTP servers: tlsSrv serves the connections this package terminated (handed
	// over through queue), plainSrv the HTTP address.
	tlsSrv, plainSrv *http.Server
	queue            *queueListener
	startTLS         sync.Once

	slots     chan struct{} // one per open connection
	draining  atomic.Bool   // Shutdown has begun
	ctx       context.Context
	cancel    context.CancelFunc
	httpsPort atomic.Int32

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    bool
}

// New makes a Proxy with an empty routing table.
func New(cfg Config) *Proxy {
	cfg.setDefaults()
	p := &Proxy{
		cfg:       cfg,
		log:       cfg.Logger,
		slots:     make(chan struct{}, cfg.MaxConns),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	getCert := cfg.GetCertificate
	if getCert == nil {
		getCert = p.certs.GetCertificate
	}
	p.tlsConfig = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: getCert,
	}
	p.backends = newBackends(cfg.DialTimeout, cfg.MaxIdleBackendConns, 90*time.Second)

	errLog := log.New(&slogWriter{p.log}, "", 0)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	p.tlsSrv = &http.Server{
		Handler:           http.HandlerFunc(p.serveTLSRequest),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		Protocols:         &protos,
		ErrorLog:          errLog,
	}
	p.queue = newQueueListener()
	var plain http.Protocols
	plain.SetHTTP1(true)
	p.plainSrv = &http.Server{
		Handler:           http.HandlerFunc(p.servePlainRequest),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		Protocols:         &plain,
		ErrorLog:          errLog,
	}
	return p
}

// SetRoutes replaces the whole routing table, host name → route, at once. Host names
// are DNS names (case and a final dot do not matter). Nothing changes on an error.
func (p *Proxy) SetRoutes(table map[string]Route) error { return p.routes.replace(table) }

// SetRoute adds or replaces the route of one host name.
func (p *Proxy) SetRoute(host string, r Route) error { return p.routes.set(host, r) }

// DeleteRoute removes the route of one host name (none: nothing happens).
func (p *Proxy) DeleteRoute(host string) { p.routes.delete(host) }

// Routes returns a copy of the routing table.
func (p *Proxy) Routes() map[string]Route { return p.routes.all() }

// Certs is the certificate store that handshakes are served from (unless
// Config.GetCertificate is set).
func (p *Proxy) Certs() *Certs { return &p.certs }

// Challenges is the store of ACME challenge answers the Proxy serves.
func (p *Proxy) Challenges() *Challenges { return &p.challenges }

// ListenAndServe listens on the HTTPS and HTTP addresses (an empty one is not served)
// and serves both until ctx ends; then it shuts down, giving open requests up to
// grace to finish.
func (p *Proxy) ListenAndServe(ctx context.Context, httpsAddr, httpAddr string, grace time.Duration) error {
	var tlsL, plainL net.Listener
	var err error
	if httpsAddr != "" {
		if tlsL, err = net.Listen("tcp", httpsAddr); err != nil {
			return fmt.Errorf("https listener on %s: %w", httpsAddr, err)
		}
	}
	if httpAddr != "" {
		if plainL, err = net.Listen("tcp", httpAddr); err != nil {
			if tlsL != nil {
				tlsL.Close()
			}
			return fmt.Errorf("http listener on %s: %w", httpAddr, err)
		}
	}
	return p.Serve(ctx, tlsL, plainL, grace)
}

// Serve serves HTTPS on tlsL and HTTP on plainL (either may be nil) until ctx ends or
// a listener fails; then it shuts down, giving open requests up to grace to finish, and
// returns the listener's error if one failed.
func (p *Proxy) Serve(ctx context.Context, tlsL, plainL net.Listener, grace time.Duration) error {
	errc := make(chan error, 2)
	n := 0
	if tlsL != nil {
		n++
		go func() { errc <- p.ServeTLS(tlsL) }()
	}
	if plainL != nil {
		n++
		go func() { errc <- p.ServePlain(plainL) }()
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
		n--
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil {
		p.log.Warn("proxy shutdown: open connections closed at the deadline", "error", err)
	}
	for ; n > 0; n-- {
		if err := <-errc; first == nil {
			first = err
		}
	}
	return first
}

// ServeTLS accepts connections on l as the HTTPS address until l or the Proxy is
// closed; then it returns nil. Each connection is routed by its ClientHello.
func (p *Proxy) ServeTLS(l net.Listener) error {
	if a, ok := l.Addr().(*net.TCPAddr); ok {
		p.httpsPort.Store(int32(a.Port))
	}
	p.startTLS.Do(func() {
		go func() {
			if err := p.tlsSrv.Serve(p.queue); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.log.Error("proxy: https server stopped", "error", err)
			}
		}()
	})
	return p.acceptLoop(l, "https", p.handleTLSConn)
}

// ServePlain serves l as the HTTP address (ACME HTTP-01 answers and redirects to
// https) until l or the Proxy is closed; then it returns nil.
func (p *Proxy) ServePlain(l net.Listener) error {
	ql := newQueueListener()
	ql.addr = l.Addr()
	go func() {
		if err := p.plainSrv.Serve(ql); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("proxy: http server stopped", "error", err)
		}
	}()
	defer ql.Close()
	return p.acceptLoop(l, "http", func(c *conn) { ql.hand(c) })
}

// acceptLoop takes a connection slot, accepts, and hands the connection to handle in a
// goroutine of its own.
func (p *Proxy) acceptLoop(l net.Listener, what string, handle func(*conn)) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.Close()
		return nil
	}
	p.listeners[l] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, l)
		p.mu.Unlock()
		l.Close()
	}()
	p.log.Info("proxy listening", "what", what, "addr", l.Addr().String())
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return nil
			}
			// Out of descriptors or buffers: wait and try again, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.log.Warn("proxy accept", "what", what, "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-p.ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		// A slot after the accept, not before: listeners share the slots, and one
		// waiting in Accept must not hold one.
		select {
		case p.slots <- struct{}{}:
		case <-p.ctx.Done():
			nc.Close()
			return nil
		}
		c := p.track(nc)
		if c == nil {
			continue
		}
		go handle(c)
	}
}

// track registers an accepted connection; nil if the Proxy is closed.
func (p *Proxy) track(nc net.Conn) *conn {
	c := &conn{Conn: nc, p: p, io: newSockIO(nc)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		nc.Close()
		<-p.slots
		return nil
	}
	p.conns[c] = struct{}{}
	return c
}

// Close closes the listeners and every connection at once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	ls := make([]net.Listener, 0, len(p.listeners))
	for l := range p.listeners {
		ls = append(ls, l)
	}
	cs := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	p.cancel()
	for _, l := range ls {
		l.Close()
	}
	p.tlsSrv.Close()
	p.plainSrv.Close()
	p.queue.Close()
	for _, c := range cs {
		c.Close()
	}
	p.backends.closeIdle(true)
	return nil
}

// Shutdown stops accepting, lets open requests finish and closes idle connections
// until none is left or ctx ends; then it closes what is left (passthrough streams,
// WebSockets) and returns ctx's error if it ended first.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.draining.Store(true)
	p.mu.Lock()
	for l := range p.listeners {
		l.Close()
	}
	p.mu.Unlock()
	p.closeIdleH1()
	var wg sync.WaitGroup
	for _, s := range []*http.Server{p.tlsSrv, p.plainSrv} {
		wg.Go(func() { _ = s.Shutdown(ctx) })
	}
	wg.Wait()
	// What the servers do not track: connections in a handshake, passthrough
	// streams, upgraded connections, and the HTTP/1.1 connections served here.
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	var err error
	for {
		p.closeIdleH1()
		p.mu.Lock()
		n := len(p.conns)
		p.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-t.C:
			continue
		case <-ctx.Done():
			err = ctx.Err()
		}
		break
	}
	p.Close()
	return err
}

// closeIdleH1 closes the HTTP/1.1 connections waiting for a request (those serving
// one close after it, once draining is set).
func (p *Proxy) closeIdleH1() {
	var idle []*conn
	p.mu.Lock()
	for c := range p.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosing) {
			idle = append(idle, c)
		}
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// conn is an accepted connection: it gives back its slot once closed, and first
// replays the bytes read from it while looking at its ClientHello.
type conn struct {
	net.Conn
	p      *Proxy
	prefix []byte
	once   sync.Once
	state  atomic.Int32                // stateOther, or an HTTP/1.1 connection's (h1conn.go)
	io     *sockIO                     // Conn's (one reader and one writer at a time), nil if none
	batch  atomic.Pointer[batchWriter] // an HTTP/2 connection's writes, once set
}

func (c *conn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	if c.io != nil {
		return c.io.Read(b)
	}
	return c.Conn.Read(b)
}

func (c *conn) Write(b []byte) (int, error) {
	if bw := c.batch.Load(); bw != nil {
		return bw.Write(b)
	}
	if c.io != nil {
		return c.io.Write(b)
	}
	return c.Conn.Write(b)
}

func (c *conn) Close() error {
	if bw := c.batch.Load(); bw != nil {
		// The queued bytes go first (a GOAWAY, a close_notify), for a while; none
		// when the whole Proxy closes.
		deadline := time.Now().Add(closeFlushTime)
		if c.p.ctx.Err() != nil {
			deadline = time.Now()
		}
		_ = c.Conn.SetWriteDeadline(deadline)
		bw.close(deadline)
	}
	err := c.Conn.Close()
	c.once.Do(func() {
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
		<-c.p.slots
	})
	return err
}

// queueListener is the net.Listener of an http.Server that serves connections this
// package accepted (and, on the HTTPS address, handshook).
type queueListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newQueueListener() *queueListener {
	return &queueListener{ch: make(chan net.Conn), done: make(chan struct{}), addr: &net.TCPAddr{}}
}

func (q *queueListener) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// hand gives c to the server, or closes it if the server is gone.
func (q *queueListener) hand(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *queueListener) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *queueListener) Addr() net.Addr { return q.addr }

// slogWriter turns net/http's log lines (TLS and protocol errors of clients) into
// debug records.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(b []byte) (int, error) {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	w.log.Debug("proxy: " + string(b))
	return len(b), nil
}

// redirectPort returns the port to put in redirects ("" for 443).
func (p *Proxy) redirectPort() string {
	port := p.cfg.RedirectPort
	if port == 0 {
		port = int(p.httpsPort.Load())
	}
	if port == 0 || port == 443 {
		return ""
	}
	return strconv.Itoa(port)
}
