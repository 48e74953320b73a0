package leaf

import (
	"crypto/x509"
	"testing"

	"hearth.dev/services/certd/internal/x509pem"
)

func mustCerts(t *testing.T, pem []byte) []*x509.Certificate {
	t.Helper()
	c, err := x509pem.ParseCerts(pem)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
