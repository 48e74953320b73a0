package tor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"hearth.dev/internal/errdefs"
)

// ErrNotConfigured is returned by a nil *Controller: netd runs without tor. It wraps
// errdefs.ErrFailedPrecondition; the caller says how to configure tor.
var ErrNotConfigured = fmt.Errorf("tor is not configured on this host: %w", errdefs.ErrFailedPrecondition)

// Config says where tor's control port is and how to authenticate to it.
type Config struct {
	// Address of the control port: "unix:/path" or an absolute path (a Unix socket),
	// or "host:port".
	Address string
	// Password, for a tor that takes HASHEDPASSWORD authentication. Tor's offer is
	// asked first (PROTOCOLINFO): none, SAFECOOKIE and COOKIE go before a password.
	Password string
	// CookieFile overrides the cookie file that tor names (a tor whose file system
	// differs from ours).
	CookieFile string
	// Waits between tries to connect, doubling from MinBackoff to MaxBackoff; while
	// connected, services that tor refused at a reconnect are tried again every
	// MaxBackoff. Defaults: 100 ms and 5 s.
	MinBackoff, MaxBackoff time.Duration
	// CommandTimeout bounds a dial and each command's wait for tor's answer (default
	// 10 s); a command unanswered by then drops the connection, which is then made
	// again.
	CommandTimeout time.Duration
	Log            *slog.Logger
}

// Port maps a port of the onion address to a target that tor connects to.
type Port struct {
	Virtual int    // 1-65535
	Target  string // "ip:port" (IPv6 as "[ip]:port") or "unix:/path"
}

func (p Port) String() string { return strconv.Itoa(p.Virtual) + "," + p.Target }

// Service is one onion service: its key and its ports.
type Service struct {
	Key   Key
	Ports []Port
}

// ID is the service id (its address without ".onion").
func (s Service) ID() string { return s.Key.ServiceID() }

func (s Service) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("onion service: "+format+": %w", append(a, errdefs.ErrInvalidArgument)...)
	}
	if s.Key.IsZero() {
		return bad("no key")
	}
	if len(s.Ports) == 0 {
		return bad("no ports")
	}
	seen := map[int]bool{}
	for _, p := range s.Ports {
		if p.Virtual < 1 || p.Virtual > 65535 {
			return bad("virtual port %d: give 1-65535", p.Virtual)
		}
		if seen[p.Virtual] {
			return bad("virtual port %d given twice", p.Virtual)
		}
		seen[p.Virtual] = true
		if path, ok := strings.CutPrefix(p.Target, "unix:"); ok {
			if !filepath.IsAbs(path) || strings.ContainsFunc(path, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r == 0x7f }) {
				return bad("target %q: give unix: and an absolute path without spaces, quotes or control characters", p.Target)
			}
			continue
		}
		ap, err := netip.ParseAddrPort(p.Target)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			return bad("target %q of port %d: give ip:port ([ip]:port for IPv6) or unix:/path", p.Target, p.Virtual)
		}
	}
	return nil
}

// ServiceStatus is what the controller knows of one wanted service.
type ServiceStatus struct {
	ID    string
	Ports []Port
	Added bool  // tor has it now, on the controller's current connection
	Err   error // why tor refused it at the last try, if it did
}

// Controller keeps a set of wanted onion services on tor through one control
// connection. Services are added without Detach: tor drops them when the connection
// closes, so a netd that dies leaves none behind, and the controller adds them all again
// on its next connection (tor restarted, or the connection dropped). All methods of a
// nil *Controller return ErrNotConfigured.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{} // the connection loop has ended

	// op is held by whoever talks to tor about services (a one-slot semaphore, so
	// that waiting for it obeys a context); it orders every change of the wanted set
	// with tor's copy of it.
	op chan struct{}

	mu      sync.Mutex
	cur     *controlConn  // nil while disconnected
	ready   chan struct{} // closed when cur is set; replaced when it is lost
	lastErr error         // why the last try to connect failed
	wanted  map[string]*entry
	closed  bool
}

type entry struct {
	svc   Service
	added *controlConn // the connection tor has it on, if any
	ports []Port       // the ports it was added with
	err   error
}

