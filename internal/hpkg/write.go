package hpkg

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
)

// File is one entry to write: a directory, or a regular file whose content Open gives.
// Open is called twice (to hash, then to write); both reads must give the same bytes.
type File struct {
	Path string // relative, slash-separated, such as "images/index.json"
	Dir  bool
	Open func() (io.ReadCloser, error)
}

// Bytes is a file holding data.
func Bytes(path string, data []byte) File {
	return File{Path: path, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
}

// DiskFile is a file whose content is read from name on disk.
func DiskFile(path, name string) File {
	return File{Path: path, Open: func() (io.ReadCloser, error) { return os.Open(name) }}
}

// Tree returns the directories and regular files below dir, each at prefix/<relative
// path> (prefix itself included as a directory when not empty). Anything else (a
// symbolic link, a device) is an error: a package holds files and directories only.
func Tree(dir, prefix string) ([]File, error) {
	var out []File
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(prefix+"/"+filepath.ToSlash(rel), "/")
		if rel == "." {
			name = prefix
		}
		switch {
		case d.IsDir():
			if name != "" {
				out = append(out, File{Path: name, Dir: true})
			}
		case d.Type().IsRegular():
			out = append(out, DiskFile(name, p))
		default:
			return fmt.Errorf("%s is a %v: a package holds only files and directories: %w", p, d.Type(), errdefs.ErrInvalidArgument)
		}
		return nil
	})
	return out, err
}

// Write writes a package of files to w, signed with key (nil writes an unsigned
// package, which installs only where the installer allows untrusted packages).
//
// The files must include manifest.yaml, a valid manifest whose images are all oci:,
// and images/, an OCI layout with one index entry per image annotated with its name
// (AnnotationImageName). Missing parent directories are added. The output depends only
// on the paths and contents (and key): the same input gives the same bytes.
func Write(w io.Writer, files []File, key ed25519.PrivateKey) error {
	toc, byPath, mdata, err := collect(files, key)
	if err != nil {
		return err
	}
	if len(mdata) > manifest.MaxSize {
		return fmt.Errorf("write package: %s is %d bytes; at most %d: %w", ManifestName, len(mdata), manifest.MaxSize, errdefs.ErrInvalidArgument)
	}
	m, err := parseManifest(mdata, nil)
	if err != nil {
		return fmt.Errorf("write %w", err)
	}
	toc.Package = Package{ID: m.ID, Version: m.Version}
	if err := toc.check(); err != nil {
		return fmt.Errorf("write %w", err)
	}
	err = checkImages(m, toc, func(p string) ([]byte, error) {
		rc, err := byPath[p].Open()
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(io.LimitReader(rc, MaxTOCSize))
	})
	if err != nil {
		return fmt.Errorf("write %w", err)
	}
	return emit(w, toc, byPath, key)
}

// WriteUnchecked is Write without its checks of the manifest and the image layout, for
// tests of installers: it makes a package that is well formed and signed but holds what an
// installer must refuse (a manifest that does not validate). Never publish with it.
func WriteUnchecked(w io.Writer, files []File, id, version string, key ed25519.PrivateKey) error {
	toc, byPath, _, err := collect(files, key)
	if err != nil {
		return err
	}
	toc.Package = Package{ID: id, Version: version}
	return emit(w, toc, byPath, key)
}

