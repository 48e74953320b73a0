// Package market reads and writes Hearth marketplaces: a static directory any web
// server can host, holding a signed index of packages (index.json, index.json.sig), the
// packages' icons and (usually) the .hpkg files. docs/marketplace.md describes the format.
//
// A publisher builds the index with Build (hearthctl market index); a client fetches and
// checks it with Fetch, picks a version with Index.Find, and downloads the package with
// Download (which resumes a cut download and checks the size and sha256 the index names).
// The host still verifies the package's own signature when it installs it.
package market

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/hpkg"
	"hearth.dev/internal/semver"
)

// Names of the index and its detached signature in a marketplace directory.
const (
	IndexName = "index.json"
	SigName   = "index.json.sig"
	IconsDir  = "icons"
)

// FormatVersion is the index format this package writes and reads.
const FormatVersion = 1

// MaxIndexSize bounds an index (and MaxSigSize its signature) a client reads.
const (
	MaxIndexSize = 16 << 20
	MaxSigSize   = 4096
)

// Index is a marketplace's index.json.
type Index struct {
	Format    int       `json:"format"`
	Name      string    `json:"name"`
	Generated time.Time `json:"generated"`
	Packages  []Package `json:"packages"`
}

// Package is one package id with every version the marketplace offers.
type Package struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
	// Icon is the icon's path relative to the index (icons/<id>.png or .svg), if any.
	Icon     string    `json:"icon,omitempty"`
	Versions []Version `json:"versions"`
}

