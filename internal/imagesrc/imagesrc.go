// Package imagesrc opens an image kept in a local file or directory: an OCI image
// layout, an OCI archive (a tar of a layout), a `docker save` archive or a plain root
// file system tarball (gzip or zstd compressed, or not). containerd-lite imports from
// these; hearthctl pack puts them into a package.
package imagesrc

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"

	"hearth.dev/internal/errdefs"
)

// Format is the kind of file or directory an image is read from.
type Format string

// Formats.
const (
	FormatOCILayout  Format = "oci-layout"
	FormatOCIArchive Format = "oci-archive"
	FormatDocker     Format = "docker-archive"
	FormatRootfs     Format = "rootfs-tarball"
)

// HostPlatform is the platform a multi-platform index is resolved to.
var HostPlatform = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}

// DefaultPath is the PATH of an image made from a root file system tarball.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Source is an opened image. Close removes what opening it made.
type Source struct {
	Image  v1.Image
	Format Format
	// RawSize is set for sources that hold their layers uncompressed (docker save,
	// rootfs tarballs) to the file's size: read such layers uncompressed, and count
	// progress against it.
	RawSize int64
	cleanup func()
}

// Close removes the scratch files of the source, if any.
func (s *Source) Close() {
	if s.cleanup != nil {
		s.cleanup()
		s.cleanup = nil
	}
}

// Open detects the format of path and opens the image in it. scratch is a directory
// where an OCI archive is unpacked (until Close).
func Open(path, scratch string) (*Source, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w: %w", path, err, errdefs.ErrInvalidArgument)
	}
	kind, err := Sniff(path)
	if err != nil {
		return nil, err
	}
	switch kind {
	case FormatOCILayout:
		img, err := FromLayout(path)
		if err != nil {
			return nil, err
		}
		return &Source{Image: img, Format: FormatOCILayout}, nil
	case FormatOCIArchive:
		dir, err := os.MkdirTemp(scratch, "oci-archive-")
		if err != nil {
			return nil, err
		}
		cleanup := func() { os.RemoveAll(dir) }
		if err := extractArchive(path, dir); err != nil {
			cleanup()
			return nil, err
		}
		img, err := FromLayout(dir)
		if err != nil {
			cleanup()
			return nil, err
		}
		return &Source{Image: img, Format: FormatOCIArchive, cleanup: cleanup}, nil
	case FormatDocker:
		img, err := tarball.ImageFromPath(path, nil)
		if err != nil {
			return nil, fmt.Errorf("image %s as a docker save archive: %w (an archive of several images is not supported: save one): %w", path, err, errdefs.ErrInvalidArgument)
		}
		return &Source{Image: img, Format: FormatDocker, RawSize: fi.Size()}, nil
	default:
		layer, err := tarball.LayerFromFile(path, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, fmt.Errorf("image %s as a root file system tarball: %w: %w", path, err, errdefs.ErrInvalidArgument)
		}
		base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		img, err := mutate.AppendLayers(base, layer)
		if err != nil {
			return nil, err
		}
		diffID, err := layer.DiffID()
		if err != nil {
			return nil, err
		}
		if img, err = mutate.ConfigFile(img, RootfsConfig(diffID)); err != nil {
			return nil, err
		}
		return &Source{Image: img, Format: FormatRootfs, RawSize: fi.Size()}, nil
	}
}

// RootfsConfig is the config of the image a root file system tarball makes: its one
// layer's diff id, the host platform and DefaultPath.
func RootfsConfig(diffID v1.Hash) *v1.ConfigFile {
	return &v1.ConfigFile{
		Architecture: HostPlatform.Architecture, OS: HostPlatform.OS,
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
		Config: v1.Config{Env: []string{DefaultPath}},
	}
}

// ConfigDigest is the digest an image's config is stored under: that of its JSON, as
// go-containerregistry serializes it.
func ConfigDigest(cf *v1.ConfigFile) (v1.Hash, error) {
	raw, err := json.Marshal(cf)
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	return h, err
}

// Sniff tells the format of the image at path without reading it whole: a directory
// must be an OCI layout; a tar's first entries tell the rest.
func Sniff(path string) (Format, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("image %s: %w: %w", path, err, errdefs.ErrInvalidArgument)
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "oci-layout")); err != nil {
			return "", fmt.Errorf("image %s: a directory must be an OCI image layout (it has no oci-layout file); pack a plain root file system as a tar first: %w", path, errdefs.ErrInvalidArgument)
		}
		return FormatOCILayout, nil
	}
	return sniffTar(path)
}