// NewController checks cfg and starts connecting in the background; Add, Ready and
// the others wait for the connection as long as their context lets them.
func NewController(cfg Config) (*Controller, error) {
	if _, _, err := parseControlAddress(cfg.Address); err != nil {
		return nil, err
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Second, cfg.MinBackoff)
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Controller{
		cfg:    cfg,
		log:    cfg.Log.With("tor_control", cfg.Address),
		cancel: cancel,
		done:   make(chan struct{}),
		op:     make(chan struct{}, 1),
		ready:  make(chan struct{}),
		wanted: map[string]*entry{},
	}
	go c.run(ctx)
	return c, nil
}

// Address is the control port's address.
func (c *Controller) Address() string {
	if c == nil {
		return ""
	}
	return c.cfg.Address
}

// Close stops the controller and closes its connection: tor drops every service it
// added.
func (c *Controller) Close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	<-c.done
	return nil
}

func (c *Controller) run(ctx context.Context) {
	defer close(c.done)
	backoff := c.cfg.MinBackoff
	var loggedErr string
	for {
		start := time.Now()
		dctx, cancel := context.WithTimeout(ctx, c.cfg.CommandTimeout)
		cn, err := dialControl(dctx, c.cfg.Address, auth{password: c.cfg.Password, cookieFile: c.cfg.CookieFile}, c.cfg.CommandTimeout)
		cancel()
		if ctx.Err() != nil {
			if cn != nil {
				cn.close(errors.New("controller closed"))
			}
			return
		}
		if err != nil {
			c.mu.Lock()
			c.lastErr = err
			c.mu.Unlock()
			if err.Error() != loggedErr {
				c.log.Warn("cannot reach tor's control port; trying again", "err", err)
				loggedErr = err.Error()
			}
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, c.cfg.MaxBackoff)
			continue
		}
		loggedErr = ""
		backoff = c.cfg.MinBackoff
		if !c.connected(ctx, cn, start) {
			cn.close(errors.New("controller closed"))
			return
		}
		retry := time.NewTicker(c.cfg.MaxBackoff)
	connected:
		for {
			select {
			case <-ctx.Done():
				retry.Stop()
				cn.close(errors.New("controller closed"))
				c.disconnected(cn)
				return
			case <-cn.done:
				break connected
			case <-retry.C:
				c.retryFailed(ctx, cn)
			}
		}
		retry.Stop()
		c.log.Warn("lost tor's control connection; reconnecting", "err", cn.err)
		c.disconnected(cn)
	}
}

// connected adds every wanted service on a new connection, then publishes it.
func (c *Controller) connected(ctx context.Context, cn *controlConn, start time.Time) bool {
	if !c.lock(ctx) {
		return false
	}
	defer c.unlock()
	added, failed := 0, 0
	for _, id := range c.wantedIDs() {
		if err := c.apply(cn, id); err != nil {
			failed++
			c.log.Warn("tor refused an onion service; trying again later", "service", id, "err", err)
		} else {
			added++
		}
	}
	c.mu.Lock()
	c.cur, c.lastErr = cn, nil
	close(c.ready)
	c.mu.Unlock()
	c.log.Info("connected to tor's control port", "tor_version", cn.version, "services_added", added, "services_failed", failed,
		"took", time.Since(start).Round(time.Microsecond))
	return true
}

func (c *Controller) disconnected(cn *controlConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == cn {
		c.cur = nil
		c.lastErr = cn.err
		c.ready = make(chan struct{})
	}
	for _, e := range c.wanted {
		if e.added == cn {
			e.added, e.ports = nil, nil
		}
	}
}

// retryFailed tries again the services that tor refused at the last reconnect.
func (c *Controller) retryFailed(ctx context.Context, cn *controlConn) {
	if !c.lock(ctx) {
		return
	}
	defer c.unlock()
	for _, id := range c.wantedIDs() {
		c.mu.Lock()
		e := c.wanted[id]
		again := e != nil && e.err != nil && e.added != cn
		c.mu.Unlock()
		if again {
			if err := c.apply(cn, id); err != nil {
				c.log.Debug("tor still refuses an onion service", "service", id, "err", err)
			} else {
				c.log.Info("onion service added after an earlier refusal", "service", id)
			}
		}
	}
}

