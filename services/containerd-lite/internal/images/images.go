// Package images keeps containerd-lite's images: imported from OCI layouts, OCI archives,
// docker save archives and root file system tarballs, or pulled from registries; stored
// once per config digest as an unpacked read-only root file system; named, listed,
// removed and garbage-collected. An import that dies half way leaves nothing visible:
// layers are unpacked aside and renamed into place before the record is written.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hearth.dev/internal/atomicfile"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/imagesrc"
	"hearth.dev/internal/manifest"
	"hearth.dev/services/containerd-lite/internal/store"
	"hearth.dev/services/containerd-lite/internal/unpack"
)

// Progress reports a long image operation.
type Progress struct {
	Phase       string
	Layer       string
	LayersDone  int
	LayersTotal int
	BytesDone   int64
	BytesTotal  int64
}

// Image is a stored image with its names and users.
type Image struct {
	store.Image
	Names  []string
	Rootfs string
	UsedBy []string
}

// Options configure a Service.
type Options struct {
	// Dir holds rootfs/<hex> and tmp/.
	Dir    string
	Store  *store.Store
	Logger *slog.Logger
	Limits unpack.Limits
	// UsedBy reports the containers that use an image digest.
	UsedBy func(digest string) ([]string, error)
}

// Service is the image store.
type Service struct {
	opts Options
	log  *slog.Logger
	// mu serializes changes to the store; imports unpack outside it.
	mu sync.Mutex
}

// New returns the image store in opts.Dir, creating its directories.
func New(opts Options) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.UsedBy == nil {
		opts.UsedBy = func(string) ([]string, error) { return nil, nil }
	}
	for _, d := range []string{opts.Dir, filepath.Join(opts.Dir, "rootfs"), filepath.Join(opts.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// rootfs/ must be reachable when containers mount from it (by root, on the host).
	if err := os.Chmod(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	return &Service{opts: opts, log: opts.Logger}, nil
}

// Rootfs is the host path of an image's unpacked root file system.
func (s *Service) Rootfs(digest string) string {
	return filepath.Join(s.opts.Dir, "rootfs", strings.TrimPrefix(digest, "sha256:"))
}

// Reconcile removes what a crash left: half-unpacked imports, and unpacked trees
// without a record.
func (s *Service) Reconcile(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tmp := filepath.Join(s.opts.Dir, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
			return err
		}
		s.log.Warn("reconcile: removed an interrupted import", "dir", e.Name())
	}
	imgs, err := s.opts.Store.ListImages()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, img := range imgs {
		known[strings.TrimPrefix(img.Digest, "sha256:")] = true
		if _, err := os.Stat(s.Rootfs(img.Digest)); err != nil {
			s.log.Error("reconcile: image record without its root file system; pull or import it again", "digest", img.Digest)
		}
	}
	_, err = s.sweepLocked(known)
	return err
}

// sweepLocked removes unpacked trees that have no record and no container using them
// (a crash between rename and record, or an image deleted by force while in use).
func (s *Service) sweepLocked(known map[string]bool) (int, error) {
	ents, err := os.ReadDir(filepath.Join(s.opts.Dir, "rootfs"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if known[e.Name()] {
			continue
		}
		if users, err := s.opts.UsedBy("sha256:" + e.Name()); err != nil {
			return n, err
		} else if len(users) > 0 {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.opts.Dir, "rootfs", e.Name())); err != nil {
			return n, err
		}
		n++
		s.log.Warn("removed an unpacked image without a record", "digest", e.Name())
	}
	return n, nil
}

// Import imports the image at path (see imagesrc.Open for the formats) and names it.
func (s *Service) Import(ctx context.Context, path, imgName string, progress func(Progress)) (Image, error) {
	if imgName != "" {
		var err error
		if imgName, err = NormalizeName(imgName); err != nil {
			return Image{}, err
		}
	}
	progress = orNop(progress)
	progress(Progress{Phase: "reading"})
	format, err := imagesrc.Sniff(path)
	if err != nil {
		return Image{}, fmt.Errorf("import: %w", err)
	}
	if format == imagesrc.FormatRootfs {
		s.log.Info("importing image", "path", path, "format", format)
		return s.importRootfs(ctx, path, imgName, progress)
	}
	src, err := imagesrc.Open(path, filepath.Join(s.opts.Dir, "tmp"))
	if err != nil {
		return Image{}, fmt.Errorf("import: %w", err)
	}
	defer src.Close()
	s.log.Info("importing image", "path", path, "format", src.Format)
	return s.add(ctx, src.Image, imgName, src.RawSize, progress)
}

// Pull pulls ref from its registry, resolving a multi-platform index to this host, with
// credentials from the docker config file, and names the image (ref when name is empty).
func (s *Service) Pull(ctx context.Context, refStr, imgName string, insecure bool, progress func(Progress)) (Image, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(refStr, opts...)
	if err != nil {
		return Image{}, fmt.Errorf("pull %q: %w: %w", refStr, err, errdefs.ErrInvalidArgument)
	}
	if imgName == "" {
		imgName = refStr
	}
	if imgName, err = NormalizeName(imgName); err != nil {
		return Image{}, err
	}
	progress = orNop(progress)
	progress(Progress{Phase: "resolving"})
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithPlatform(imagesrc.HostPlatform),
		remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w: %w", refStr, err, errdefs.ErrUnavailable)
	}
	return s.add(ctx, img, imgName, 0, progress)
}