// sniffTar reads a (possibly compressed) tar's entry names to tell an OCI archive (has
// oci-layout), a docker save archive (has manifest.json) and a root file system apart.
// Both archives hold only a few names at their top (archiveTop); the first name that
// is not one of them says the tar is a root file system, so a root file system's tar
// is decided on its first entries, not read through.
func sniffTar(path string) (Format, error) {
	r, closeIt, err := openTar(path)
	if err != nil {
		return "", err
	}
	defer closeIt()
	tr := tar.NewReader(r)
	seenAny := false
	for i := 0; i < 10000; i++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if !seenAny {
				return "", fmt.Errorf("image %s: not a tar archive, OCI layout, or docker save archive (%v): %w", path, err, errdefs.ErrInvalidArgument)
			}
			return "", fmt.Errorf("image %s: read tar: %w: %w", path, err, errdefs.ErrInvalidArgument)
		}
		seenAny = true
		name := strings.TrimPrefix(hdr.Name, "./")
		switch name {
		case "oci-layout":
			return FormatOCIArchive, nil
		case "manifest.json":
			return FormatDocker, nil
		}
		if !archiveTop(name) {
			return FormatRootfs, nil
		}
	}
	if !seenAny {
		return "", fmt.Errorf("image %s: empty archive: %w", path, errdefs.ErrInvalidArgument)
	}
	return FormatRootfs, nil
}

// archiveTop tells whether an entry could be part of an OCI archive or a docker save
// archive, by the first component of its name: blobs/, index.json, oci-layout and
// manifest.json (OCI; docker save since Docker 25 writes an OCI layout), or
// "repositories", manifest.json and names made of a digest: a layer directory
// "<hex>/", "<hex>.json", "<hex>.tar", "<hex>.tar.gz", "sha256:<hex>" (docker save
// before, podman, go-containerregistry's tarball).
func archiveTop(name string) bool {
	top, _, _ := strings.Cut(strings.TrimLeft(name, "/"), "/")
	switch top {
	case "", ".", "blobs", "index.json", "oci-layout", "manifest.json", "repositories":
		return true
	}
	id, _, _ := strings.Cut(strings.TrimPrefix(top, "sha256:"), ".")
	return isHexID(id)
}

// isHexID tells whether s is a 64-digit lowercase hex id, as docker names layers.
func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// extractArchive unpacks an OCI archive into dir: directories and regular files only,
// every one created through an os.Root of dir, so no entry lands outside it.
func extractArchive(file, dir string) error {
	r, closeIt, err := openTar(file)
	if err != nil {
		return err
	}
	defer closeIt()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	fail := func(name string, err error) error {
		return fmt.Errorf("image %s: unpack OCI archive: %s: %w: %w", file, name, err, errdefs.ErrInvalidArgument)
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fail("read", err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
		if name == "." {
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fail(hdr.Name, err)
			}
		case tar.TypeReg:
			if d := path.Dir(name); d != "." {
				if err := root.MkdirAll(d, 0o755); err != nil {
					return fail(hdr.Name, err)
				}
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return fail(hdr.Name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fail(hdr.Name, err)
			}
		default:
			return fail(hdr.Name, fmt.Errorf("an OCI archive holds only files and directories, not type %q", hdr.Typeflag))
		}
	}
}

// FromLayout picks the image in an OCI layout: the only one, or the one for this
// host's platform in a multi-platform index.
func FromLayout(dir string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read OCI layout %s: %w: %w", dir, err, errdefs.ErrInvalidArgument)
	}
	img, err := ResolveIndex(idx)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	return img, nil
}

// ResolveIndex finds the image for HostPlatform in an index, descending nested indexes.
func ResolveIndex(idx v1.ImageIndex) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var images []v1.Descriptor
	var seen []string
	for _, d := range im.Manifests {
		if d.MediaType.IsIndex() {
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			if img, err := ResolveIndex(child); err == nil {
				return img, nil
			} else if !errors.Is(err, errdefs.ErrNotFound) {
				return nil, err
			}
			continue
		}
		if !d.MediaType.IsImage() {
			continue
		}
		if d.Platform != nil {
			seen = append(seen, d.Platform.String())
			if !d.Platform.Satisfies(HostPlatform) {
				continue
			}
		}
		images = append(images, d)
	}
	switch len(images) {
	case 0:
		return nil, fmt.Errorf("no image for platform %s (the index has %s): %w", HostPlatform.String(), strings.Join(seen, ", "), errdefs.ErrNotFound)
	case 1:
		return idx.Image(images[0].Digest)
	}
	return nil, fmt.Errorf("%d images match platform %s; keep one image per layout: %w", len(images), HostPlatform.String(), errdefs.ErrInvalidArgument)
}

// openTar opens a tar file, compressed or not.
func openTar(path string) (io.Reader, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	var magic [4]byte
	if n, _ := f.ReadAt(magic[:], 0); !compressed(magic[:n]) {
		// The file itself, which seeks: reading entry names skips over the contents.
		return f, func() { f.Close() }, nil
	}
	rc, err := Decompress(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("image %s: %w: %w", path, err, errdefs.ErrInvalidArgument)
	}
	return rc, func() { rc.Close(); f.Close() }, nil
}

// Decompress returns the tar stream inside a layer blob: gzip, zstd or none, by magic.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case isGzip(magic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip layer: %w", err)
		}
		return zr, nil
	case isZstd(magic):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("zstd layer: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

func isGzip(magic []byte) bool { return len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b }

func isZstd(magic []byte) bool {
	return len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd
}

func compressed(magic []byte) bool { return isGzip(magic) || isZstd(magic) }