func (c *Controller) wantedIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.wanted))
	for id := range c.wanted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (c *Controller) lock(ctx context.Context) bool {
	select {
	case c.op <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *Controller) unlock() { <-c.op }

// apply makes tor's copy of service id, on cn, what the wanted set says. Hold op.
func (c *Controller) apply(cn *controlConn, id string) error {
	c.mu.Lock()
	e := c.wanted[id]
	var svc Service
	var onCn, same bool
	if e != nil {
		svc = e.svc
		onCn = e.added == cn
		same = onCn && slices.Equal(e.ports, e.svc.Ports)
	}
	c.mu.Unlock()
	if e == nil || same {
		return nil
	}
	if onCn {
		// New ports: tor cannot change a service, so it goes and comes back.
		if _, err := cn.do("DEL_ONION", "DEL_ONION "+id); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return c.failed(e, err)
		}
		c.mu.Lock()
		e.added, e.ports = nil, nil
		c.mu.Unlock()
	}
	err := addOnion(cn, svc)
	if errors.Is(err, errdefs.ErrAlreadyExists) {
		// Ours from before (detached, or on a connection tor has not dropped yet):
		// take it back with the wanted ports.
		if _, derr := cn.do("DEL_ONION", "DEL_ONION "+id); derr == nil {
			err = addOnion(cn, svc)
		}
	}
	if err != nil {
		return c.failed(e, err)
	}
	c.mu.Lock()
	e.added, e.ports, e.err = cn, svc.Ports, nil
	c.mu.Unlock()
	return nil
}

func (c *Controller) failed(e *entry, err error) error {
	c.mu.Lock()
	e.err = err
	c.mu.Unlock()
	return err
}

// addOnion sends ADD_ONION with the service's key, and checks that the ServiceID tor
// answers is the one derived here.
func addOnion(cn *controlConn, svc Service) error {
	var b strings.Builder
	b.WriteString("ADD_ONION ")
	b.WriteString(svc.Key.ControlBlob())
	b.WriteString(" Flags=DiscardPK")
	for _, p := range svc.Ports {
		b.WriteString(" Port=")
		b.WriteString(p.String())
	}
	r, err := cn.do("ADD_ONION", b.String())
	if err != nil {
		return fmt.Errorf("onion service %s: %w", svc.Key.Address(), err)
	}
	for _, l := range r {
		if got, ok := strings.CutPrefix(l.text, "ServiceID="); ok {
			if got != svc.ID() {
				cn.do("DEL_ONION", "DEL_ONION "+got)
				return fmt.Errorf("tor made onion service %s.onion from the key of %s: %w", got, svc.Key.Address(), errdefs.ErrInternal)
			}
			return nil
		}
	}
	return fmt.Errorf("onion service %s: tor's answer to ADD_ONION has no ServiceID: %w", svc.Key.Address(), errdefs.ErrInternal)
}

// waitConn returns the current connection, waiting for one as long as ctx lets it.
func (c *Controller) waitConn(ctx context.Context) (*controlConn, error) {
	for {
		c.mu.Lock()
		cn, ready, closed := c.cur, c.ready, c.closed
		c.mu.Unlock()
		if closed {
			return nil, fmt.Errorf("tor controller is closed: %w", errdefs.ErrUnavailable)
		}
		if cn != nil && cn.Err() == nil {
			return cn, nil
		}
		var lastErr error
		select {
		case <-ready:
		case <-c.done:
		case <-ctx.Done():
			c.mu.Lock()
			lastErr = c.lastErr
			c.mu.Unlock()
			if lastErr == nil {
				lastErr = fmt.Errorf("tor control port %s: not connected yet: %w", c.cfg.Address, errdefs.ErrUnavailable)
			}
			return nil, lastErr
		}
	}
}

// Ready waits until the controller is connected to tor, as long as ctx lets it, and
// returns why it is not when ctx ends (an error wrapping errdefs.ErrUnavailable, or
// ErrPermissionDenied when tor refuses our authentication).
func (c *Controller) Ready(ctx context.Context) error {
	if c == nil {
		return ErrNotConfigured
	}
	_, err := c.waitConn(ctx)
	return err
}

