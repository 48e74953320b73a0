package imagesrc

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"hearth.dev/internal/errdefs"
)

type entry struct {
	name, body, link string
	typ              byte
}

func tarOf(t *testing.T, entries ...entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return buf.Bytes()
}

func testImage(t *testing.T) v1.Image {
	data := tarOf(t, entry{name: "etc/", typ: tar.TypeDir}, entry{name: "etc/motd", body: "hello\n"})
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Cmd: []string{"/bin/sh"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// tarDir writes the tree at dir as a tar file.
func tarDir(t *testing.T, file, dir string) {
	var entries []entry
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		rel, _ := filepath.Rel(dir, p)
		switch {
		case rel == ".":
		case fi.IsDir():
			entries = append(entries, entry{name: "./" + rel + "/", typ: tar.TypeDir})
		default:
			b, _ := os.ReadFile(p)
			entries = append(entries, entry{name: "./" + rel, body: string(b)})
		}
		return nil
	})
	if err := os.WriteFile(file, tarOf(t, entries...), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenFormats(t *testing.T) {
	dir := t.TempDir()
	img := testImage(t)
	want, _ := img.ConfigName()
	lay := filepath.Join(dir, "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil || p.AppendImage(img) != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "oci.tar")
	tarDir(t, archive, lay)
	docker := filepath.Join(dir, "docker.tar")
	if err := tarball.WriteToFile(docker, name.MustParseReference("app:1").(name.Tag), img); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs.tar")
	os.WriteFile(rootfs, tarOf(t, entry{name: "bin/", typ: tar.TypeDir}, entry{name: "bin/sh", body: "#!"}), 0o644)

	scratch := t.TempDir()
	for _, tc := range []struct {
		path   string
		format Format
		same   bool
		raw    bool
	}{
		{lay, FormatOCILayout, true, false},
		{archive, FormatOCIArchive, true, false},
		{docker, FormatDocker, true, true},
		{rootfs, FormatRootfs, false, true},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			src, err := Open(tc.path, scratch)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			got, _ := src.Image.ConfigName()
			if src.Format != tc.format || (got == want) != tc.same || (src.RawSize > 0) != tc.raw {
				t.Fatalf("format %s digest %s raw %d; want %s, same digest %v", src.Format, got, src.RawSize, tc.format, tc.same)
			}
			if tc.format == FormatRootfs {
				cf, _ := src.Image.ConfigFile()
				if cf.OS != "linux" || len(cf.Config.Env) != 1 || len(cf.RootFS.DiffIDs) != 1 {
					t.Fatalf("rootfs image config %+v", cf)
				}
				// An import that hashes the layer as it unpacks names the same image.
				if d, err := ConfigDigest(RootfsConfig(cf.RootFS.DiffIDs[0])); err != nil || d != got {
					t.Fatalf("ConfigDigest(RootfsConfig) = %s, %v; the image says %s", d, err, got)
				}
				// An image made here is an OCI image through and through.
				m, _ := src.Image.Manifest()
				if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || m.Layers[0].MediaType != types.OCILayer {
					t.Fatalf("media types %s, %s, %s", m.MediaType, m.Config.MediaType, m.Layers[0].MediaType)
				}
			}
		})
	}
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Errorf("Close left %d scratch entries", len(ents))
	}
}

// TestSniff tells the formats apart by the names of a tar's entries, in the orders the
// tools that write them use, and decides on a root file system at its first name that
// no archive has (a root file system's tar is not read through).
func TestSniff(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	f := func(names ...string) []entry {
		var es []entry
		for _, n := range names {
			e := entry{name: n, body: "x"}
			if strings.HasSuffix(n, "/") {
				e = entry{name: n, typ: tar.TypeDir}
			}
			es = append(es, e)
		}
		return es
	}
	for _, tc := range []struct {
		name    string
		entries []entry
		want    Format
	}{
		{"oci archive", f("blobs/sha256/"+hex, "index.json", "oci-layout"), FormatOCIArchive},
		{"docker 25", f("blobs/sha256/"+hex, "index.json", "manifest.json", "oci-layout"), FormatDocker},
		{"docker legacy", f(hex+"/VERSION", hex+"/json", hex+"/layer.tar", hex+".json", "manifest.json", "repositories"), FormatDocker},
		{"podman", f(hex+".tar", hex+".json", "manifest.json", "repositories"), FormatDocker},
		{"go-containerregistry", f("sha256:"+hex, hex+".tar.gz", "manifest.json"), FormatDocker},
		{"rootfs with ./", f("./", "./bin/sh", "./etc/passwd"), FormatRootfs},
		{"rootfs", f("bin/sh"), FormatRootfs},
		// Decided at bin/sh: an oci-layout after it is a file of the root file system.
		{"rootfs first", f("bin/sh", "oci-layout", "manifest.json"), FormatRootfs},
		{"rootfs of a short hex name", f("abcdef/x", "oci-layout"), FormatRootfs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "x.tar")
			if err := os.WriteFile(p, tarOf(t, tc.entries...), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := Sniff(p)
			if err != nil || got != tc.want {
				t.Fatalf("Sniff = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestOpenRefusesHostileArchives(t *testing.T) {
	dir := t.TempDir()
	layoutFile := entry{name: "oci-layout", body: `{"imageLayoutVersion":"1.0.0"}`}
	for _, tc := range []struct {
		name    string
		entries []entry
		want    string
	}{
		{"symlink", []entry{layoutFile, {name: "index.json", typ: tar.TypeSymlink, link: "/etc/passwd"}}, "only files and directories"},
		{"escape", []entry{layoutFile, {name: "../../escaped", body: "x"}}, "escapes"},
		{"dotdot dir", []entry{layoutFile, {name: "blobs/../../x", body: "x"}}, "escapes"},
		{"no index", []entry{layoutFile}, "read OCI layout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, tc.name+".tar")
			os.WriteFile(f, tarOf(t, tc.entries...), 0o644)
			scratch := t.TempDir()
			_, err := Open(f, scratch)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
				t.Errorf("a refused archive left %d scratch entries", len(ents))
			}
			if _, err := os.Lstat(filepath.Join(dir, "escaped")); err == nil {
				t.Fatal("an entry was written outside the scratch directory")
			}
		})
	}
	if _, err := Open(filepath.Join(dir, "missing"), dir); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("missing file: %v", err)
	}
}
