package market

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"hearth.dev/internal/atomicfile"
	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/hpkg"
	"hearth.dev/internal/semver"
)

// Inspected is what a package file says about itself, read without installing it.
type Inspected struct {
	ID, Version string
	Title       string
	Description string
	Notes       string
	KeyID       string // "" when unsigned
	Size        int64
	SHA256      string
	// Icon is the icon's file name in the package (icon.png or icon.svg) and its content.
	IconName string
	Icon     []byte
}

// Inspect reads a package file whole: it verifies it as an installer would (any signer;
// the result says which) into a temporary directory it removes again, and hashes it.
func Inspect(ctx context.Context, file string) (*Inspected, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	stage, err := os.MkdirTemp("", "hearth-inspect-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	root, err := os.OpenRoot(stage)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(f, h)}
	v, err := hpkg.Verify(ctx, cr, nil, root, hpkg.VerifyOptions{AllowUntrusted: true})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	// Verify stops at the end of the archive: hash what follows too (nothing, in a good file).
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return nil, err
	}
	in := &Inspected{ID: v.TOC.Package.ID, Version: v.TOC.Package.Version, KeyID: v.KeyID, Size: cr.n, SHA256: hex.EncodeToString(h.Sum(nil))}
	if readme, err := root.ReadFile("README.md"); err == nil {
		in.Title, in.Description, in.Notes = ParseReadme(string(readme))
	}
	if in.Title == "" {
		in.Title = in.ID
	}
	for _, n := range []string{"icon.png", "icon.svg"} {
		if b, err := root.ReadFile(n); err == nil {
			in.IconName, in.Icon = n, b
		}
	}
	return in, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// MaxDescription and MaxNotes bound what the index carries from a README.
const (
	MaxDescription = 500
	MaxNotes       = 4000
)

// ParseReadme takes a package's README.md apart: the title is the first "# " heading,
// the description the first paragraph after it, the release notes the body of a
// "## Release notes" (or "## Changes", "## Changelog") section.
func ParseReadme(s string) (title, description, notes string) {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	var para []string
	inNotes, paraDone := false, false
	var nl []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "# ") && title == "":
			title = strings.TrimSpace(t[2:])
			continue
		case strings.HasPrefix(t, "## "):
			h := strings.ToLower(strings.TrimSpace(t[3:]))
			inNotes = h == "release notes" || h == "changes" || h == "changelog" || strings.HasPrefix(h, "release notes")
			paraDone = true // the description is in the text before the first section
			continue
		case strings.HasPrefix(t, "#"):
			paraDone = paraDone || len(para) > 0
		}
		if inNotes {
			nl = append(nl, l)
			continue
		}
		if paraDone || strings.HasPrefix(t, "#") {
			continue
		}
		if t == "" {
			paraDone = len(para) > 0
			continue
		}
		para = append(para, t)
	}
	description = clip(strings.Join(para, " "), MaxDescription)
	notes = clip(strings.TrimSpace(strings.Join(nl, "\n")), MaxNotes)
	return title, description, notes
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s[:n])
	return string(r[:len(r)-1]) + "…"
}

// BuildOptions tune Build.
type BuildOptions struct {
	// Name is the marketplace's name (default: the directory's base name).
	Name string
	// Now is the index's generated time (default: time.Now).
	Now time.Time
	// Log, when set, hears about each package file as it is read.
	Log func(file string, in *Inspected)
}

// Build reads every .hpkg file under dir (any depth), writes the packages' icons to
// dir/icons, and index.json and index.json.sig signed by key; the URLs are relative to
// dir. Two files of the same package and version are refused, naming both. It returns
// the index written.
func Build(ctx context.Context, dir string, key ed25519.PrivateKey, opts BuildOptions) (*Index, error) {
	if opts.Name == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		opts.Name = filepath.Base(abs)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), ".hpkg") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no .hpkg file; put the packages to list there (hearthctl pack ... --out %s/NAME.hpkg): %w", dir, dir, errdefs.ErrInvalidArgument)
	}
	slices.Sort(files)
	type found struct {
		in   *Inspected
		file string
	}
	byID := map[string][]found{}
	for _, f := range files {
		in, err := Inspect(ctx, f)
		if err != nil {
			return nil, err
		}
		if opts.Log != nil {
			opts.Log(f, in)
		}
		for _, o := range byID[in.ID] {
			if c, _ := semver.Compare(o.in.Version, in.Version); c == 0 {
				return nil, fmt.Errorf("%s and %s are both %s %s; keep one: %w", o.file, f, in.ID, in.Version, errdefs.ErrInvalidArgument)
			}
		}
		byID[in.ID] = append(byID[in.ID], found{in, f})
	}
	ix := &Index{Format: FormatVersion, Name: opts.Name, Generated: opts.Now.UTC().Truncate(time.Second)}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		p := Package{ID: id}
		for _, fd := range byID[id] {
			rel, err := filepath.Rel(dir, fd.file)
			if err != nil {
				return nil, err
			}
			p.Versions = append(p.Versions, Version{
				Version: fd.in.Version, Size: fd.in.Size, SHA256: fd.in.SHA256, KeyID: fd.in.KeyID,
				URL: relURL(rel), Notes: fd.in.Notes,
			})
		}
		p.Versions = p.Sorted()
		// The newest version's README and icon speak for the package.
		for _, fd := range byID[id] {
			if fd.in.Version != p.Versions[0].Version {
				continue
			}
			p.Title, p.Description = fd.in.Title, fd.in.Description
			if fd.in.Icon != nil {
				name := id + path.Ext(fd.in.IconName)
				if err := os.MkdirAll(filepath.Join(dir, IconsDir), 0o755); err != nil {
					return nil, err
				}
				if err := atomicfile.Write(filepath.Join(dir, IconsDir, name), fd.in.Icon, 0o644); err != nil {
					return nil, err
				}
				p.Icon = IconsDir + "/" + name
			}
		}
		ix.Packages = append(ix.Packages, p)
	}
	data, sig, err := ix.Sign(key)
	if err != nil {
		return nil, err
	}
	// The index first, its signature last: a client reading between the two sees a
	// mismatch and refuses, never an unsigned change.
	if err := atomicfile.Write(filepath.Join(dir, IndexName), data, 0o644); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, SigName), sig, 0o644); err != nil {
		return nil, err
	}
	return ix, nil
}

// relURL makes a relative file path a relative URL (each segment escaped).
func relURL(rel string) string {
	segs := strings.Split(filepath.ToSlash(rel), "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
