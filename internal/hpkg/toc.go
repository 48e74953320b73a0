package hpkg

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"hearth.dev/internal/errdefs"
)

// FormatVersion is the format this package writes and reads.
const FormatVersion = 1

// Names of the first two tar entries, and of the manifest (the first entry the table
// lists). No other entry may use the first two.
const (
	TOCName      = "hpkg-toc.json"
	SigName      = "hpkg-toc.sig"
	ManifestName = "manifest.yaml"
)

// Limits of what a package may hold.
const (
	MaxTOCSize = 16 << 20
	MaxEntries = 100000
	maxSigSize = 4096
)

// EntryType is the type of an entry: only regular files and directories exist in a package.
type EntryType string

// Entry types.
const (
	TypeFile EntryType = "file"
	TypeDir  EntryType = "dir"
)

// TOC is the table of contents, the first entry of a package. Entries are in archive
// order: manifest.yaml first, then every other path in byte order (so a directory comes
// before what it holds).
type TOC struct {
	Format  int     `json:"format"`
	Package Package `json:"package"`
	Entries []Entry `json:"entries"`
}

// Package names the package, as its manifest does.
type Package struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

// Entry is one tar entry after the table (and the signature).
type Entry struct {
	Path string    `json:"path"`
	Type EntryType `json:"type"`
	// Size and SHA256 (lower-case hex) are those of a file's content; empty for a directory.
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// Size returns the sum of the files' sizes.
func (t *TOC) Size() int64 {
	var n int64
	for _, e := range t.Entries {
		n += e.Size
	}
	return n
}

// Lookup returns the entry at path.
func (t *TOC) Lookup(path string) (Entry, bool) {
	for _, e := range t.Entries {
		if e.Path == path {
			return e, true
		}
	}
	return Entry{}, false
}

// marshal returns the canonical encoding of the table: indented JSON and a newline.
func (t *TOC) marshal() ([]byte, error) {
	b, err := json.MarshalIndent(t, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseTOC reads a table of contents and checks it: its format, its canonical encoding
// (the bytes are exactly those Write makes, so that one table has one encoding), and
// every entry's path, type, size and digest, their order, and that each entry's parent
// directory is listed before it.
func ParseTOC(data []byte) (*TOC, error) {
	if len(data) > MaxTOCSize {
		return nil, badf("table of contents is %d bytes; at most %d", len(data), MaxTOCSize)
	}
	var t TOC
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return nil, badf("table of contents: %v", err)
	}
	if t.Format != FormatVersion {
		return nil, badf("table of contents: format %d; this Hearth reads format %d (a newer package needs a newer Hearth)", t.Format, FormatVersion)
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	canon, err := t.marshal()
	if err != nil {
		return nil, badf("table of contents: %v", err)
	}
	if !bytes.Equal(canon, data) {
		return nil, badf("table of contents is not in canonical form (re-encoded, it differs)")
	}
	return &t, nil
}

// check validates the entries and their order.
func (t *TOC) check() error {
	if t.Package.ID == "" || t.Package.Version == "" {
		return badf("table of contents: the package id and version are missing")
	}
	if len(t.Entries) == 0 || t.Entries[0].Path != ManifestName || t.Entries[0].Type != TypeFile {
		return badf("table of contents: the first entry must be the file %s", ManifestName)
	}
	if len(t.Entries) > MaxEntries {
		return badf("table of contents: %d entries; at most %d", len(t.Entries), MaxEntries)
	}
	dirs := map[string]bool{}
	for i, e := range t.Entries {
		if err := checkPath(e.Path); err != nil {
			return badf("table of contents: entry %d: %v", i, err)
		}
		switch e.Type {
		case TypeFile:
			if e.Size < 0 || e.Size > MaxEntrySize {
				return badf("table of contents: %s: size %d out of range", e.Path, e.Size)
			}
			if len(e.SHA256) != 64 || strings.ToLower(e.SHA256) != e.SHA256 {
				return badf("table of contents: %s: sha256 %q is not 64 lower-case hex digits", e.Path, e.SHA256)
			}
			if _, err := hex.DecodeString(e.SHA256); err != nil {
				return badf("table of contents: %s: sha256 %q is not hex", e.Path, e.SHA256)
			}
		case TypeDir:
			if e.Size != 0 || e.SHA256 != "" {
				return badf("table of contents: %s: a directory has no size or digest", e.Path)
			}
			dirs[e.Path] = true
		default:
			return badf("table of contents: %s: type %q; a package holds only files and directories", e.Path, e.Type)
		}
		if i > 1 && e.Path <= t.Entries[i-1].Path {
			return badf("table of contents: %s: entries out of order or repeated (after %s)", e.Path, t.Entries[i-1].Path)
		}
		if i > 0 && e.Path == ManifestName {
			return badf("table of contents: %s is listed twice", ManifestName)
		}
		if j := strings.LastIndexByte(e.Path, '/'); j >= 0 && !dirs[e.Path[:j]] {
			return badf("table of contents: %s: its directory %s is not listed before it", e.Path, e.Path[:j])
		}
		if _, err := header(e.Path, e.Type, e.Size); err != nil {
			return badf("table of contents: %v", err)
		}
	}
	return t.checkLayout()
}

// checkPath allows relative, clean, slash-separated paths of printable ASCII other
// than \ " < > & (so that the tar header and the JSON need no escapes), with no empty,
// "." or ".." element, other than the names the format reserves.
func checkPath(p string) error {
	if p == "" {
		return fmt.Errorf("empty path")
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("path %q is not UTF-8", p)
	}
	for _, c := range []byte(p) {
		if c < 0x20 || c > 0x7e || strings.IndexByte(`\"<>&`, c) >= 0 {
			return fmt.Errorf("path %q: use printable ASCII other than \\ \" < > &", p)
		}
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q is absolute", p)
	}
	for _, el := range strings.Split(p, "/") {
		switch el {
		case "":
			return fmt.Errorf("path %q has an empty element", p)
		case ".", "..":
			return fmt.Errorf("path %q has a %q element", p, el)
		}
	}
	if p == TOCName || p == SigName {
		return fmt.Errorf("path %q is reserved", p)
	}
	if len(p) > 255 {
		return fmt.Errorf("path %q is longer than 255 bytes", p)
	}
	return nil
}

var errInvalid = errdefs.ErrInvalidArgument

// badf is a refusal of a bad package.
func badf(format string, a ...any) error {
	return fmt.Errorf("package: "+format+": %w", append(a, errdefs.ErrInvalidArgument)...)
}
