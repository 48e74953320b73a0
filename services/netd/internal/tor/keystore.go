package tor

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"hearth.dev/internal/atomicfile"
	"hearth.dev/internal/errdefs"
)

// KeyStore keeps one key per service name in a directory (mode 0700), as "<name>.key"
// files (mode 0600, PKCS #8 PEM), each written atomically and never replaced: a key is
// made once, so its address never changes.
type KeyStore struct {
	dir string
	mu  sync.Mutex
}

// OpenKeyStore opens the store in dir, making it (and tightening it to 0700) if needed.
func OpenKeyStore(dir string) (*KeyStore, error) {
	if dir == "" {
		return nil, fmt.Errorf("onion key store: no directory given: %w", errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("onion key store: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("onion key store: %w", err)
	}
	return &KeyStore{dir: dir}, nil
}

// Dir is the store's directory.
func (s *KeyStore) Dir() string { return s.dir }

// Path is the file that holds name's key.
func (s *KeyStore) Path(name string) string { return filepath.Join(s.dir, name+".key") }

// checkName accepts 1 to 128 characters of [a-zA-Z0-9._-], not starting with a dot: a
// file name of its own, whatever netd builds names from.
func checkName(name string) error {
	ok := name != "" && len(name) <= 128 && name[0] != '.'
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("onion key name %q: give 1 to 128 letters, digits, '.', '_' or '-', not starting with '.': %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Load returns name's key; an absent key is ErrNotFound. A key file that others could
// read is tightened to 0600.
func (s *KeyStore) Load(name string) (Key, error) {
	if err := checkName(name); err != nil {
		return Key{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load(name)
}

func (s *KeyStore) load(name string) (Key, error) {
	path := s.Path(name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Key{}, fmt.Errorf("onion key %q: none in %s: %w", name, s.dir, errdefs.ErrNotFound)
	}
	if err != nil {
		return Key{}, fmt.Errorf("onion key %q: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Key{}, fmt.Errorf("onion key %q: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return Key{}, fmt.Errorf("onion key %q: %s is not a regular file: %w", name, path, errdefs.ErrFailedPrecondition)
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := f.Chmod(0o600); err != nil {
			return Key{}, fmt.Errorf("onion key %q: tighten mode: %w", name, err)
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return Key{}, fmt.Errorf("onion key %q: %w", name, err)
	}
	k, err := ParseKeyPEM(data)
	if err != nil {
		return Key{}, fmt.Errorf("onion key %q in %s: %w", name, path, err)
	}
	return k, nil
}

// LoadOrCreate returns name's key, making and storing a new one when there is none;
// created says which.
func (s *KeyStore) LoadOrCreate(name string) (k Key, created bool, err error) {
	if err := checkName(name); err != nil {
		return Key{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err = s.load(name)
	if err == nil || !errors.Is(err, errdefs.ErrNotFound) {
		return k, false, err
	}
	if k, err = GenerateKey(); err != nil {
		return Key{}, false, err
	}
	data, err := k.MarshalPEM()
	if err != nil {
		return Key{}, false, err
	}
	if err := atomicfile.Write(s.Path(name), data, 0o600); err != nil {
		return Key{}, false, fmt.Errorf("onion key %q: %w", name, err)
	}
	return k, true, nil
}

// Delete forgets name's key (its address is gone for good); an absent key is no error.
func (s *KeyStore) Delete(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(s.Path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("onion key %q: %w", name, err)
	}
	return nil
}
