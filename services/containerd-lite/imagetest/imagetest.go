// Package imagetest builds images for tests: layers from file lists, images in the four
// formats containerd-lite imports (OCI layout, OCI archive, docker save archive, root
// file system tarball) and multi-platform indexes, all offline with go-containerregistry.
package imagetest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one entry of a layer.
type File struct {
	Name     string
	Type     byte // tar.TypeReg when zero
	Body     string
	Link     string
	Mode     int64
	UID, GID int
}

// Tar returns the files as an uncompressed tar stream.
func Tar(files ...File) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		h := &tar.Header{Name: f.Name, Typeflag: typ, Linkname: f.Link, Mode: mode, Uid: f.UID, Gid: f.GID,
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			panic(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(f.Body)); err != nil {
				panic(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// Layer returns a gzip-compressed layer holding the files.
func Layer(files ...File) v1.Layer {
	data := Tar(files...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		panic(err)
	}
	return l
}

// Image returns an OCI image of the layers with the given config.
func Image(cfg v1.Config, layers ...[]File) v1.Image {
	ls := make([]v1.Layer, len(layers))
	for i, files := range layers {
		ls[i] = Layer(files...)
	}
	return ImageOfLayers(cfg, ls...)
}

// ForPlatform returns img with its config's platform set.
func ForPlatform(img v1.Image, p v1.Platform) v1.Image {
	cf, err := img.ConfigFile()
	if err != nil {
		panic(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		panic(err)
	}
	return out
}

// Index returns a multi-platform index of the images, each annotated with its platform.
func Index(imgs ...v1.Image) v1.ImageIndex {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			panic(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
		}})
	}
	return idx
}

// WriteOCILayout writes img (a v1.Image or v1.ImageIndex) as an OCI layout in dir.
func WriteOCILayout(dir string, img any) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	switch x := img.(type) {
	case v1.Image:
		return p.AppendImage(x)
	case v1.ImageIndex:
		return p.AppendIndex(x)
	}
	return fmt.Errorf("WriteOCILayout: %T is neither an image nor an index", img)
}

// WriteOCIArchive writes img as a tar of an OCI layout.
func WriteOCIArchive(path string, img any) error {
	dir, err := os.MkdirTemp("", "oci-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := WriteOCILayout(dir, img); err != nil {
		return err
	}
	return TarDir(path, dir)
}

// WriteDockerArchive writes img as a `docker save` archive tagged tag.
func WriteDockerArchive(path string, img v1.Image, tag string) error {
	t, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(path, t, img)
}

// WriteRootfsTar writes the files as a plain tar.
func WriteRootfsTar(path string, files ...File) error {
	return os.WriteFile(path, Tar(files...), 0o644)
}

// TarDir writes the tree at dir as a tar at path.
func TarDir(path, dir string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, src)
			src.Close()
			return err
		}
		return nil
	})
	if cerr := tw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Busybox returns the files of a minimal busybox-static root file system read from the
// host's busybox (bin/busybox, a few applet links, /etc/passwd).
func Busybox(busybox string) ([]File, error) {
	b, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("read %s (install busybox-static): %w", busybox, err)
	}
	files := []File{
		{Name: "bin/", Type: tar.TypeDir},
		{Name: "bin/busybox", Body: string(b), Mode: 0o755},
		{Name: "etc/", Type: tar.TypeDir},
		{Name: "etc/passwd", Body: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"},
		{Name: "etc/group", Body: "root:x:0:\nnogroup:x:65534:\n"},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
	}
	for _, a := range []string{"sh", "ls", "cat", "echo", "sleep", "id", "ps", "touch", "mkdir", "rm", "true", "false", "wget", "nc", "httpd"} {
		files = append(files, File{Name: "bin/" + a, Type: tar.TypeSymlink, Link: "busybox"})
	}
	return files, nil
}

// LayerFromFile returns an uncompressed-tar file as a layer (read lazily).
func LayerFromFile(path string) (v1.Layer, error) { return tarball.LayerFromFile(path) }

// ImageOfLayers returns an OCI image of ready-made layers with the given config.
func ImageOfLayers(cfg v1.Config, layers ...v1.Layer) v1.Image {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		panic(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		panic(err)
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.OS, cf.Architecture = "linux", hostArch()
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		panic(err)
	}
	return img
}