// Add makes svc wanted and adds it to tor, replacing the ports of a service of the same
// key; it returns the service's onion address. When tor cannot be reached before ctx
// ends, the service stays wanted (it is added when the controller connects) and the
// error wraps errdefs.ErrUnavailable; when tor refuses it (ReplyError), it is no longer
// wanted.
func (c *Controller) Add(ctx context.Context, svc Service) (string, error) {
	if c == nil {
		return "", ErrNotConfigured
	}
	if err := svc.check(); err != nil {
		return "", err
	}
	svc.Ports = slices.Clone(svc.Ports)
	id, addr := svc.ID(), svc.Key.Address()
	if !c.lock(ctx) {
		return addr, fmt.Errorf("onion service %s: %w", addr, ctx.Err())
	}
	c.mu.Lock()
	e := c.wanted[id]
	if e == nil {
		e = &entry{}
		c.wanted[id] = e
	}
	e.svc, e.err = svc, nil
	c.mu.Unlock()
	c.unlock()

	for {
		cn, err := c.waitConn(ctx)
		if err != nil {
			return addr, fmt.Errorf("onion service %s is kept and will be added when tor answers: %w", addr, err)
		}
		if !c.lock(ctx) {
			return addr, fmt.Errorf("onion service %s: %w", addr, ctx.Err())
		}
		c.mu.Lock()
		cur := c.wanted[id]
		c.mu.Unlock()
		if cur != e {
			c.unlock()
			return addr, fmt.Errorf("onion service %s was removed while being added: %w", addr, errdefs.ErrAborted)
		}
		err = c.apply(cn, id)
		var refused *ReplyError
		if errors.As(err, &refused) || errors.Is(err, errdefs.ErrInternal) {
			c.mu.Lock()
			if c.wanted[id] == e {
				delete(c.wanted, id)
			}
			c.mu.Unlock()
		}
		c.unlock()
		if err != nil && cn.Err() != nil {
			continue // the connection dropped: the next one adds it
		}
		return addr, err
	}
}

// Remove makes the service of id (with or without ".onion") no longer wanted and takes
// it off tor. Removing a service that is not there is no error.
func (c *Controller) Remove(ctx context.Context, id string) error {
	if c == nil {
		return ErrNotConfigured
	}
	id = strings.TrimSuffix(strings.ToLower(id), ".onion")
	if _, err := ParseServiceID(id); err != nil {
		return err
	}
	if !c.lock(ctx) {
		return fmt.Errorf("remove onion service %s.onion: %w", id, ctx.Err())
	}
	defer c.unlock()
	c.mu.Lock()
	e := c.wanted[id]
	delete(c.wanted, id)
	var on *controlConn
	if e != nil && e.added != nil && e.added == c.cur {
		on = e.added
	}
	c.mu.Unlock()
	if on == nil {
		return nil // not on tor: never added, or gone with its connection
	}
	_, err := on.do("DEL_ONION", "DEL_ONION "+id)
	if err == nil || errors.Is(err, errdefs.ErrNotFound) || on.Err() != nil {
		return nil
	}
	return fmt.Errorf("remove onion service %s.onion: %w", id, err)
}

// Services lists the wanted services, sorted by id.
func (c *Controller) Services() []ServiceStatus {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ServiceStatus, 0, len(c.wanted))
	for id, e := range c.wanted {
		out = append(out, ServiceStatus{
			ID: id, Ports: slices.Clone(e.svc.Ports),
			Added: e.added != nil && e.added == c.cur && e.added.Err() == nil, Err: e.err,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// GetInfo asks tor for GETINFO keys on the controller's connection (so "onions/current"
// lists the services this controller added).
func (c *Controller) GetInfo(ctx context.Context, keys ...string) (map[string]string, error) {
	if c == nil {
		return nil, ErrNotConfigured
	}
	cn, err := c.waitConn(ctx)
	if err != nil {
		return nil, err
	}
	return cn.getInfo(keys...)
}

// Current returns the ids of the services tor holds for this controller (GETINFO
// onions/current), sorted.
func (c *Controller) Current(ctx context.Context) ([]string, error) {
	info, err := c.GetInfo(ctx, "onions/current")
	if err != nil {
		var refused *ReplyError
		if errors.As(err, &refused) && refused.Code == 551 {
			return nil, nil // some tors answer an empty list so
		}
		return nil, err
	}
	ids := strings.Fields(info["onions/current"])
	sort.Strings(ids)
	return ids, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
