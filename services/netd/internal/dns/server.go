// Package dns is the containers' resolver: a DNS server on the bridge's gateway (UDP and
// TCP, port 53) that answers "<id>.<domain>" (domain hearth.internal by default) from a
// table netd keeps (Set, Delete, Replace), says NXDOMAIN for any other name in that
// domain, and forwards every other name to the host's resolvers (/etc/resolv.conf, read
// again when it changes, or a given list), over UDP and again over TCP when the answer
// comes back truncated.
//
// Bounded: queries larger than 4096 bytes over UDP are dropped, forwarded queries in
// flight are capped (past the cap a query gets SERVFAIL at once), each upstream gets a
// timeout, TCP connections are capped and closed when idle. It never forwards to itself.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	dnsmsg "github.com/miekg/dns"

	"hearth.dev/internal/errdefs"
)

// Defaults of Config.
const (
	DefaultDomain      = "hearth.internal"
	DefaultResolvConf  = "/etc/resolv.conf"
	DefaultTTL         = 5 * time.Second
	DefaultTimeout     = 2 * time.Second
	DefaultMaxForwards = 128
	DefaultMaxTCPConns = 64
	DefaultTCPIdle     = 10 * time.Second
)

// maxUDPQuery is the largest query read over UDP; larger ones are dropped. It is also the
// largest UDP answer given to a client that announces a larger EDNS buffer.
const maxUDPQuery = 4096

// maxUpstreams is how many upstreams one query tries, at most (resolv.conf holds three).
const maxUpstreams = 3

// Config configures a Server.
type Config struct {
	// Addr is where to listen, UDP and TCP: the bridge's gateway, port 53. Port 0 takes a
	// port free for both (tests).
	Addr netip.AddrPort
	// Domain holds the containers' names; DefaultDomain when empty.
	Domain string
	// TTL of the answers from the table (and of negative answers in the domain).
	TTL time.Duration
	// Upstreams receive every name outside Domain. When empty, the nameservers of
	// ResolvConf (DefaultResolvConf when empty), port 53.
	Upstreams  []netip.AddrPort
	ResolvConf string
	// Timeout of one attempt with one upstream.
	Timeout time.Duration
	// MaxForwards caps the forwarded queries in flight.
	MaxForwards int
	// MaxTCPConns caps the open TCP connections; TCPIdle closes a quiet one.
	MaxTCPConns int
	TCPIdle     time.Duration
	// Clients, when set, are the only sources answered (the bridge's subnet).
	Clients []netip.Prefix
	Log     *slog.Logger
}

// Server is a running resolver.
type Server struct {
	cfg    Config
	log    *slog.Logger
	domain string // fully qualified, lower case: "hearth.internal."
	addr   netip.AddrPort
	udp    *net.UDPConn
	tcp    *net.TCPListener

	table     table
	upstreams *upstreams
	forwards  chan struct{} // a token per forwarded query in flight
	tcpConns  chan struct{} // a token per open TCP connection

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Listen validates cfg, binds UDP and TCP on cfg.Addr and starts serving.
func Listen(cfg Config) (*Server, error) {
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	domain := dnsmsg.CanonicalName(cfg.Domain)
	if _, ok := dnsmsg.IsDomainName(domain); !ok || domain == "." {
		return nil, fmt.Errorf("dns: domain %q is not a domain name: %w", cfg.Domain, errdefs.ErrInvalidArgument)
	}
	if !cfg.Addr.IsValid() {
		return nil, fmt.Errorf("dns: give an address to listen on (the bridge's gateway, port 53): %w", errdefs.ErrInvalidArgument)
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = DefaultResolvConf
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxForwards <= 0 {
		cfg.MaxForwards = DefaultMaxForwards
	}
	if cfg.MaxTCPConns <= 0 {
		cfg.MaxTCPConns = DefaultMaxTCPConns
	}
	if cfg.TCPIdle <= 0 {
		cfg.TCPIdle = DefaultTCPIdle
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Log, domain: domain,
		forwards: make(chan struct{}, cfg.MaxForwards), tcpConns: make(chan struct{}, cfg.MaxTCPConns),
		conns: map[net.Conn]struct{}{}}
	s.table.init()
	var err error
	if s.udp, s.tcp, err = bind(cfg.Addr); err != nil {
		return nil, err
	}
	s.addr = s.udp.LocalAddr().(*net.UDPAddr).AddrPort()
	s.upstreams = newUpstreams(cfg.Upstreams, cfg.ResolvConf, s.addr, s.log)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	return s, nil
}

// bind listens on UDP and TCP at the same address; with port 0, on a port free for both.
func bind(addr netip.AddrPort) (*net.UDPConn, *net.TCPListener, error) {
	var lastErr error
	for range 10 {
		udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listen on udp %s: %w", addr, errors.Join(errdefs.ErrUnavailable, err))
		}
		port := udp.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr.Addr(), port)))
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		lastErr = err
		if addr.Port() != 0 {
			break
		}
	}
	return nil, nil, fmt.Errorf("dns: listen on tcp %s: %w", addr, errors.Join(errdefs.ErrUnavailable, lastErr))
}

// Addr is where the server listens (with the port taken when Config.Addr had port 0).
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Domain is the domain the server answers for, fully qualified.
func (s *Server) Domain() string { return s.domain }

// Close stops serving, closes the open connections and waits for queries in flight.
func (s *Server) Close() error {
	s.cancel()
	err := errors.Join(s.udp.Close(), s.tcp.Close())
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// allowed reports whether a query from a may be answered.
func (s *Server) allowed(a netip.Addr) bool {
	if len(s.cfg.Clients) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range s.cfg.Clients {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
