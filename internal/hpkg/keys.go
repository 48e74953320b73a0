package hpkg

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"hearth.dev/internal/errdefs"
)

// KeyType is the first word of a public key line.
const KeyType = "hearth-ed25519"

// privatePEMType is the PEM block type of a private key file, which holds the 32-byte seed.
const privatePEMType = "HEARTH PRIVATE KEY"

// PublicKey is a signer's public key with a comment (who it is; not signed, not checked).
type PublicKey struct {
	Key     ed25519.PublicKey
	Comment string
}

// KeyID is a key's fingerprint: the first 16 bytes of the SHA-256 of the raw 32-byte
// key, in lower-case hex.
func KeyID(key ed25519.PublicKey) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:16])
}

// ID returns the key's fingerprint.
func (k PublicKey) ID() string { return KeyID(k.Key) }

// String returns the key's line: "hearth-ed25519 <base64> <comment>".
func (k PublicKey) String() string {
	s := KeyType + " " + base64.StdEncoding.EncodeToString(k.Key)
	if c := cleanComment(k.Comment); c != "" {
		s += " " + c
	}
	return s
}

// MarshalText is the key's line followed by a newline: the content of a .pub file.
func (k PublicKey) MarshalText() ([]byte, error) { return []byte(k.String() + "\n"), nil }

func cleanComment(c string) string {
	return strings.Join(strings.Fields(c), " ")
}

// ParsePublicKey reads a public key line (a .pub file's content; a trailing newline is fine).
func ParsePublicKey(data []byte) (PublicKey, error) {
	line := strings.TrimSpace(string(data))
	if strings.ContainsAny(line, "\n\r") {
		return PublicKey{}, fmt.Errorf("public key: more than one line: %w", errdefs.ErrInvalidArgument)
	}
	f := strings.SplitN(line, " ", 3)
	if len(f) < 2 || f[0] != KeyType {
		return PublicKey{}, fmt.Errorf("public key: want %q followed by the key in base64: %w", KeyType+" ...", errdefs.ErrInvalidArgument)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(f[1])
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("public key: not a base64 ed25519 key of %d bytes: %w", ed25519.PublicKeySize, errdefs.ErrInvalidArgument)
	}
	k := PublicKey{Key: ed25519.PublicKey(raw)}
	if len(f) == 3 {
		k.Comment = cleanComment(f[2])
	}
	return k, nil
}

// GenerateKey makes a new signing key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// MarshalPrivateKey encodes a private key as PEM ("HEARTH PRIVATE KEY", the seed).
func MarshalPrivateKey(priv ed25519.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: privatePEMType, Bytes: priv.Seed()})
}

// ParsePrivateKey reads a private key file's content.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	b, rest := pem.Decode(data)
	if b == nil || b.Type != privatePEMType || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("private key: want one PEM block %q (made by hearthctl keys generate): %w", privatePEMType, errdefs.ErrInvalidArgument)
	}
	if len(b.Bytes) != ed25519.SeedSize {
		return nil, fmt.Errorf("private key: the seed is %d bytes, want %d: %w", len(b.Bytes), ed25519.SeedSize, errdefs.ErrInvalidArgument)
	}
	return ed25519.NewKeyFromSeed(b.Bytes), nil
}

// WriteKeyPair writes priv to prefix+".key" (mode 0600) and its public key with comment
// to prefix+".pub" (0644). It refuses to replace either file.
func WriteKeyPair(prefix string, priv ed25519.PrivateKey, comment string) (PublicKey, error) {
	pub := PublicKey{Key: priv.Public().(ed25519.PublicKey), Comment: comment}
	for _, p := range []string{prefix + ".key", prefix + ".pub"} {
		if _, err := os.Lstat(p); err == nil {
			return PublicKey{}, fmt.Errorf("%s exists; remove it or choose another name: %w", p, errdefs.ErrAlreadyExists)
		}
	}
	if err := writeNew(prefix+".key", MarshalPrivateKey(priv), 0o600); err != nil {
		return PublicKey{}, err
	}
	line, _ := pub.MarshalText()
	if err := writeNew(prefix+".pub", line, 0o644); err != nil {
		os.Remove(prefix + ".key")
		return PublicKey{}, err
	}
	return pub, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists; remove it or choose another name: %w", path, errdefs.ErrAlreadyExists)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// ReadPrivateKey reads a private key file, refusing one that others than its owner may
// read.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s: mode %v lets others read it; run chmod 600 %s: %w", path, fi.Mode().Perm(), path, errdefs.ErrPermissionDenied)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return priv, nil
}

// ReadPublicKey reads a .pub file.
func ReadPublicKey(path string) (PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return PublicKey{}, err
	}
	k, err := ParsePublicKey(data)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