func orNop(p func(Progress)) func(Progress) {
	if p == nil {
		return func(Progress) {}
	}
	return p
}

// add stores img under its config digest unless it is stored already, then names it.
// With rawTotal > 0 the layers are read uncompressed (their source holds them so) and
// progress counts against rawTotal; otherwise the stored, compressed blobs are read and
// counted against their sizes.
func (s *Service) add(ctx context.Context, img v1.Image, imgName string, rawTotal int64, progress func(Progress)) (Image, error) {
	digest, err := img.ConfigName()
	if err != nil {
		return Image{}, fmt.Errorf("read image config: %w", err)
	}
	d := digest.String()
	if _, err := s.opts.Store.GetImage(d); err == nil {
		// Stored once: only the name is new.
		s.mu.Lock()
		if imgName != "" {
			err = s.opts.Store.SetName(imgName, d)
		}
		s.mu.Unlock()
		if err != nil {
			return Image{}, err
		}
		s.log.Info("image already stored", "digest", d, "name", imgName)
		return s.Get(ctx, d)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Image{}, fmt.Errorf("read image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return Image{}, fmt.Errorf("read image layers: %w", err)
	}
	if len(layers) != len(cf.RootFS.DiffIDs) {
		return Image{}, fmt.Errorf("image has %d layers but its config lists %d: %w", len(layers), len(cf.RootFS.DiffIDs), errdefs.ErrInvalidArgument)
	}
	total := rawTotal
	if rawTotal == 0 {
		for _, l := range layers {
			if sz, err := l.Size(); err == nil {
				total += sz
			}
		}
	}
	root, u, cleanup, err := s.scratch()
	if err != nil {
		return Image{}, err
	}
	defer cleanup()
	p := Progress{Phase: "unpacking", LayersTotal: len(layers), BytesTotal: total}
	var done int64
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return Image{}, err
		}
		want := cf.RootFS.DiffIDs[i]
		p.Layer = want.String()
		progress(p)
		n, err := applyLayer(u, l, want, rawTotal > 0, func(read int64) {
			p.BytesDone = done + read
			progress(p)
		})
		if errors.Is(err, unpack.ErrRefused) {
			return Image{}, fmt.Errorf("layer %d of %d (%s): %w: %w", i+1, len(layers), want, err, errdefs.ErrInvalidArgument)
		}
		if err != nil {
			return Image{}, fmt.Errorf("layer %d of %d (%s): %w", i+1, len(layers), want, err)
		}
		done += n
		p.LayersDone = i + 1
		p.BytesDone = done
		progress(p)
	}
	progress(Progress{Phase: "committing", LayersDone: len(layers), LayersTotal: len(layers), BytesDone: done, BytesTotal: total})
	return s.commit(d, cf, root, u.Stats().Bytes, imgName)
}

