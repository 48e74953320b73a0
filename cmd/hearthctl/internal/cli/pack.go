package cli

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/spf13/cobra"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/hpkg"
	"hearth.dev/internal/imagesrc"
	"hearth.dev/internal/manifest"
	containerv1 "hearth.dev/proto/hearth/container/v1"
)

func packCmd(g *globals) *cobra.Command {
	var out, keyFile string
	var allowUnsigned bool
	var co composeOpts
	cmd := &cobra.Command{
		Use:   "pack DIR | pack --compose FILE",
		Short: "Make a signed package (.hpkg) from a directory holding manifest.yaml and its images",
		Long: `pack makes one .hpkg file from DIR: its manifest.yaml, every image the manifest names,
and the optional assets/, icon.png or icon.svg, LICENSE and README.md. Nothing else in DIR
is packed. The file is signed with your key (make one with 'hearthctl keys generate'); hosts
install it when they trust your public key.

A package directory:

  hello/
    manifest.yaml          id, version, images, daemons... (see examples/)
    images/app.tar         an image: a 'docker save' file,
    images/postgres/       an OCI image layout directory,
    images/tools.oci.tar   an OCI archive (a tar of a layout),
    images/base.tar.gz     or a plain root file system tarball
    assets/                read-only in the container at /media/hearth/assets
    icon.svg               (or icon.png)
    LICENSE
    README.md

and its manifest names each image with oci:, a path relative to DIR:

  images:
    app: {oci: images/app.tar}
    db:  {oci: images/postgres}

The package holds the images as one OCI layout (a layer two images share is stored once),
each under its name. Packing is reproducible: the same DIR and key give the same bytes.
Images stored on a host (ref:) cannot be packed yet: export them to a file first.`,
		Example: `  hearthctl keys generate --out ~/hearth-dev
  hearthctl pack ./hello --key ~/hearth-dev.key
  hearthctl pack ./hello --key ~/hearth-dev.key --out dist/hello.hpkg
  hearthctl pack ./hello --allow-unsigned      # for tests: installs only with --allow-untrusted`,
		Args: func(cmd *cobra.Command, args []string) error {
			if co.file != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var key ed25519.PrivateKey
			switch {
			case keyFile != "" && allowUnsigned:
				return fmt.Errorf("give --key or --allow-unsigned, not both: %w", errdefs.ErrInvalidArgument)
			case keyFile != "":
				var err error
				if key, err = hpkg.ReadPrivateKey(keyFile); err != nil {
					return err
				}
			case co.file != "":
			case !allowUnsigned:
				return fmt.Errorf("a package is signed: give --key KEY (make one with hearthctl keys generate), or --allow-unsigned for a package that installs only with --allow-untrusted: %w", errdefs.ErrInvalidArgument)
			}
			if co.file != "" {
				return packCompose(cmd.Context(), g, co, out, key, allowUnsigned)
			}
			res, err := pack(args[0], out, key, newProgressView(g))
			if err != nil {
				return err
			}
			if g.output == "json" {
				b, _ := json.MarshalIndent(res, "", "  ")
				_, err = fmt.Fprintln(g.stdout, string(b))
				return err
			}
			signer := "unsigned"
			if res.KeyID != "" {
				signer = "signed by key " + res.KeyID
			}
			_, err = fmt.Fprintf(g.stdout, "%s: %s %s, %d images, %s, %s\nsha256 %s\n", res.File, res.ID, res.Version, len(res.Images), human(res.Size), signer, res.SHA256)
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write (default ID-VERSION.hpkg in the current directory); with --compose, a directory to write instead (one that exists, or ends in /)")
	cmd.Flags().StringVar(&keyFile, "key", "", "private key to sign with (from hearthctl keys generate)")
	cmd.Flags().BoolVar(&allowUnsigned, "allow-unsigned", false, "write an unsigned package (hosts install it only with --allow-untrusted)")
	addComposeFlags(cmd, &co)
	return cmd
}

// packResult is what pack reports.
type packResult struct {
	File    string   `json:"file"`
	ID      string   `json:"id"`
	Version string   `json:"version"`
	Images  []string `json:"images"`
	Size    int64    `json:"size"`
	SHA256  string   `json:"sha256"`
	KeyID   string   `json:"key_id,omitempty"`
	Seconds float64  `json:"seconds"`
}

// pack writes the package of dir to out (or ID-VERSION.hpkg).
func pack(dir, out string, key ed25519.PrivateKey, view *progressView) (*packResult, error) {
	start := time.Now()
	mpath := filepath.Join(dir, hpkg.ManifestName)
	mdata, err := os.ReadFile(mpath)
	if err != nil {
		return nil, fmt.Errorf("%s is not a package directory: %w: %w", dir, err, errdefs.ErrInvalidArgument)
	}
	m, err := manifest.ParseFile(mpath, mdata)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	at := func(field string) string {
		if l, c := manifest.Position(mdata, field); l > 0 {
			return fmt.Sprintf("%s:%d:%d: %s", mpath, l, c, field)
		}
		return mpath + ": " + field
	}
	names := slices.Sorted(maps.Keys(m.Images))
	for _, n := range names {
		if m.Images[n].Ref != "" {
			return nil, fmt.Errorf("%s: %q is an image stored on one host; a package carries its images: export it to a file (docker save, an OCI layout) and give oci: with its path (packing from a host's store is not supported yet): %w",
				at("images."+n+".ref"), m.Images[n].Ref, errdefs.ErrInvalidArgument)
		}
	}
	if out == "" {
		out = m.ID + "-" + m.Version + ".hpkg"
	}
	scratch, err := os.MkdirTemp(filepath.Dir(out), ".hearthctl-pack-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)

	// One OCI layout holding every image, each under its name.
	lay, err := layout.Write(filepath.Join(scratch, "images"), empty.Index)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		src, err := imagesrc.Open(filepath.Join(dir, filepath.FromSlash(m.Images[n].OCI)), scratch)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at("images."+n+".oci"), err)
		}
		err = addImage(lay, n, src.Image, view)
		src.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: image %s: %w", at("images."+n+".oci"), n, err)
		}
	}

	files := []hpkg.File{hpkg.DiskFile(hpkg.ManifestName, mpath)}
	total := int64(len(mdata))
	addTree := func(p, prefix string) error {
		tree, err := hpkg.Tree(p, prefix)
		if err != nil {
			return err
		}
		files = append(files, tree...)
		return filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					total += fi.Size()
				}
			}
			return err
		})
	}
	if err := addTree(filepath.Join(scratch, "images"), "images"); err != nil {
		return nil, err
	}
	for _, name := range []string{"assets", "icon.png", "icon.svg", "LICENSE", "README.md"} {
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return nil, err
		case name == "assets" && fi.IsDir():
			if err := addTree(p, "assets"); err != nil {
				return nil, err
			}
		case name != "assets" && fi.Mode().IsRegular():
			files = append(files, hpkg.DiskFile(name, p))
			total += fi.Size()
		default:
			return nil, fmt.Errorf("%s is a %v; want a regular file (assets: a directory): %w", p, fi.Mode().Type(), errdefs.ErrInvalidArgument)
		}
	}

	// Write reads every file twice (to hash, to write): count both passes.
	total *= 2
	var done atomic.Int64
	for i := range files {
		if open := files[i].Open; open != nil {
			files[i].Open = func() (io.ReadCloser, error) {
				rc, err := open()
				if err != nil {
					return nil, err
				}
				return &countingRC{rc: rc, add: func(n int64) {
					view.throttled(&containerv1.ImageProgress{Phase: "packing", BytesDone: min(done.Add(n), total), BytesTotal: total})
				}}, nil
			}
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(tmp, h)}
	err = hpkg.Write(cw, files, key)
	view.done()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	res := &packResult{File: out, ID: m.ID, Version: m.Version, Images: names, Size: cw.n,
		SHA256: hex.EncodeToString(h.Sum(nil)), Seconds: time.Since(start).Seconds()}
	if key != nil {
		res.KeyID = hpkg.KeyID(key.Public().(ed25519.PublicKey))
	}
	return res, nil
}

