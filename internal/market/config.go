package market

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"hearth.dev/internal/atomicfile"
	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/hpkg"
)

// Marketplace is one marketplace a user added.
type Marketplace struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Key is the public key line (hearth-ed25519 ...) that must sign the index.
	Key string `json:"key,omitempty"`
	// AllowUnsigned: the user chose to read this marketplace's index unsigned (Key empty).
	AllowUnsigned bool `json:"allow_unsigned,omitempty"`
}

// PublicKey parses the pinned key.
func (m Marketplace) PublicKey() (hpkg.PublicKey, error) {
	k, err := hpkg.ParsePublicKey([]byte(m.Key))
	if err != nil {
		return hpkg.PublicKey{}, fmt.Errorf("marketplace %s: its pinned key: %w", m.Name, err)
	}
	return k, nil
}

// List is the client's list of marketplaces, kept in one JSON file (mode 0600).
type List struct {
	Path         string        `json:"-"`
	Marketplaces []Marketplace `json:"marketplaces"`
}

// DefaultListPath is $XDG_CONFIG_HOME/hearth/markets.json (~/.config when unset).
func DefaultListPath() (string, error) {
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no config directory (set XDG_CONFIG_HOME or HOME): %w", err)
	}
	return filepath.Join(d, "hearth", "markets.json"), nil
}

// DefaultCacheDir is $XDG_CACHE_HOME/hearth/packages (~/.cache when unset).
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (set XDG_CACHE_HOME or HOME): %w", err)
	}
	return filepath.Join(d, "hearth", "packages"), nil
}

// LoadList reads the list at path; a missing file is an empty list.
func LoadList(path string) (*List, error) {
	l := &List{Path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("%s: %v; fix or remove the file: %w", path, err, errdefs.ErrInvalidArgument)
	}
	return l, nil
}

// Save writes the list (0600, its directory 0700).
func (l *List) Save() error {
	if err := os.MkdirAll(filepath.Dir(l.Path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(l.Path, append(b, '\n'), 0o600)
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Add adds m, refusing a bad name or URL, a name already there, and a marketplace with
// neither a key nor AllowUnsigned.
func (l *List) Add(m Marketplace) error {
	if !nameRE.MatchString(m.Name) {
		return fmt.Errorf("marketplace name %q: use lower-case letters, digits, '.', '_' and '-' (at most 63): %w", m.Name, errdefs.ErrInvalidArgument)
	}
	if !strings.HasPrefix(m.URL, "https://") && !strings.HasPrefix(m.URL, "http://") {
		return fmt.Errorf("marketplace url %q: give an http:// or https:// URL of the directory (or of its index.json): %w", m.URL, errdefs.ErrInvalidArgument)
	}
	switch {
	case m.Key == "" && !m.AllowUnsigned:
		return fmt.Errorf("marketplace %s: give the public key that signs its index (--key FILE.pub, from its publisher), or --allow-unsigned to read an unsigned index (packages are still verified by this host's trusted keys): %w", m.Name, errdefs.ErrInvalidArgument)
	case m.Key != "" && m.AllowUnsigned:
		return fmt.Errorf("marketplace %s: --key and --allow-unsigned exclude each other: %w", m.Name, errdefs.ErrInvalidArgument)
	case m.Key != "":
		if _, err := m.PublicKey(); err != nil {
			return err
		}
	}
	if _, ok := l.Get(m.Name); ok {
		return fmt.Errorf("marketplace %s is already added; remove it first (hearthctl market rm %s): %w", m.Name, m.Name, errdefs.ErrAlreadyExists)
	}
	l.Marketplaces = append(l.Marketplaces, m)
	slices.SortFunc(l.Marketplaces, func(a, b Marketplace) int { return strings.Compare(a.Name, b.Name) })
	return nil
}

// Remove removes the marketplace called name.
func (l *List) Remove(name string) error {
	for i, m := range l.Marketplaces {
		if m.Name == name {
			l.Marketplaces = slices.Delete(l.Marketplaces, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("no marketplace %s (hearthctl market ls lists them): %w", name, errdefs.ErrNotFound)
}

// Get returns the marketplace called name.
func (l *List) Get(name string) (Marketplace, bool) {
	for _, m := range l.Marketplaces {
		if m.Name == name {
			return m, true
		}
	}
	return Marketplace{}, false
}
