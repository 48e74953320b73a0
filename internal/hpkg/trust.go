package hpkg

import (
	"crypto/ed25519"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"hearth.dev/internal/atomicfile"
	"hearth.dev/internal/errdefs"
)

// Trust decides whether packages signed by a key may be installed.
type Trust interface {
	IsTrusted(key ed25519.PublicKey) (bool, error)
}

// TrustStore is a Trust kept in a directory: one file <key id>.pub per trusted key,
// holding the key's line, written atomically (directory 0700, files 0600).
type TrustStore struct{ dir string }

var _ Trust = (*TrustStore)(nil)

var keyFileRE = regexp.MustCompile(`^[0-9a-f]{32}\.pub$`)

// OpenTrustStore opens the store in dir, making the directory when it is missing.
func OpenTrustStore(dir string) (*TrustStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("trust store: %w", err)
	}
	return &TrustStore{dir: dir}, nil
}

func (s *TrustStore) file(id string) string { return filepath.Join(s.dir, id+".pub") }

// Trust adds key (again, with its new comment, when it is already trusted).
func (s *TrustStore) Trust(key PublicKey) error {
	if len(key.Key) != ed25519.PublicKeySize {
		return fmt.Errorf("trust: not an ed25519 public key: %w", errdefs.ErrInvalidArgument)
	}
	line, _ := key.MarshalText()
	if err := atomicfile.Write(s.file(key.ID()), line, 0o600); err != nil {
		return fmt.Errorf("trust key %s: %w", key.ID(), err)
	}
	return nil
}

// Untrust removes the key with this id (a unique prefix of it is enough) and returns it.
func (s *TrustStore) Untrust(id string) (PublicKey, error) {
	k, err := s.Get(id)
	if err != nil {
		return PublicKey{}, err
	}
	if err := os.Remove(s.file(k.ID())); err != nil {
		return PublicKey{}, fmt.Errorf("untrust key %s: %w", k.ID(), err)
	}
	if d, err := os.Open(s.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return k, nil
}

// Get returns the trusted key with this id, or with an id this unique prefix starts.
func (s *TrustStore) Get(id string) (PublicKey, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	if id == "" {
		return PublicKey{}, fmt.Errorf("no key id given: %w", errdefs.ErrInvalidArgument)
	}
	keys, err := s.List()
	if err != nil {
		return PublicKey{}, err
	}
	var found []PublicKey
	for _, k := range keys {
		if k.ID() == id {
			return k, nil
		}
		if strings.HasPrefix(k.ID(), id) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return PublicKey{}, fmt.Errorf("no trusted key %s: %w", id, errdefs.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return PublicKey{}, fmt.Errorf("%d trusted keys start with %s; give more of the id: %w", len(found), id, errdefs.ErrInvalidArgument)
}

// List returns the trusted keys, by id. A file that is not a key, or whose name is not
// its key's id, is an error: the store is the host's and nobody else writes it.
func (s *TrustStore) List() ([]PublicKey, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("trust store: %w", err)
	}
	var keys []PublicKey
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), ".tmp") {
			continue // an interrupted write
		}
		if !keyFileRE.MatchString(e.Name()) || !e.Type().IsRegular() {
			return nil, fmt.Errorf("trust store %s: %s is not a key file: %w", s.dir, e.Name(), errdefs.ErrFailedPrecondition)
		}
		k, err := ReadPublicKey(filepath.Join(s.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("trust store: %w", err)
		}
		if k.ID()+".pub" != e.Name() {
			return nil, fmt.Errorf("trust store %s: %s holds key %s: %w", s.dir, e.Name(), k.ID(), errdefs.ErrFailedPrecondition)
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ID() < keys[j].ID() })
	return keys, nil
}

// IsTrusted says whether key is in the store: its file exists and holds this very key.
func (s *TrustStore) IsTrusted(key ed25519.PublicKey) (bool, error) {
	if len(key) != ed25519.PublicKeySize {
		return false, nil
	}
	k, err := ReadPublicKey(s.file(KeyID(key)))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("trust store: %w", err)
	}
	return subtle.ConstantTimeCompare(k.Key, key) == 1, nil
}

// TrustKeys is a fixed Trust: the keys given (for tests and one-off checks).
type TrustKeys []ed25519.PublicKey

// IsTrusted says whether key is one of the keys.
func (t TrustKeys) IsTrusted(key ed25519.PublicKey) (bool, error) {
	for _, k := range t {
		if k.Equal(key) {
			return true, nil
		}
	}
	return false, nil
}
