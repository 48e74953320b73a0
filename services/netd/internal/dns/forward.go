package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	dnsmsg "github.com/miekg/dns"

	"hearth.dev/internal/errdefs"
)

// upstreams are the resolvers names outside the domain go to: a fixed list, or
// resolv.conf's nameservers, read again when the file changes (looked at once a second
// at most). Any that is the server itself is left out.
type upstreams struct {
	fixed []netip.AddrPort
	path  string
	self  netip.AddrPort
	log   *slog.Logger

	mu      sync.Mutex
	checked time.Time
	modTime time.Time
	size    int64
	list    []netip.AddrPort
}

func newUpstreams(fixed []netip.AddrPort, path string, self netip.AddrPort, log *slog.Logger) *upstreams {
	u := &upstreams{path: path, self: self, log: log}
	if len(fixed) > 0 {
		u.fixed = u.withoutSelf(fixed)
	}
	return u
}

// get returns the upstreams to try, in order.
func (u *upstreams) get() []netip.AddrPort {
	if u.fixed != nil {
		return u.fixed
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	if now.Sub(u.checked) < time.Second && !u.checked.IsZero() {
		return u.list
	}
	u.checked = now
	fi, err := os.Stat(u.path)
	if err != nil {
		if u.list != nil || u.modTime.IsZero() {
			u.log.Warn("dns: no resolvers to forward to", "resolv_conf", u.path, "err", err)
		}
		u.list, u.modTime = nil, time.Unix(1, 0)
		return nil
	}
	if fi.ModTime().Equal(u.modTime) && fi.Size() == u.size {
		return u.list
	}
	u.modTime, u.size = fi.ModTime(), fi.Size()
	list, err := readResolvConf(u.path)
	if err != nil {
		u.log.Warn("dns: read the host's resolvers", "resolv_conf", u.path, "err", err)
	}
	u.list = u.withoutSelf(list)
	u.log.Info("dns: forwarding to the host's resolvers", "resolv_conf", u.path, "resolvers", u.list)
	return u.list
}

// withoutSelf leaves out the server's own address: forwarding there would loop. When the
// server listens on an unspecified address, that is any loopback address on its port.
func (u *upstreams) withoutSelf(list []netip.AddrPort) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(list))
	for _, a := range list {
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		self := a == u.self || (u.self.Addr().IsUnspecified() && a.Port() == u.self.Port() &&
			(a.Addr().IsLoopback() || a.Addr().IsUnspecified()))
		if self {
			u.log.Warn("dns: refusing to forward to itself", "resolver", a)
			continue
		}
		out = append(out, a)
	}
	return out
}

// readResolvConf returns the nameservers of a resolv.conf, port 53.
func readResolvConf(path string) ([]netip.AddrPort, error) {
	cc, err := dnsmsg.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []netip.AddrPort
	for _, s := range cc.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		ap := netip.AddrPortFrom(a.Unmap(), 53)
		if !slices.Contains(out, ap) {
			out = append(out, ap)
		}
	}
	return out, nil
}

// forward asks the upstreams for req, in order, over UDP and again over TCP when the
// answer is truncated, and returns the first answer (with req's ID). It fails when none
// answers within its timeout.
func (s *Server) forward(ctx context.Context, req *dnsmsg.Msg) (*dnsmsg.Msg, error) {
	ups := s.upstreams.get()
	if len(ups) == 0 {
		return nil, fmt.Errorf("dns: no resolvers to forward %s to: %w", req.Question[0].Name, errdefs.ErrUnavailable)
	}
	if len(ups) > maxUpstreams {
		ups = ups[:maxUpstreams]
	}
	q := req.Copy()
	q.Id = dnsmsg.Id()
	var errs []error
	for _, up := range ups {
		resp, err := s.exchange(ctx, "udp", q, up)
		if err == nil && resp.Truncated {
			resp, err = s.exchange(ctx, "tcp", q, up)
		}
		if err == nil {
			resp.Id = req.Id
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("dns: forward %s: %w", req.Question[0].Name, errors.Join(append(errs, errdefs.ErrUnavailable)...))
}

func (s *Server) exchange(ctx context.Context, network string, q *dnsmsg.Msg, up netip.AddrPort) (*dnsmsg.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	c := &dnsmsg.Client{Net: network, Timeout: s.cfg.Timeout, UDPSize: dnsmsg.MaxMsgSize}
	resp, _, err := c.ExchangeContext(ctx, q, up.String())
	return resp, err
}

// forwardReply forwards req and packs the answer for a client that takes size bytes;
// SERVFAIL when no upstream answered.
func (s *Server) forwardReply(ctx context.Context, req *dnsmsg.Msg, size int) []byte {
	resp, err := s.forward(ctx, req)
	if err != nil {
		s.log.Debug("dns: forward", "err", err)
		return s.servfail(req)
	}
	b, err := resp.Pack()
	if err != nil {
		return s.servfail(req)
	}
	if b = fit(b, size); b == nil {
		return s.servfail(req)
	}
	return b
}
