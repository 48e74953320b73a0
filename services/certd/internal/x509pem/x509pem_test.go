package x509pem

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "t"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	certs, err := ParseCerts(append([]byte("junk\n"), EncodeCerts(c, c)...))
	if err != nil || len(certs) != 2 || certs[1].SerialNumber.Int64() != 7 {
		t.Fatalf("ParseCerts = %v, %v", certs, err)
	}
	kp, err := EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParseKey(append(EncodeCerts(c), kp...))
	if err != nil || !key.Equal(k2.(*ecdsa.PrivateKey)) {
		t.Fatalf("ParseKey = %v, %v", k2, err)
	}
	if _, err := ParseCerts([]byte("nothing")); err == nil {
		t.Error("ParseCerts accepted no certificate")
	}
	if _, err := ParseKey(EncodeCerts(c)); err == nil {
		t.Error("ParseKey accepted no key")
	}
}
