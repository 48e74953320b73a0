// Package certdclient is containerd-lite's side of certd: certificates for packages,
// asked for with the package as the owner. When certd's socket is absent, the calls
// fail with Unavailable and say so; certd's own errors come back with certd's code and
// words (errdefs.FromGRPC).
package certdclient

import (
	"context"
	"errors"
	"fmt"
	"os"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/errdefs"
	certv1 "hearth.dev/proto/hearth/cert/v1"
)

// Client calls certd on its socket, connecting per call (certd may come and go).
type Client struct {
	Socket string
}

// ErrNoCertd says certd is not running (its socket is absent).
var ErrNoCertd = fmt.Errorf("certd is not running: start it for certificates: %w", errdefs.ErrUnavailable)

func (c Client) call(f func(certv1.CertificateServiceClient) error) error {
	if c.Socket == "" {
		return ErrNoCertd
	}
	if _, err := os.Stat(c.Socket); errors.Is(err, os.ErrNotExist) {
		return ErrNoCertd
	}
	conn, err := dial.Unix(c.Socket)
	if err != nil {
		return fmt.Errorf("certd: %w: %w", err, errdefs.ErrUnavailable)
	}
	defer conn.Close()
	return errdefs.FromGRPC(f(certv1.NewCertificateServiceClient(conn)))
}

// Issue asks certd for a certificate (the cached one while it is fresh), with its key.
func (c Client) Issue(ctx context.Context, req *certv1.IssueCertificateRequest) (*certv1.Certificate, error) {
	var out *certv1.Certificate
	err := c.call(func(cl certv1.CertificateServiceClient) error {
		resp, err := cl.IssueCertificate(ctx, req)
		out = resp.GetCertificate()
		return err
	})
	return out, err
}

// Roots returns the local root CA certificates (PEM), the current one first.
func (c Client) Roots(ctx context.Context) ([][]byte, error) {
	var out [][]byte
	err := c.call(func(cl certv1.CertificateServiceClient) error {
		resp, err := cl.GetRoot(ctx, &certv1.GetRootRequest{})
		out = resp.GetRootsPem()
		return err
	})
	return out, err
}