// scratch makes an empty root under tmp/ to unpack an image into, and its unpacker,
// whose files go to disk in the background as they are written (flusher); cleanup
// removes what is left of it.
func (s *Service) scratch() (root string, u *unpack.Unpacker, cleanup func(), err error) {
	tmp, err := os.MkdirTemp(filepath.Join(s.opts.Dir, "tmp"), "import-")
	if err != nil {
		return "", nil, nil, err
	}
	root = filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", nil, nil, err
	}
	fl, err := startFlusher(root)
	if err != nil {
		os.RemoveAll(tmp)
		return "", nil, nil, err
	}
	if u, err = unpack.New(root, s.opts.Limits); err != nil {
		fl.stop()
		os.RemoveAll(tmp)
		return "", nil, nil, err
	}
	u.Progress = fl.progress
	return root, u, func() { fl.stop(); u.Close(); os.RemoveAll(tmp) }, nil
}

// importRootfs imports a root file system tarball in one pass: the layer's diff id, and
// so the digest of the image's config, is hashed while it unpacks. The same tarball
// imported again is unpacked again, then found stored and dropped.
func (s *Service) importRootfs(ctx context.Context, path, imgName string, progress func(Progress)) (Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return Image{}, fmt.Errorf("import: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Image{}, err
	}
	root, u, cleanup, err := s.scratch()
	if err != nil {
		return Image{}, err
	}
	defer cleanup()
	p := Progress{Phase: "unpacking", LayersTotal: 1, BytesTotal: fi.Size()}
	progress(p)
	cr := &countingReader{ctx: ctx, r: f, report: func(read int64) {
		p.BytesDone = read
		progress(p)
	}}
	tarStream, err := imagesrc.Decompress(cr)
	if err != nil {
		return Image{}, fmt.Errorf("import %s: %w: %w", path, err, errdefs.ErrInvalidArgument)
	}
	defer tarStream.Close()
	diffID, err := applyTar(u, tarStream)
	if errors.Is(err, unpack.ErrRefused) {
		return Image{}, fmt.Errorf("import %s: %w: %w", path, err, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return Image{}, fmt.Errorf("import %s: %w", path, err)
	}
	p.LayersDone, p.BytesDone = 1, cr.n
	progress(p)
	cf := imagesrc.RootfsConfig(diffID)
	d, err := imagesrc.ConfigDigest(cf)
	if err != nil {
		return Image{}, err
	}
	progress(Progress{Phase: "committing", LayersDone: 1, LayersTotal: 1, BytesDone: cr.n, BytesTotal: fi.Size()})
	return s.commit(d.String(), cf, root, u.Stats().Bytes, imgName)
}

// commit moves the tree unpacked at root into the store as image d, unless it is
// stored already, and names it.
func (s *Service) commit(d string, cf *v1.ConfigFile, root string, size int64, imgName string) (Image, error) {
	rec := store.Image{Digest: d, Size: size, CreatedAt: time.Now().UTC(), Config: configOf(cf)}
	for _, id := range cf.RootFS.DiffIDs {
		rec.Layers = append(rec.Layers, id.String())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.opts.Store.GetImage(d); err != nil {
		// Rename into place, then record: a crash between the two leaves an unrecorded
		// tree that Reconcile removes. A tree already there is this very image, kept
		// after a forced delete while a container used it: it is reused.
		if _, err := os.Lstat(s.Rootfs(d)); err != nil {
			if err := atomicfile.CommitDir(root, s.Rootfs(d)); err != nil {
				return Image{}, fmt.Errorf("commit image: %w", err)
			}
		}
		if err := s.opts.Store.PutImage(rec, imgName); err != nil {
			os.RemoveAll(s.Rootfs(d))
			return Image{}, err
		}
	} else if imgName != "" {
		// Another import of the same image won the race.
		if err := s.opts.Store.SetName(imgName, d); err != nil {
			return Image{}, err
		}
	}
	s.log.Info("image stored", "digest", d, "name", imgName, "bytes", rec.Size, "layers", len(rec.Layers))
	return s.getLocked(d)
}

// countingReader counts bytes read and reports them; it fails once ctx is done.
type countingReader struct {
	ctx    context.Context
	r      io.Reader
	n      int64
	report func(int64)
	last   int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.ctx != nil {
		if err := c.ctx.Err(); err != nil {
			return 0, err
		}
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n-c.last >= 256<<10 || err != nil {
		c.last = c.n
		c.report(c.n)
	}
	return n, err
}

// applyLayer unpacks one layer, checking its uncompressed content against the diff id.
// It returns the bytes read: of the stored blob, or of the tar itself when raw.
func applyLayer(u *unpack.Unpacker, l v1.Layer, diffID v1.Hash, raw bool, report func(int64)) (int64, error) {
	var rc io.ReadCloser
	var err error
	if raw {
		rc, err = l.Uncompressed()
	} else {
		rc, err = l.Compressed()
	}
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	cr := &countingReader{r: rc, report: report}
	tarStream := io.Reader(cr)
	if !raw {
		dr, err := imagesrc.Decompress(cr)
		if err != nil {
			return 0, err
		}
		defer dr.Close()
		tarStream = dr
	}
	got, err := applyTar(u, tarStream)
	if err != nil {
		return cr.n, err
	}
	if diffID.Algorithm == "sha256" && got != diffID {
		return cr.n, fmt.Errorf("content is %s, but the image config says %s: the image is corrupt: %w", got, diffID, errdefs.ErrInvalidArgument)
	}
	return cr.n, nil
}

// applyTar applies one layer's tar stream and returns its sha256, hashed as it is read
// (ahead of the unpacker, in a goroutine of its own).
func applyTar(u *unpack.Unpacker, tarStream io.Reader) (v1.Hash, error) {
	h := sha256.New()
	ra := newReadAhead(tarStream, h)
	defer ra.Close()
	if err := u.Apply(ra); err != nil {
		return v1.Hash{}, err
	}
	// Drain what the tar reader left (padding after the end marker) into the hash.
	if _, err := io.Copy(io.Discard, ra); err != nil {
		return v1.Hash{}, err
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, nil
}

func configOf(cf *v1.ConfigFile) store.ImageConfig {
	c := cf.Config
	out := store.ImageConfig{Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, User: c.User, WorkingDir: c.WorkingDir, Labels: c.Labels}
	for p := range c.ExposedPorts {
		out.ExposedPorts = append(out.ExposedPorts, p)
	}
	sort.Strings(out.ExposedPorts)
	return out
}

var nameRE = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$`)

// NormalizeName checks an image name and adds ":latest" when it has no tag.
func NormalizeName(n string) (string, error) {
	if !nameRE.MatchString(n) || len(n) > 255 {
		return "", fmt.Errorf("image name %q: use lower-case letters, digits, '.', '_', '-' and '/' with an optional :tag, such as app or app:1.2: %w", n, errdefs.ErrInvalidArgument)
	}
	if i := strings.LastIndex(n, "/"); !strings.Contains(n[i+1:], ":") {
		n += ":latest"
	}
	return n, nil
}

// Resolve finds the digest for a name, a digest, or an unambiguous digest prefix.
func (s *Service) Resolve(ref string) (string, error) {
	names, err := s.opts.Store.Names()
	if err != nil {
		return "", err
	}
	if d, ok := names[ref]; ok {
		return d, nil
	}
	if n, err := NormalizeName(ref); err == nil {
		if d, ok := names[n]; ok {
			return d, nil
		}
	}
	hexRef := strings.TrimPrefix(ref, "sha256:")
	if len(hexRef) >= 4 && strings.Trim(hexRef, "0123456789abcdef") == "" {
		imgs, err := s.opts.Store.ListImages()
		if err != nil {
			return "", err
		}
		var match []string
		for _, img := range imgs {
			if strings.HasPrefix(strings.TrimPrefix(img.Digest, "sha256:"), hexRef) {
				match = append(match, img.Digest)
			}
		}
		switch len(match) {
		case 1:
			return match[0], nil
		case 0:
		default:
			return "", fmt.Errorf("image %q: %d images have digests starting so; give more digits: %w", ref, len(match), errdefs.ErrInvalidArgument)
		}
	}
	return "", fmt.Errorf("image %q: no name or digest matches; see 'hearthctl image ls': %w", ref, errdefs.ErrNotFound)
}

// Get reports one image by name or digest.
func (s *Service) Get(ctx context.Context, ref string) (Image, error) {
	d, err := s.Resolve(ref)
	if err != nil {
		return Image{}, err
	}
	return s.getLocked(d)
}

func (s *Service) getLocked(digest string) (Image, error) {
	rec, err := s.opts.Store.GetImage(digest)
	if err != nil {
		return Image{}, err
	}
	names, err := s.opts.Store.NamesOf(digest)
	if err != nil {
		return Image{}, err
	}
	users, err := s.opts.UsedBy(digest)
	if err != nil {
		return Image{}, err
	}
	return Image{Image: rec, Names: names, Rootfs: s.Rootfs(digest), UsedBy: users}, nil
}

// List reports every image, newest first.
func (s *Service) List(ctx context.Context) ([]Image, error) {
	recs, err := s.opts.Store.ListImages()
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(recs))
	for _, r := range recs {
		img, err := s.getLocked(r.Digest)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// Tag points a new name at the image ref names.
func (s *Service) Tag(ctx context.Context, ref, newName string) (Image, error) {
	n, err := NormalizeName(newName)
	if err != nil {
		return Image{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.Resolve(ref)
	if err != nil {
		return Image{}, err
	}
	if err := s.opts.Store.SetName(n, d); err != nil {
		return Image{}, err
	}
	return s.getLocked(d)
}

// Delete removes a name; the image goes when no name is left and no container uses it.
// Given a digest, the image goes with all its names. An image a container uses is
// refused unless force is set. It returns the digests removed.
func (s *Service) Delete(ctx context.Context, ref string, force bool) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.Resolve(ref)
	if err != nil {
		return nil, err
	}
	names, err := s.opts.Store.NamesOf(d)
	if err != nil {
		return nil, err
	}
	byName := slices.Contains(names, ref)
	if !byName {
		if n, err := NormalizeName(ref); err == nil && slices.Contains(names, n) {
			ref, byName = n, true
		}
	}
	if byName && len(names) > 1 {
		return nil, s.opts.Store.DeleteName(ref)
	}
	users, err := s.opts.UsedBy(d)
	if err != nil {
		return nil, err
	}
	if len(users) > 0 && !force {
		return nil, fmt.Errorf("image %s is used by container(s) %s: remove them first, or force: %w", ref, strings.Join(users, ", "), errdefs.ErrFailedPrecondition)
	}
	// Forced while in use: the files stay until no container uses them (Prune, Reconcile).
	if err := s.removeLocked(d, len(users) > 0); err != nil {
		return nil, err
	}
	return []string{d}, nil
}

func (s *Service) removeLocked(digest string, keepFiles bool) error {
	// Record first: an unrecorded tree is swept later; a record without its tree is not.
	if err := s.opts.Store.DeleteImage(digest); err != nil {
		return err
	}
	if keepFiles {
		s.log.Warn("image removed by force while in use; its files stay until unused", "digest", digest)
		return nil
	}
	if err := os.RemoveAll(s.Rootfs(digest)); err != nil {
		return fmt.Errorf("remove image files of %s: %w", digest, err)
	}
	s.log.Info("image removed", "digest", digest)
	return nil
}

// Prune removes every image that has no name and no container using it, and sweeps
// files of images removed while in use that are no longer used.
func (s *Service) Prune(ctx context.Context) ([]string, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, err := s.opts.Store.ListImages()
	if err != nil {
		return nil, 0, err
	}
	var removed []string
	var freed int64
	var errs []error
	for _, r := range recs {
		names, err := s.opts.Store.NamesOf(r.Digest)
		if err != nil {
			return nil, 0, err
		}
		users, err := s.opts.UsedBy(r.Digest)
		if err != nil {
			return nil, 0, err
		}
		if len(names) > 0 || len(users) > 0 {
			continue
		}
		if err := s.removeLocked(r.Digest, false); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, r.Digest)
		freed += r.Size
	}
	known := map[string]bool{}
	if recs, err = s.opts.Store.ListImages(); err != nil {
		return removed, freed, err
	}
	for _, r := range recs {
		known[strings.TrimPrefix(r.Digest, "sha256:")] = true
	}
	if _, err := s.sweepLocked(known); err != nil {
		errs = append(errs, err)
	}
	return removed, freed, errors.Join(errs...)
}

// Defaults returns what an image's config gives a process by default.
func (s *Service) Defaults(digest string) (manifest.ImageDefaults, error) {
	rec, err := s.opts.Store.GetImage(digest)
	if err != nil {
		return manifest.ImageDefaults{}, err
	}
	c := rec.Config
	return manifest.ImageDefaults{Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, User: c.User, WorkingDir: c.WorkingDir}, nil
}

// ImportPackaged imports the image whose index entry in the OCI layout at dir is
// annotated with name (org.opencontainers.image.ref.name: a package's images/), names it
// storeName, and reports its digest and whether the store lacked it.
func (s *Service) ImportPackaged(ctx context.Context, dir, name, storeName string, progress func(done, total int64)) (string, bool, error) {
	if storeName != "" {
		var err error
		if storeName, err = NormalizeName(storeName); err != nil {
			return "", false, err
		}
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return "", false, fmt.Errorf("image layout %s: %w: %w", dir, err, errdefs.ErrInvalidArgument)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return "", false, fmt.Errorf("image layout %s: %w: %w", dir, err, errdefs.ErrInvalidArgument)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return "", false, fmt.Errorf("image layout %s: %w: %w", dir, err, errdefs.ErrInvalidArgument)
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		if d.Annotations[PackagedNameAnnotation] == name {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		return "", false, fmt.Errorf("image layout %s has %d images named %q (annotation %s), want one: %w", dir, len(found), name, PackagedNameAnnotation, errdefs.ErrInvalidArgument)
	}
	img, err := idx.Image(found[0].Digest)
	if err != nil {
		return "", false, fmt.Errorf("image %q in %s: %w: %w", name, dir, err, errdefs.ErrInvalidArgument)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return "", false, fmt.Errorf("image %q in %s: %w: %w", name, dir, err, errdefs.ErrInvalidArgument)
	}
	_, had := s.opts.Store.GetImage(cfg.String())
	got, err := s.add(ctx, img, storeName, 0, func(p Progress) {
		if progress != nil {
			progress(p.BytesDone, p.BytesTotal)
		}
	})
	if err != nil {
		return "", false, err
	}
	return got.Digest, had != nil, nil
}

// PackagedNameAnnotation names an image in a package's OCI layout.
const PackagedNameAnnotation = "org.opencontainers.image.ref.name"

// Unname drops a name, and the image it named when no other name is left and no
// container uses it.
func (s *Service) Unname(ctx context.Context, imgName string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := NormalizeName(imgName)
	if err != nil {
		return err
	}
	names, err := s.opts.Store.Names()
	if err != nil {
		return err
	}
	digest, ok := names[n]
	if !ok {
		return fmt.Errorf("image %s: %w", n, errdefs.ErrNotFound)
	}
	if err := s.opts.Store.DeleteName(n); err != nil {
		return err
	}
	if left, err := s.opts.Store.NamesOf(digest); err != nil || len(left) > 0 {
		return err
	}
	users, err := s.opts.UsedBy(digest)
	if err != nil || len(users) > 0 {
		return err
	}
	return s.removeLocked(digest, false)
}
