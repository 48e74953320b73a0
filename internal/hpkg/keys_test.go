package hpkg

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hearth.dev/internal/errdefs"
)

func TestKeyPairFiles(t *testing.T) {
	dir := t.TempDir()
	priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(dir, "dev")
	pub, err := WriteKeyPair(prefix, priv, "  Ada  <ada@example.org> ")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{"dev.key", 0o600}, {"dev.pub", 0o644}} {
		fi, err := os.Stat(filepath.Join(dir, f.name))
		if err != nil || fi.Mode().Perm() != f.mode {
			t.Errorf("%s: %v %v, want mode %v", f.name, fi.Mode(), err, f.mode)
		}
	}
	line, _ := os.ReadFile(prefix + ".pub")
	if !strings.HasPrefix(string(line), KeyType+" ") || !strings.HasSuffix(string(line), " Ada <ada@example.org>\n") {
		t.Errorf("public key line %q", line)
	}
	back, err := ReadPrivateKey(prefix + ".key")
	if err != nil || !back.Equal(priv) {
		t.Fatalf("ReadPrivateKey: %v", err)
	}
	pk, err := ReadPublicKey(prefix + ".pub")
	if err != nil || !pk.Key.Equal(pub.Key) || pk.Comment != "Ada <ada@example.org>" || pk.ID() != KeyID(priv.Public().(ed25519.PublicKey)) {
		t.Fatalf("ReadPublicKey: %+v %v", pk, err)
	}
	if len(pk.ID()) != 32 {
		t.Errorf("key id %q", pk.ID())
	}
	if _, err := WriteKeyPair(prefix, priv, ""); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second WriteKeyPair: %v, want AlreadyExists", err)
	}
	os.Chmod(prefix+".key", 0o640)
	if _, err := ReadPrivateKey(prefix + ".key"); !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable key: %v", err)
	}
}

func TestParseKeysRefuses(t *testing.T) {
	for _, tc := range []struct{ name, pub string }{
		{"empty", ""},
		{"other type", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"},
		{"short", KeyType + " AAAA"},
		{"not base64", KeyType + " !!!!"},
		{"two lines", KeyType + " " + strings.Repeat("A", 43) + "=\n" + KeyType + " x"},
	} {
		if _, err := ParsePublicKey([]byte(tc.pub)); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: ParsePublicKey: %v", tc.name, err)
		}
	}
	for _, tc := range []struct{ name, key string }{
		{"empty", ""},
		{"other block", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
		{"short seed", "-----BEGIN HEARTH PRIVATE KEY-----\nAAAA\n-----END HEARTH PRIVATE KEY-----\n"},
	} {
		if _, err := ParsePrivateKey([]byte(tc.key)); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: ParsePrivateKey: %v", tc.name, err)
		}
	}
}

func TestTrustStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "trust")
	s, err := OpenTrustStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var keys []PublicKey
	for i := range 3 {
		priv, _ := GenerateKey()
		keys = append(keys, PublicKey{Key: priv.Public().(ed25519.PublicKey), Comment: "dev " + string(rune('a'+i))})
	}
	if ok, err := s.IsTrusted(keys[0].Key); ok || err != nil {
		t.Fatalf("empty store trusts: %v %v", ok, err)
	}
	for _, k := range keys[:2] {
		if err := s.Trust(k); err != nil {
			t.Fatal(err)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("store dir mode %v", fi.Mode())
	}
	fi, err := os.Stat(filepath.Join(dir, keys[0].ID()+".pub"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	for i, want := range []bool{true, true, false} {
		if ok, err := s.IsTrusted(keys[i].Key); ok != want || err != nil {
			t.Errorf("IsTrusted(key %d) = %v %v, want %v", i, ok, err, want)
		}
	}
	list, err := s.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("List: %v %v", list, err)
	}
	got, err := s.Untrust(keys[0].ID()[:8])
	if err != nil || got.ID() != keys[0].ID() || got.Comment != "dev a" {
		t.Fatalf("Untrust by prefix: %+v %v", got, err)
	}
	if ok, _ := s.IsTrusted(keys[0].Key); ok {
		t.Error("untrusted key still trusted")
	}
	if _, err := s.Untrust(keys[0].ID()); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Untrust of an absent key: %v", err)
	}
	// A file named for one key but holding another is not trusted for either.
	os.WriteFile(filepath.Join(dir, keys[2].ID()+".pub"), []byte(keys[1].String()+"\n"), 0o600)
	if ok, _ := s.IsTrusted(keys[2].Key); ok {
		t.Error("a misnamed key file made its name trusted")
	}
	if _, err := s.List(); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("List over a misnamed file: %v", err)
	}
}