// collect checks the files' paths, adds their parent directories, and hashes every file
// into a table (without its package); it returns the manifest's bytes too.
func collect(files []File, key ed25519.PrivateKey) (*TOC, map[string]File, []byte, error) {
	if key != nil && len(key) != ed25519.PrivateKeySize {
		return nil, nil, nil, fmt.Errorf("write package: the signing key is not an ed25519 private key: %w", errdefs.ErrInvalidArgument)
	}
	byPath := map[string]File{}
	for _, f := range files {
		if err := checkPath(f.Path); err != nil {
			return nil, nil, nil, fmt.Errorf("write package: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		if _, dup := byPath[f.Path]; dup {
			return nil, nil, nil, fmt.Errorf("write package: %s is given twice: %w", f.Path, errdefs.ErrInvalidArgument)
		}
		if f.Dir != (f.Open == nil) {
			return nil, nil, nil, fmt.Errorf("write package: %s: a directory has no Open, a file needs one: %w", f.Path, errdefs.ErrInvalidArgument)
		}
		byPath[f.Path] = f
	}
	for _, f := range files {
		for p := f.Path; strings.Contains(p, "/"); {
			p = p[:strings.LastIndexByte(p, '/')]
			if d, ok := byPath[p]; ok && !d.Dir {
				return nil, nil, nil, fmt.Errorf("write package: %s is a file but holds %s: %w", p, f.Path, errdefs.ErrInvalidArgument)
			}
			byPath[p] = File{Path: p, Dir: true}
		}
	}
	mf, ok := byPath[ManifestName]
	if !ok || mf.Dir {
		return nil, nil, nil, fmt.Errorf("write package: no %s: %w", ManifestName, errdefs.ErrInvalidArgument)
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		if p != ManifestName {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	paths = append([]string{ManifestName}, paths...)

	// Hash every file.
	toc := &TOC{Format: FormatVersion}
	var mdata []byte
	for _, p := range paths {
		f := byPath[p]
		if f.Dir {
			toc.Entries = append(toc.Entries, Entry{Path: p, Type: TypeDir})
			continue
		}
		var keep *bytes.Buffer
		if p == ManifestName {
			keep = &bytes.Buffer{}
		}
		size, sum, err := hashFile(f, keep)
		if err != nil {
			return nil, nil, nil, err
		}
		if keep != nil {
			mdata = keep.Bytes()
		}
		toc.Entries = append(toc.Entries, Entry{Path: p, Type: TypeFile, Size: size, SHA256: sum})
	}
	return toc, byPath, mdata, nil
}

// emit writes the package: the table, the signature, the entries in the table's order
// (their content read again and checked against the table), the end of the archive.
func emit(w io.Writer, toc *TOC, byPath map[string]File, key ed25519.PrivateKey) error {
	tocData, err := toc.marshal()
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := writeEntry(bw, TOCName, TypeFile, bytes.NewReader(tocData), int64(len(tocData))); err != nil {
		return err
	}
	if key != nil {
		sig := SignDetached(tocData, key)
		if err := writeEntry(bw, SigName, TypeFile, bytes.NewReader(sig), int64(len(sig))); err != nil {
			return err
		}
	}
	for _, e := range toc.Entries {
		if e.Type == TypeDir {
			if err := writeEntry(bw, e.Path, TypeDir, nil, 0); err != nil {
				return err
			}
			continue
		}
		if err := writeFile(bw, byPath[e.Path], e); err != nil {
			return err
		}
	}
	if _, err := bw.Write(make([]byte, 2*blockSize)); err != nil {
		return err
	}
	return bw.Flush()
}

// signature is the content of the signature entry: the signer's key and an ed25519
// signature of the table of contents' exact bytes.
type signature struct {
	Algorithm string `json:"algorithm"`
	Key       string `json:"key"`
	Signature string `json:"signature"`
}

func hashFile(f File, keep *bytes.Buffer) (int64, string, error) {
	rc, err := f.Open()
	if err != nil {
		return 0, "", fmt.Errorf("write package: %s: %w", f.Path, err)
	}
	defer rc.Close()
	h := sha256.New()
	var w io.Writer = h
	if keep != nil {
		w = io.MultiWriter(h, keep)
	}
	n, err := io.Copy(w, rc)
	if err != nil {
		return 0, "", fmt.Errorf("write package: read %s: %w", f.Path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func writeFile(w io.Writer, f File, e Entry) error {
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("write package: %s: %w", f.Path, err)
	}
	defer rc.Close()
	h := sha256.New()
	// One byte more than expected tells a file that grew.
	r := io.TeeReader(io.LimitReader(rc, e.Size+1), h)
	if err := writeEntry(w, e.Path, TypeFile, r, e.Size); err != nil {
		return err
	}
	if n, _ := io.Copy(io.Discard, r); n != 0 || hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
		return fmt.Errorf("write package: %s changed while it was packed: %w", f.Path, errdefs.ErrAborted)
	}
	return nil
}

// writeEntry writes a header, size bytes of r and the padding.
func writeEntry(w io.Writer, path string, typ EntryType, r io.Reader, size int64) error {
	h, err := header(path, typ, size)
	if err != nil {
		return fmt.Errorf("write package: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if _, err := w.Write(h); err != nil {
		return err
	}
	if size > 0 {
		n, err := io.CopyN(w, r, size)
		if err != nil {
			if n < size && (err == io.EOF || err == io.ErrUnexpectedEOF) {
				return fmt.Errorf("write package: %s shrank while it was packed: %w", path, errdefs.ErrAborted)
			}
			return fmt.Errorf("write package: %s: %w", path, err)
		}
	}
	_, err = w.Write(make([]byte, padding(size)))
	return err
}
