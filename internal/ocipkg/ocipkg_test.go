package ocipkg

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"hearth.dev/internal/errdefs"
)

// basicAuth puts a handler behind HTTP basic auth.
func basicAuth(h http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

type staticKeychain authn.Basic

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	b := authn.Basic(k)
	return &b, nil
}

func TestPushFetch(t *testing.T) {
	srv := httptest.NewServer(basicAuth(registry.New(registry.Logger(log.New(io.Discard, "", 0))), "hearth", "s3cret"))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	file := filepath.Join(t.TempDir(), "demo-1.0.0.hpkg")
	content := bytes.Repeat([]byte("hpkg bytes "), 50000)
	os.WriteFile(file, content, 0o644)
	good := Options{Insecure: true, Keychain: staticKeychain{Username: "hearth", Password: "s3cret"}}
	bad := Options{Insecure: true, Keychain: staticKeychain{Username: "hearth", Password: "wrong"}}
	ctx := context.Background()

	ref := host + "/apps/demo:1.0.0"
	var last int64
	good.Progress = func(done, total int64) { last = done }
	p, err := Push(ctx, file, ref, "demo", "1.0.0", good)
	if err != nil {
		t.Fatal(err)
	}
	if p.Size != int64(len(content)) || !strings.HasPrefix(p.Reference, host+"/apps/demo@sha256:") {
		t.Errorf("pushed: %+v", p)
	}
	good.Progress = nil

	tests := []struct {
		name string
		ref  string
		o    Options
		want string
		kind error
	}{
		{"by tag", Scheme + ref, good, "", nil},
		{"by digest", p.Reference, good, "", nil},
		{"wrong credentials", ref, bad, "refused the credentials", errdefs.ErrPermissionDenied},
		{"no such tag", host + "/apps/demo:9.9.9", good, "not found", errdefs.ErrNotFound},
		{"bad reference", "oci://Not A Ref", good, "give REGISTRY/REPO:TAG", errdefs.ErrInvalidArgument},
		{"an image, not a package", host + "/apps/image:1", good, "not a Hearth package", errdefs.ErrInvalidArgument},
	}
	img, _ := random.Image(100, 1)
	r, _ := name.ParseReference(host+"/apps/image:1", name.Insecure)
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "hearth", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f, err := Fetch(ctx, tt.ref, dir, tt.o)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, tt.kind) {
					t.Fatalf("err = %v, want %q (%v)", err, tt.want, tt.kind)
				}
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Errorf("a refused fetch left %v", ents)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(f.Path)
			if !bytes.Equal(got, content) || f.ID != "demo" || f.Version != "1.0.0" || f.Digest != p.Layer {
				t.Fatalf("fetched %+v, %d bytes", f, len(got))
			}
		})
	}
	if _, err := Push(ctx, file, host+"/apps/demo:2", "demo", "1.0.0", bad); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("push with wrong credentials: %v", err)
	}
	if last != int64(len(content)) {
		t.Errorf("push progress ended at %d of %d", last, len(content))
	}
}
