package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"time"
)

// handleTLSConn routes one connection of the HTTPS address by its ClientHello: a
// TLS-ALPN-01 answer, a passthrough stream, or a TLS connection served here (HTTP/1.1)
// or handed to the HTTP/2 server.
func (p *Proxy) handleTLSConn(c *conn) {
	_ = c.SetDeadline(time.Now().Add(p.cfg.HandshakeTimeout))
	hello, err := peekClientHello(c)
	if err != nil {
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) && looksLikeHTTP(rhe.RecordHeader[:]) {
			_, _ = io.WriteString(c.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nThis port speaks HTTPS: use https://.\n")
		}
		p.log.Debug("proxy: no ClientHello", "remote", c.RemoteAddr().String(), "error", err)
		c.Close()
		return
	}
	name := normalizeHost(hello.ServerName)
	if slices.Contains(hello.SupportedProtos, ALPNProto) {
		p.answerTLSALPN01(c, name)
		return
	}
	if r, ok := p.routes.get(name); ok && r.Kind == KindPassthrough {
		_ = c.SetDeadline(time.Time{})
		p.passthrough(c, name, r)
		return
	}
	tc := tls.Server(c, p.tlsConfig)
	if err := tc.HandshakeContext(p.ctx); err != nil {
		p.log.Debug("proxy: tls handshake", "server_name", name, "remote", c.RemoteAddr().String(), "error", err)
		tc.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		if c.io != nil {
			c.batch.Store(newBatchWriter(c.io))
		}
		p.queue.hand(tc)
		return
	}
	p.serveH1(c, tc)
}

// answerTLSALPN01 completes an acme-tls/1 handshake with the name's validation
// certificate, if a challenge is pending for it, and closes the connection.
func (p *Proxy) answerTLSALPN01(c *conn, name string) {
	defer c.Close()
	cert, ok := p.challenges.ALPNCertificate(name)
	if !ok {
		p.log.Info("proxy: acme-tls/1 handshake for a name with no pending challenge", "server_name", name, "remote", c.RemoteAddr().String())
		return
	}
	tc := tls.Server(c, &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{ALPNProto},
		Certificates: []tls.Certificate{*cert},
	})
	if err := tc.HandshakeContext(p.ctx); err != nil {
		p.log.Debug("proxy: tls-alpn-01 handshake", "server_name", name, "error", err)
		return
	}
	p.log.Info("proxy: answered a tls-alpn-01 challenge", "server_name", name, "remote", c.RemoteAddr().String())
	_ = tc.Close()
}

// passthrough splices the connection to the backend, the ClientHello first, and keeps
// copying both ways until both have ended (or one has ended and the other stays silent
// for IdleTimeout).
func (p *Proxy) passthrough(c *conn, name string, r Route) {
	defer c.Close()
	d := net.Dialer{Timeout: p.cfg.DialTimeout}
	b, err := d.DialContext(p.ctx, "tcp", r.Backend)
	if err != nil {
		p.log.Warn("proxy: passthrough backend is not answering", "server_name", name, "backend", r.Backend, "error", err)
		return
	}
	defer b.Close()
	stop := context.AfterFunc(p.ctx, func() { c.Close(); b.Close() })
	defer stop()
	if _, err := b.Write(c.prefix); err != nil {
		return
	}
	c.prefix = nil
	// Copy between the bare connections, so that the kernel splices TCP to TCP. Once
	// one direction ends, the other gets an idle timeout.
	raw, idle := c.Conn, p.cfg.IdleTimeout
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(b, raw, idle)
		closeWrite(b)
		_ = b.SetReadDeadline(time.Now().Add(idle))
	}()
	pipe(raw, b, idle)
	closeWrite(raw)
	_ = raw.SetReadDeadline(time.Now().Add(idle))
	<-done
}

// pipe copies src to dst until src ends or fails. A read deadline on src (set when the
// other direction ended) ends it only if no byte came since the deadline was set.
func pipe(dst, src net.Conn, idle time.Duration) {
	for {
		n, err := io.Copy(dst, src)
		var ne net.Error
		if n > 0 && errors.As(err, &ne) && ne.Timeout() {
			_ = src.SetReadDeadline(time.Now().Add(idle))
			continue
		}
		return
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// errHelloRead stops the handshake that only reads a ClientHello.
var errHelloRead = errors.New("client hello read")

// peekClientHello reads c's ClientHello, keeping every byte read in c.prefix for the
// real handshake (or the passthrough backend) to read again. The parsing is crypto/tls's:
// a handshake on a connection that only reads, stopped once the hello is parsed.
func peekClientHello(c *conn) (*tls.ClientHelloInfo, error) {
	var buf bytes.Buffer
	var hello *tls.ClientHelloInfo
	err := tls.Server(readOnlyConn{r: io.TeeReader(c.Conn, &buf), c: c.Conn}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			hello = &tls.ClientHelloInfo{ServerName: h.ServerName, SupportedProtos: h.SupportedProtos}
			return nil, errHelloRead
		},
	}).Handshake()
	c.prefix = buf.Bytes()
	if hello == nil {
		return nil, err
	}
	return hello, nil
}

// readOnlyConn gives crypto/tls the bytes of a connection and swallows what it writes
// (the alert sent when the peek stops the handshake).
type readOnlyConn struct {
	r io.Reader
	c net.Conn
}

func (c readOnlyConn) Read(b []byte) (int, error)         { return c.r.Read(b) }
func (c readOnlyConn) Write(b []byte) (int, error)        { return 0, io.ErrClosedPipe }
func (c readOnlyConn) Close() error                       { return nil }
func (c readOnlyConn) LocalAddr() net.Addr                { return c.c.LocalAddr() }
func (c readOnlyConn) RemoteAddr() net.Addr               { return c.c.RemoteAddr() }
func (c readOnlyConn) SetDeadline(t time.Time) error      { return nil }
func (c readOnlyConn) SetReadDeadline(t time.Time) error  { return nil }
func (c readOnlyConn) SetWriteDeadline(t time.Time) error { return nil }

// looksLikeHTTP reports whether the first bytes of a connection are an HTTP method.
func looksLikeHTTP(hdr []byte) bool {
	switch string(hdr) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE":
		return true
	}
	return false
}
