package dns

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	dnsmsg "github.com/miekg/dns"
)

// serveUDP reads queries; answers from the table go out at once, forwarded ones from a
// goroutine each, within the cap on forwards.
func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, maxUDPQuery+1)
	for {
		n, _, flags, from, err := s.udp.ReadMsgUDPAddrPort(buf, nil)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("dns: receive", "err", err)
			continue
		}
		if n > maxUDPQuery || flags&syscall.MSG_TRUNC != 0 || !s.allowed(from.Addr()) {
			continue // oversized, or not one of ours
		}
		s.udpQuery(buf[:n], from)
	}
}

func (s *Server) udpQuery(b []byte, from netip.AddrPort) {
	reply, fwd := s.answer(b)
	if fwd == nil {
		if reply != nil {
			s.writeUDP(fit(reply, dnsmsg.MinMsgSize), from) // table answers are small
		}
		return
	}
	size := clientSize(fwd)
	select {
	case s.forwards <- struct{}{}:
	default:
		s.log.Debug("dns: too many forwarded queries in flight", "max", s.cfg.MaxForwards)
		s.writeUDP(s.servfail(fwd), from)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.forwards }()
		s.writeUDP(s.forwardReply(s.ctx, fwd, size), from)
	}()
}

func (s *Server) writeUDP(b []byte, to netip.AddrPort) {
	if b == nil {
		return
	}
	if _, err := s.udp.WriteToUDPAddrPort(b, to); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("dns: send", "to", to, "err", err)
	}
}

// serveTCP accepts connections within the cap; each is served by its own goroutine.
func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("dns: accept", "err", err)
			time.Sleep(10 * time.Millisecond) // out of descriptors: do not spin
			continue
		}
		from := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		if !s.allowed(from.Addr()) {
			c.Close()
			continue
		}
		select {
		case s.tcpConns <- struct{}{}:
		default:
			c.Close() // full: the client retries
			continue
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.tcpConns }()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// serveConn answers the queries of one TCP connection (RFC 7766: two-byte length, then
// the message) until it is idle for TCPIdle, closes, or sends garbage. Forwarded queries
// are answered in order, one at a time.
func (s *Server) serveConn(c *net.TCPConn) {
	write := func(b []byte) error {
		out := make([]byte, 2+len(b))
		binary.BigEndian.PutUint16(out, uint16(len(b)))
		copy(out[2:], b)
		c.SetWriteDeadline(time.Now().Add(s.cfg.TCPIdle))
		_, err := c.Write(out)
		return err
	}
	var hdr [2]byte
	for {
		c.SetReadDeadline(time.Now().Add(s.cfg.TCPIdle))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if n < 12 {
			return
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		reply, fwd := s.answer(b)
		if fwd != nil {
			select {
			case s.forwards <- struct{}{}:
				reply = s.forwardReply(s.ctx, fwd, dnsmsg.MaxMsgSize)
				<-s.forwards
			default:
				reply = s.servfail(fwd)
			}
		}
		if reply == nil {
			return // a response or garbage: not a DNS client
		}
		if err := write(reply); err != nil {
			return
		}
	}
}