// addImage writes img's blobs into the layout (those already there are kept: images
// share them) and adds an index entry named for it.
func addImage(lay layout.Path, name string, img v1.Image, view *progressView) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var total int64
	for _, l := range layers {
		if sz, err := l.Size(); err == nil {
			total += sz
		}
	}
	p := &containerv1.ImageProgress{Phase: "image " + name, LayersTotal: int32(len(layers)), BytesTotal: total}
	view.update(p)
	var base int64
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		cr := &countingRC{rc: rc, add: func(n int64) {
			p.BytesDone += n
			view.throttled(p)
		}}
		if err := lay.WriteBlob(d, cr); err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
		sz, _ := l.Size()
		base += sz
		p.LayersDone, p.BytesDone = int32(i+1), base
		view.update(p)
	}
	view.done()
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if err := lay.WriteBlob(cfgName, io.NopCloser(bytes.NewReader(cfg))); err != nil {
		return err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	if err := lay.WriteBlob(d, io.NopCloser(bytes.NewReader(raw))); err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	return lay.AppendDescriptor(v1.Descriptor{MediaType: mt, Size: int64(len(raw)), Digest: d,
		Annotations: map[string]string{hpkg.AnnotationImageName: name}})
}

type countingRC struct {
	rc  io.ReadCloser
	add func(int64)
}

func (c *countingRC) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	if n > 0 {
		c.add(int64(n))
	}
	return n, err
}

func (c *countingRC) Close() error { return c.rc.Close() }

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
