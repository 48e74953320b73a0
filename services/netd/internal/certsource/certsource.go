// Package certsource is netd's side of certd: it asks certd for the certificates the
// proxy serves (a leaf of the local CA for a name.local, an ACME certificate for a
// public domain) and hears from certd's watch when one is renewed or re-issued, so that
// the proxy serves the new one to the handshakes that follow.
package certsource

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/errdefs"
	certv1 "hearth.dev/proto/hearth/cert/v1"
)

// Client calls certd on its socket, connecting per call (certd may come and go).
type Client struct {
	Socket string
	Log    *slog.Logger
}

// Cert is one certificate with its key, ready to serve.
type Cert struct {
	ID     string
	Serial string
	TLS    *tls.Certificate
}

// Issue returns the certificate for name: from the local CA, or, with acme, from the
// ACME CA certd is configured with (which validates through netd's ports 80 and 443,
// so the call lasts as long as the validation). certd returns the certificate it holds
// when it has one for the name.
func (c Client) Issue(ctx context.Context, name string, acme bool) (Cert, error) {
	req := &certv1.IssueCertificateRequest{DnsNames: []string{name}, Issuer: certv1.Issuer_ISSUER_LOCAL}
	if acme {
		req.Issuer = certv1.Issuer_ISSUER_ACME
	}
	var out Cert
	err := c.call(func(conn *grpc.ClientConn) error {
		resp, err := certv1.NewCertificateServiceClient(conn).IssueCertificate(ctx, req)
		if err != nil {
			return err
		}
		out, err = parse(resp.GetCertificate())
		return err
	})
	if err != nil {
		return Cert{}, fmt.Errorf("certificate for %s: %w", name, err)
	}
	return out, nil
}

// Roots returns the local root CA certificates (PEM) that devices may trust.
func (c Client) Roots(ctx context.Context) ([][]byte, error) {
	var roots [][]byte
	err := c.call(func(conn *grpc.ClientConn) error {
		resp, err := certv1.NewCertificateServiceClient(conn).GetRoot(ctx, &certv1.GetRootRequest{})
		roots = resp.GetRootsPem()
		return err
	})
	return roots, err
}

// Watch calls changed with every certificate certd issues, renews or re-issues from
// now on, until ctx ends; when the stream breaks (certd restarted), it connects again,
// after a pause that doubles from 100 ms to 5 s, and then replays the existing
// certificates so that nothing renewed meanwhile is missed.
func (c Client) Watch(ctx context.Context, changed func(Cert)) {
	wait := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		err := c.call(func(conn *grpc.ClientConn) error {
			stream, err := certv1.NewCertificateServiceClient(conn).WatchCertificates(ctx, &certv1.WatchCertificatesRequest{IncludeKey: true, IncludeExisting: !first})
			if err != nil {
				return err
			}
			for {
				ev, err := stream.Recv()
				if err != nil {
					return err
				}
				wait = 100 * time.Millisecond
				first = false
				switch ev.GetEvent() {
				case certv1.Event_EVENT_EXISTING, certv1.Event_EVENT_ISSUED, certv1.Event_EVENT_RENEWED, certv1.Event_EVENT_REISSUED:
					cert, err := parse(ev.GetCertificate())
					if err != nil {
						c.log().Warn("certd sent a certificate netd cannot use", "id", ev.GetCertificate().GetId(), "error", err)
						continue
					}
					changed(cert)
				}
			}
		})
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, io.EOF) {
			c.log().Debug("certificate watch ended; connecting again", "error", err, "in", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func (c Client) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

func (c Client) call(f func(*grpc.ClientConn) error) error {
	if c.Socket == "" {
		return fmt.Errorf("certd is not configured (netd's --certd-socket): %w", errdefs.ErrFailedPrecondition)
	}
	conn, err := dial.Unix(c.Socket)
	if err != nil {
		return fmt.Errorf("certd: %w: %w", err, errdefs.ErrUnavailable)
	}
	defer conn.Close()
	return errdefs.FromGRPC(f(conn))
}

func parse(pc *certv1.Certificate) (Cert, error) {
	if len(pc.GetKeyPem()) == 0 {
		return Cert{}, fmt.Errorf("certificate %s came without its key", pc.GetId())
	}
	kp, err := tls.X509KeyPair(pc.GetChainPem(), pc.GetKeyPem())
	if err != nil {
		return Cert{}, fmt.Errorf("certificate %s: %w", pc.GetId(), err)
	}
	return Cert{ID: pc.GetId(), Serial: pc.GetSerial(), TLS: &kp}, nil
}