// Version is one downloadable package file.
type Version struct {
	Version string `json:"version"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	// KeyID is the fingerprint of the key that signed the package ("" for an unsigned one).
	KeyID string `json:"key_id"`
	// URL of the .hpkg: relative to the index's URL, or absolute.
	URL string `json:"url"`
	// Notes are the release notes from the package's README ("## Release notes"), if any.
	Notes string `json:"notes,omitempty"`
}

// Marshal returns the index's bytes: indented JSON and a newline.
func (ix *Index) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Sign returns the index's bytes and their detached signature by key.
func (ix *Index) Sign(key ed25519.PrivateKey) (data, sig []byte, err error) {
	if data, err = ix.Marshal(); err != nil {
		return nil, nil, err
	}
	return data, hpkg.SignDetached(data, key), nil
}

// ErrBadSignature: the index's signature is missing, does not match, or is not by the
// pinned key. It also wraps errdefs.ErrPermissionDenied.
var ErrBadSignature = fmt.Errorf("marketplace index signature refused")

// Open checks an index's signature against the pinned key (nil: the marketplace was
// added with --allow-unsigned, and sig is not looked at) and parses it. where names
// the marketplace in errors.
func Open(where string, data, sig []byte, pinned ed25519.PublicKey) (*Index, error) {
	if pinned != nil {
		if len(sig) == 0 {
			return nil, fmt.Errorf("marketplace %s: its index has no signature (%s); it was added with a key, so an unsigned index is refused: %w: %w", where, SigName, ErrBadSignature, errdefs.ErrPermissionDenied)
		}
		key, err := hpkg.VerifyDetached(SigName, sig, data)
		if err != nil {
			return nil, fmt.Errorf("marketplace %s: %w: %w: %w", where, err, ErrBadSignature, errdefs.ErrPermissionDenied)
		}
		if !key.Equal(pinned) {
			return nil, fmt.Errorf("marketplace %s: its index is signed by key %s, not by the key %s it was added with; if the marketplace changed its key, check the new one with its publisher and add it again: %w: %w",
				where, hpkg.KeyID(key), hpkg.KeyID(pinned), ErrBadSignature, errdefs.ErrPermissionDenied)
		}
	}
	return Parse(where, data)
}

// Parse reads an index and checks it (without its signature).
func Parse(where string, data []byte) (*Index, error) {
	var ix Index
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&ix); err != nil {
		return nil, fmt.Errorf("marketplace %s: %s: %v: %w", where, IndexName, err, errdefs.ErrInvalidArgument)
	}
	if ix.Format != FormatVersion {
		return nil, fmt.Errorf("marketplace %s: index format %d; this hearthctl reads format %d: %w", where, ix.Format, FormatVersion, errdefs.ErrInvalidArgument)
	}
	seen := map[string]bool{}
	for i, p := range ix.Packages {
		if p.ID == "" || seen[p.ID] {
			return nil, fmt.Errorf("marketplace %s: packages[%d]: the id %q is empty or repeated: %w", where, i, p.ID, errdefs.ErrInvalidArgument)
		}
		seen[p.ID] = true
		for j, v := range p.Versions {
			if _, err := semver.Parse(v.Version); err != nil {
				return nil, fmt.Errorf("marketplace %s: package %s versions[%d]: %v: %w", where, p.ID, j, err, errdefs.ErrInvalidArgument)
			}
			if v.Size <= 0 || len(v.SHA256) != 64 || strings.Trim(v.SHA256, "0123456789abcdef") != "" || v.URL == "" {
				return nil, fmt.Errorf("marketplace %s: package %s %s: the size, sha256 (64 lower-case hex digits) or url is missing or malformed: %w", where, p.ID, v.Version, errdefs.ErrInvalidArgument)
			}
		}
	}
	return &ix, nil
}

// Lookup returns the package with id.
func (ix *Index) Lookup(id string) (*Package, bool) {
	for i := range ix.Packages {
		if ix.Packages[i].ID == id {
			return &ix.Packages[i], true
		}
	}
	return nil, false
}

// Sorted returns the versions, highest first (by semantic version).
func (p *Package) Sorted() []Version {
	vs := slices.Clone(p.Versions)
	slices.SortStableFunc(vs, func(a, b Version) int {
		c, _ := semver.Compare(b.Version, a.Version)
		return c
	})
	return vs
}

// Choose picks a version: want exactly (compared as semantic versions, so 1.0 is not
// 1.0.0 but v1.0.0 is) or, when want is empty, the highest release (a pre-release only
// when the package has no release).
func (p *Package) Choose(want string) (Version, error) {
	vs := p.Sorted()
	if len(vs) == 0 {
		return Version{}, fmt.Errorf("package %s: the marketplace lists no version of it: %w", p.ID, errdefs.ErrNotFound)
	}
	if want == "" {
		for _, v := range vs {
			if pv, _ := semver.Parse(v.Version); len(pv.Pre) == 0 {
				return v, nil
			}
		}
		return vs[0], nil
	}
	wv, err := semver.Parse(want)
	if err != nil {
		return Version{}, fmt.Errorf("%s@%s: %v: %w", p.ID, want, err, errdefs.ErrInvalidArgument)
	}
	var have []string
	for _, v := range vs {
		if pv, _ := semver.Parse(v.Version); pv.Compare(wv) == 0 {
			return v, nil
		}
		have = append(have, v.Version)
	}
	return Version{}, fmt.Errorf("package %s has no version %s; the marketplace has %s: %w", p.ID, want, strings.Join(have, ", "), errdefs.ErrNotFound)
}

// Newer returns the highest version above installed (releases only, unless installed
// is itself a pre-release), and whether there is one.
func (p *Package) Newer(installed string) (Version, bool) {
	iv, err := semver.Parse(installed)
	if err != nil {
		return Version{}, false
	}
	for _, v := range p.Sorted() {
		pv, err := semver.Parse(v.Version)
		if err != nil || pv.Compare(iv) <= 0 {
			return Version{}, false
		}
		if len(pv.Pre) == 0 || len(iv.Pre) > 0 {
			return v, true
		}
	}
	return Version{}, false
}

// Resolve returns ref (a version's URL or an icon path) made absolute against the
// index's URL.
func Resolve(indexURL, ref string) (string, error) {
	base, err := url.Parse(indexURL)
	if err != nil {
		return "", fmt.Errorf("marketplace url %q: %w", indexURL, err)
	}
	u, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("url %q in the index: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return base.ResolveReference(u).String(), nil
}

// Matches says whether the package's id, title or description holds word (any case).
func (p *Package) Matches(word string) bool {
	w := strings.ToLower(word)
	for _, s := range []string{p.ID, p.Title, p.Description} {
		if strings.Contains(strings.ToLower(s), w) {
			return true
		}
	}
	return false
}
