// Package ocipkg stores Hearth packages in OCI registries as artifacts and fetches them
// back. An artifact is an OCI image manifest with artifactType ArtifactType, the empty
// config (application/vnd.oci.empty.v1+json, "{}") and one layer: the .hpkg file as is,
// of media type LayerMediaType, annotated with its file name, package id and version.
// docs/marketplace.md describes it. The client checks the layer's digest as it
// downloads; the host verifies the package's own signature when it installs it.
package ocipkg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"hearth.dev/internal/errdefs"
)

// Media types of a package artifact.
const (
	ArtifactType   = "application/vnd.hearth.package.v1"
	LayerMediaType = "application/vnd.hearth.package.v1+tar"
	EmptyConfig    = "application/vnd.oci.empty.v1+json"
)

// Annotations on the layer (and the manifest).
const (
	AnnotationTitle   = "org.opencontainers.image.title"
	AnnotationID      = "dev.hearth.package.id"
	AnnotationVersion = "dev.hearth.package.version"
)

// Scheme prefixes a reference given to hearthctl install.
const Scheme = "oci://"

// Options of a registry call.
type Options struct {
	// Insecure allows plain HTTP to the registry.
	Insecure bool
	// Keychain gives credentials (default authn.DefaultKeychain: the docker config file).
	Keychain authn.Keychain
	// Progress, when set, hears bytes done of the total.
	Progress func(done, total int64)
}

func (o Options) remote(ctx context.Context) []remote.Option {
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
}

func parse(ref string, o Options) (name.Reference, error) {
	var opts []name.Option
	if o.Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(strings.TrimPrefix(ref, Scheme), opts...)
	if err != nil {
		return nil, fmt.Errorf("reference %q: %v; give REGISTRY/REPO:TAG (or @sha256:...): %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return r, nil
}

// fileLayer is a file as an OCI blob, read from disk (not held in memory).
type fileLayer struct {
	path   string
	size   int64
	digest v1.Hash
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return LayerMediaType, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	return os.Open(l.path)
}

// manifest is an OCI image manifest with the artifactType field (which v1.Manifest lacks).
type manifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// rawManifest is a manifest to put as is.
type rawManifest struct{ b []byte }

func (m rawManifest) RawManifest() ([]byte, error)        { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// Pushed says what Push stored.
type Pushed struct {
	Reference string // REGISTRY/REPO@sha256:... of the manifest
	Layer     string // the package file's digest
	Size      int64
}

// Push stores the package file as an artifact at ref (REGISTRY/REPO:TAG), annotated
// with the package's id and version.
func Push(ctx context.Context, file, ref, id, version string, o Options) (*Pushed, error) {
	r, err := parse(ref, o)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	h, size, err := v1.SHA256(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	layer := &fileLayer{path: file, size: size, digest: h}
	config := static.NewLayer([]byte("{}"), EmptyConfig)
	if err := remote.WriteLayer(r.Context(), config, o.remote(ctx)...); err != nil {
		return nil, registryError("push to", r, err)
	}
	ropts := o.remote(ctx)
	var progressDone chan struct{}
	if o.Progress != nil {
		// The channel is closed by WriteLayer when it returns.
		ch := make(chan v1.Update, 16)
		progressDone = make(chan struct{})
		go func() {
			defer close(progressDone)
			for u := range ch {
				o.Progress(u.Complete, u.Total)
			}
		}()
		ropts = append(ropts, remote.WithProgress(ch))
	}
	err = remote.WriteLayer(r.Context(), layer, ropts...)
	if progressDone != nil {
		<-progressDone
	}
	if err != nil {
		return nil, registryError("push to", r, err)
	}
	cd, _ := config.Digest()
	ann := map[string]string{AnnotationTitle: filepath.Base(file), AnnotationID: id, AnnotationVersion: version}
	mf := manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config:        v1.Descriptor{MediaType: EmptyConfig, Size: 2, Digest: cd},
		Layers:        []v1.Descriptor{{MediaType: LayerMediaType, Size: size, Digest: h, Annotations: ann}},
		Annotations:   map[string]string{AnnotationID: id, AnnotationVersion: version},
	}
	raw, err := json.Marshal(mf)
	if err != nil {
		return nil, err
	}
	if err := remote.Put(r, rawManifest{raw}, o.remote(ctx)...); err != nil {
		return nil, registryError("push to", r, err)
	}
	md, _, _ := v1.SHA256(bytes.NewReader(raw))
	return &Pushed{Reference: r.Context().Digest(md.String()).String(), Layer: h.String(), Size: size}, nil
}

// registryError says what the registry refused, with a hint for credentials.
func registryError(verb string, r name.Reference, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%s %s: the registry refused the credentials (%v); log in with 'docker login %s' (hearthctl reads the docker config file, $DOCKER_CONFIG/config.json): %w",
				verb, r, err, r.Context().RegistryStr(), errdefs.ErrPermissionDenied)
		case http.StatusNotFound:
			return fmt.Errorf("%s %s: not found: %v: %w", verb, r, err, errdefs.ErrNotFound)
		}
	}
	return fmt.Errorf("%s %s: %w: %w", verb, r, err, errdefs.ErrUnavailable)
}

