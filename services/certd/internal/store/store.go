// Package store keeps certd's state: the CA, the certificates and the ACME accounts. The
// Storage interface is small (like certmagic's) so that another backend can stand in for
// the file system one.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"hearth.dev/internal/atomicfile"
	"hearth.dev/internal/errdefs"
)

// Storage holds values under slash-separated keys such as "ca/3f2a/root.key". Every value
// may be secret: implementations keep all of them readable by certd only.
type Storage interface {
	// Store replaces the value at key atomically: readers see the old or the new value.
	Store(key string, value []byte) error
	// Load returns the value at key, or an error wrapping errdefs.ErrNotFound.
	Load(key string) ([]byte, error)
	// Delete removes the value at key or, for a prefix, everything below it. A missing
	// key is not an error.
	Delete(key string) error
	// List returns the keys directly below prefix ("" for the top), sorted: values and
	// prefixes alike, by their full key.
	List(prefix string) ([]string, error)
}

// File and directory modes of FS: certd's state is its keys.
const (
	FileMode = 0o600
	DirMode  = 0o700
)

// FS stores values as files below a directory, written through atomicfile.
type FS struct {
	Dir string
}

var _ Storage = (*FS)(nil)

// NewFS returns storage below dir, making dir (0700) if it is missing.
func NewFS(dir string) (*FS, error) {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, DirMode); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	return &FS{Dir: dir}, nil
}

// CheckKey reports whether key is a relative, clean, slash-separated path that stays
// below the storage root.
func CheckKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") || strings.Contains(key, "\\") {
		return fmt.Errorf("storage key %q: want a relative path like \"certs/web.local/cert.pem\": %w", key, errdefs.ErrInvalidArgument)
	}
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." || strings.HasPrefix(part, ".") {
			return fmt.Errorf("storage key %q: empty, dot or hidden path element %q: %w", key, part, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func (s *FS) path(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.Dir, filepath.FromSlash(key)), nil
}

// Store implements Storage.
func (s *FS) Store(key string, value []byte) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := s.mkdirs(filepath.Dir(p)); err != nil {
		return err
	}
	return atomicfile.Write(p, value, FileMode)
}

// mkdirs makes the directories from s.Dir down to dir, each 0700.
func (s *FS) mkdirs(dir string) error {
	rel, err := filepath.Rel(s.Dir, dir)
	if err != nil {
		return err
	}
	cur := s.Dir
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if part == "." {
			continue
		}
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, DirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("state directory %s: %w", cur, err)
		}
	}
	return nil
}

// Load implements Storage.
func (s *FS) Load(key string) ([]byte, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", key, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", key, err)
	}
	return b, nil
}

// Delete implements Storage.
func (s *FS) Delete(key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// List implements Storage.
func (s *FS) List(prefix string) ([]string, error) {
	dir := s.Dir
	if prefix != "" {
		p, err := s.path(prefix)
		if err != nil {
			return nil, err
		}
		dir = p
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	var keys []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // atomicfile's temporary files
		}
		if prefix == "" {
			keys = append(keys, e.Name())
		} else {
			keys = append(keys, prefix+"/"+e.Name())
		}
	}
	sort.Strings(keys)
	return keys, nil
}
