package tor

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hearth.dev/internal/errdefs"
)

// RFC 8032's test 1 key. The address and the expanded key were computed apart from this
// code, with Python's hashlib (sha3_256, sha512) following rend-spec-v3 and ref10's
// clamping; the address also appears in tor's own tests (test_hs_common.c).
const (
	rfcSeed     = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
	rfcPublic   = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
	rfcID       = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid"
	rfcExpanded = "MHyDhk8oM8tCei7xwAoBPP3/J2jZgMCjpSDwBpBN6U+bTwr+KAt0aneGhOdUQlAgV7dHOgPwj5b1o46Sh+Afjw=="
)

func rfcKey(t *testing.T) Key {
	t.Helper()
	seed, _ := hex.DecodeString(rfcSeed)
	k, err := KeyFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKnownKeyDerivations(t *testing.T) {
	k := rfcKey(t)
	if got := hex.EncodeToString(k.PublicKey()); got != rfcPublic {
		t.Fatalf("public key %s, want %s", got, rfcPublic)
	}
	if got := k.ServiceID(); got != rfcID {
		t.Errorf("service id %s, want %s", got, rfcID)
	}
	if got := k.Address(); got != rfcID+".onion" {
		t.Errorf("address %s", got)
	}
	if got := base64.StdEncoding.EncodeToString(k.ExpandedSecretKey()); got != rfcExpanded {
		t.Errorf("expanded key %s, want %s", got, rfcExpanded)
	}
	if got := k.ControlBlob(); got != "ED25519-V3:"+rfcExpanded {
		t.Errorf("control blob %s", got)
	}
	f := k.TorSecretKeyFile()
	if len(f) != 96 || !bytes.HasPrefix(f, []byte("== ed25519v1-secret: type0 ==\x00\x00\x00")) || base64.StdEncoding.EncodeToString(f[32:]) != rfcExpanded {
		t.Errorf("tor secret key file %q", f)
	}
	if _, err := KeyFromSeed(make([]byte, 31)); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a 31-byte seed: %v", err)
	}
}

func TestParseServiceID(t *testing.T) {
	k := rfcKey(t)
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"id", rfcID, true},
		{"address", rfcID + ".onion", true},
		{"upper case", strings.ToUpper(rfcID) + ".ONION", true},
		{"one character off", rfcID[:55] + "e", false},
		{"checksum off", rfcID[:52] + "aaad", false},
		{"short", rfcID[:55], false},
		{"v2 length", "expyuzz4wqqyqhjn", false},
		{"not base32", rfcID[:54] + "01", false},
		{"version 2", ServiceID(k.PublicKey())[:55] + "c", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := ParseServiceID(tc.in)
			if tc.ok {
				if err != nil || !bytes.Equal(pub, k.PublicKey()) {
					t.Fatalf("ParseServiceID(%q) = %x, %v", tc.in, pub, err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("ParseServiceID(%q) = %v, want invalid argument", tc.in, err)
			}
		})
	}
}

func TestGeneratedKeysRoundTrip(t *testing.T) {
	for range 20 {
		k, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		pem, err := k.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseKeyPEM(pem)
		if err != nil {
			t.Fatal(err)
		}
		if back.ServiceID() != k.ServiceID() || !bytes.Equal(back.ExpandedSecretKey(), k.ExpandedSecretKey()) {
			t.Fatal("key changed through PEM")
		}
		if pub, err := ParseServiceID(k.Address()); err != nil || !bytes.Equal(pub, k.PublicKey()) {
			t.Fatalf("address %s does not parse back: %v", k.Address(), err)
		}
	}
	for _, bad := range []string{"", "junk", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		if _, err := ParseKeyPEM([]byte(bad)); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseKeyPEM(%q) = %v", bad, err)
		}
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestKeyStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := OpenKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("store directory mode %o, want 700", m)
	}
	if _, err := s.Load("web"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Load of no key: %v", err)
	}
	k, created, err := s.LoadOrCreate("web")
	if err != nil || !created {
		t.Fatalf("LoadOrCreate: %v, created %v", err, created)
	}
	if m := mode(t, s.Path("web")); m != 0o600 {
		t.Errorf("key file mode %o, want 600", m)
	}
	again, created, err := s.LoadOrCreate("web")
	if err != nil || created || again.ServiceID() != k.ServiceID() {
		t.Fatalf("second LoadOrCreate: %v, created %v, %s vs %s", err, created, again.Address(), k.Address())
	}
	// A reopened store (netd restarted) gives the same key.
	s2, err := OpenKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := s2.Load("web"); err != nil || back.ServiceID() != k.ServiceID() {
		t.Fatalf("reopened Load: %v", err)
	}
	// A key file others can read is tightened.
	os.Chmod(s.Path("web"), 0o644)
	if _, err := s.Load("web"); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, s.Path("web")); m != 0o600 {
		t.Errorf("loose key file left at %o", m)
	}
	// No temporary files stay behind.
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("store holds %d files, want 1", len(ents))
	}
	if err := os.WriteFile(s.Path("broken"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LoadOrCreate("broken"); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "broken") {
		t.Errorf("a broken key file: %v", err)
	}
	if b, _ := os.ReadFile(s.Path("broken")); string(b) != "junk" {
		t.Error("a broken key file was replaced")
	}
	if err := s.Delete("web"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("web"); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if _, err := s.Load("web"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Load after Delete: %v", err)
	}
	for _, name := range []string{"", ".hidden", "../x", "a/b", "sp ace", strings.Repeat("a", 129)} {
		if _, _, err := s.LoadOrCreate(name); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("LoadOrCreate(%q) = %v", name, err)
		}
	}
	if _, err := OpenKeyStore(""); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("OpenKeyStore(\"\") = %v", err)
	}
}