// Fetched is a package fetched from a registry.
type Fetched struct {
	Path        string // the cached file: dir/<sha256>.hpkg
	ID, Version string // from the annotations (the host reads the package's own)
	Digest      string
}

// Fetch downloads the package artifact at ref into dir/<sha256>.hpkg, checking the
// manifest is a Hearth package's and the layer's size and digest as it writes.
func Fetch(ctx context.Context, ref, dir string, o Options) (*Fetched, error) {
	r, err := parse(ref, o)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(r, o.remote(ctx)...)
	if err != nil {
		return nil, registryError("fetch", r, err)
	}
	var mf manifest
	if err := json.Unmarshal(desc.Manifest, &mf); err != nil {
		return nil, fmt.Errorf("fetch %s: its manifest: %v: %w", r, err, errdefs.ErrInvalidArgument)
	}
	if mf.ArtifactType != ArtifactType || len(mf.Layers) != 1 || mf.Layers[0].MediaType != LayerMediaType {
		return nil, fmt.Errorf("fetch %s: not a Hearth package (artifactType %q with one %s layer expected; 'hearthctl push' stores packages): %w",
			r, mf.ArtifactType, LayerMediaType, errdefs.ErrInvalidArgument)
	}
	ld := mf.Layers[0]
	if ld.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("fetch %s: layer digest %s: only sha256 is known: %w", r, ld.Digest, errdefs.ErrInvalidArgument)
	}
	out := &Fetched{ID: ld.Annotations[AnnotationID], Version: ld.Annotations[AnnotationVersion], Digest: ld.Digest.String()}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	out.Path = filepath.Join(dir, ld.Digest.Hex+".hpkg")
	if sum, n, err := hashFile(out.Path); err == nil && sum == ld.Digest.Hex && n == ld.Size {
		return out, nil
	}
	layer, err := remote.Layer(r.Context().Digest(ld.Digest.String()), o.remote(ctx)...)
	if err != nil {
		return nil, registryError("fetch", r, err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, registryError("fetch", r, err)
	}
	defer rc.Close()
	tmp := out.Path + ".part"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	h := sha256.New()
	var done int64
	buf := make([]byte, 256<<10)
	for done <= ld.Size {
		n, rerr := rc.Read(buf)
		if n > 0 {
			done += int64(n)
			if done > ld.Size {
				break
			}
			h.Write(buf[:n])
			if _, err := f.Write(buf[:n]); err != nil {
				f.Close()
				return nil, err
			}
			if o.Progress != nil {
				o.Progress(done, ld.Size)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return nil, fmt.Errorf("fetch %s: the download failed after %d of %d bytes: %v: %w", r, done, ld.Size, rerr, errdefs.ErrUnavailable)
		}
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); done != ld.Size || got != ld.Digest.Hex {
		return nil, fmt.Errorf("fetch %s: the package layer is %d bytes with sha256 %s, its manifest names %d bytes with %s: the registry's copy was altered or damaged; nothing was installed: %w",
			r, done, got, ld.Size, ld.Digest, errdefs.ErrInvalidArgument)
	}
	if err := os.Rename(tmp, out.Path); err != nil {
		return nil, err
	}
	return out, nil
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}
