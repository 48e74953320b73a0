// Package tor gives Hearth's interfaces onion (v3) addresses through tor's control port.
//
// Three parts:
//   - Keys: an ed25519 key per onion service, made once and kept in a directory of netd's
//     (KeyStore, files 0600); the .onion address is derived here from the public key
//     (rend-spec-v3), so it is known without asking tor.
//   - Controller: one control connection (TCP or Unix socket) that adds the wanted
//     services with ADD_ONION (our key, Flags=DiscardPK) and removes them with
//     DEL_ONION. The services are not detached: they live as long as the connection, so
//     a netd that dies leaves none behind. When the connection drops (tor restarted),
//     the controller reconnects with backoff and adds every wanted service again.
//   - Managed: a tor that netd starts as its child, with its own directory and torrc
//     (control port on a Unix socket there, cookie authentication, no SOCKS port by
//     default), stopped by its pid.
package tor

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha3"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"

	"hearth.dev/internal/errdefs"
)

// Key is the ed25519 key of one onion service.
type Key struct {
	priv ed25519.PrivateKey
}

// GenerateKey makes a new random key.
func GenerateKey() (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generate onion service key: %w", err)
	}
	return Key{priv: priv}, nil
}

// KeyFromSeed returns the key of a 32-byte ed25519 seed (RFC 8032's private key).
func KeyFromSeed(seed []byte) (Key, error) {
	if len(seed) != ed25519.SeedSize {
		return Key{}, fmt.Errorf("onion service key: seed of %d bytes, want %d: %w", len(seed), ed25519.SeedSize, errdefs.ErrInvalidArgument)
	}
	return Key{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// IsZero reports whether k holds no key.
func (k Key) IsZero() bool { return len(k.priv) == 0 }

// PublicKey is the service's identity key.
func (k Key) PublicKey() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

// ServiceID is the address without ".onion": 56 lowercase base32 characters, as tor's
// ADD_ONION answers in ServiceID.
func (k Key) ServiceID() string { return ServiceID(k.PublicKey()) }

// Address is the service's onion address, "<ServiceID>.onion".
func (k Key) Address() string { return k.ServiceID() + ".onion" }

// ExpandedSecretKey is tor's form of the secret key: SHA-512 of the seed, whose first
// half is clamped into the scalar (ed25519 ref10's expanded key, 64 bytes).
func (k Key) ExpandedSecretKey() []byte {
	h := sha512.Sum512(k.priv.Seed())
	h[0] &= 248
	h[31] &= 127
	h[31] |= 64
	return h[:]
}

// ControlBlob is the key as ADD_ONION takes it: "ED25519-V3:" and the base64 of the
// expanded secret key.
func (k Key) ControlBlob() string {
	return "ED25519-V3:" + base64.StdEncoding.EncodeToString(k.ExpandedSecretKey())
}

// TorSecretKeyFile is the key in the format of tor's hs_ed25519_secret_key (a
// HiddenServiceDir's key): a 32-byte header and the expanded secret key. It lets a key
// move to a tor configured with HiddenServiceDir, keeping its address.
func (k Key) TorSecretKeyFile() []byte {
	header := make([]byte, 32)
	copy(header, "== ed25519v1-secret: type0 ==")
	return append(header, k.ExpandedSecretKey()...)
}

const keyPEMType = "PRIVATE KEY"

// MarshalPEM encodes the key as PKCS #8 in PEM (the seed; readable by openssl).
func (k Key) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, fmt.Errorf("encode onion service key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: keyPEMType, Bytes: der}), nil
}

// ParseKeyPEM decodes a key written by MarshalPEM.
func ParseKeyPEM(data []byte) (Key, error) {
	b, rest := pem.Decode(data)
	if b == nil || b.Type != keyPEMType || len(bytes.TrimSpace(rest)) != 0 {
		return Key{}, fmt.Errorf("onion service key: not one PEM %q block: %w", keyPEMType, errdefs.ErrInvalidArgument)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("onion service key: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	priv, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return Key{}, fmt.Errorf("onion service key: a %T, want ed25519: %w", parsed, errdefs.ErrInvalidArgument)
	}
	return Key{priv: priv}, nil
}

const onionVersion = 3

var onionBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// ServiceID derives a v3 onion service id from its public key (rend-spec-v3, "Encoding
// onion addresses"): base32(PUBKEY | CHECKSUM | VERSION), lowercase, where CHECKSUM is
// the first two bytes of SHA3-256(".onion checksum" | PUBKEY | VERSION) and VERSION is 3.
func ServiceID(pub ed25519.PublicKey) string {
	b := make([]byte, 0, ed25519.PublicKeySize+3)
	b = append(b, pub...)
	b = append(b, onionChecksum(pub)...)
	b = append(b, onionVersion)
	return strings.ToLower(onionBase32.EncodeToString(b))
}

func onionChecksum(pub ed25519.PublicKey) []byte {
	h := sha3.New256()
	h.Write([]byte(".onion checksum"))
	h.Write(pub)
	h.Write([]byte{onionVersion})
	return h.Sum(nil)[:2]
}

// ParseServiceID checks a v3 service id (with or without ".onion", any case) and returns
// its public key.
func ParseServiceID(s string) (ed25519.PublicKey, error) {
	id := strings.TrimSuffix(strings.ToLower(s), ".onion")
	bad := func(why string) error {
		return fmt.Errorf("onion address %q: %s: %w", s, why, errdefs.ErrInvalidArgument)
	}
	if len(id) != 56 {
		return nil, bad("not 56 base32 characters (a v3 address)")
	}
	raw, err := onionBase32.DecodeString(strings.ToUpper(id))
	if err != nil {
		return nil, bad("not base32")
	}
	pub := ed25519.PublicKey(raw[:32])
	if raw[34] != onionVersion {
		return nil, bad(fmt.Sprintf("version %d, want 3", raw[34]))
	}
	if !bytes.Equal(raw[32:34], onionChecksum(pub)) {
		return nil, bad("wrong checksum")
	}
	return pub, nil
}
