package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/grpcserver"
	"hearth.dev/internal/hpkg"
	"hearth.dev/internal/market"
	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// marketHost stands in for containerd-lite's PackageService: demo 1.0.0 is installed
// when installed is set; install and update record the bytes they were sent.
type marketHost struct {
	containerv1.UnimplementedPackageServiceServer
	mu        sync.Mutex
	installed bool
	received  map[string][]byte // "install" / "update" → the file
}

func (h *marketHost) GetPackage(_ context.Context, req *containerv1.GetPackageRequest) (*containerv1.GetPackageResponse, error) {
	if req.GetId() != "demo" || !h.installed {
		return nil, fmt.Errorf("package %q: %w", req.GetId(), errdefs.ErrNotFound)
	}
	return &containerv1.GetPackageResponse{Package: &containerv1.Package{Id: "demo", Version: "1.0.0", State: "running"}}, nil
}

func (h *marketHost) ListPackages(context.Context, *containerv1.ListPackagesRequest) (*containerv1.ListPackagesResponse, error) {
	if !h.installed {
		return &containerv1.ListPackagesResponse{}, nil
	}
	return &containerv1.ListPackagesResponse{Packages: []*containerv1.Package{{Id: "demo", Version: "1.0.0"}}}, nil
}

func receive[Req interface{ GetChunk() []byte }](h *marketHost, verb string, recv func() (Req, error)) ([]byte, error) {
	var buf bytes.Buffer
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		buf.Write(m.GetChunk())
	}
	h.mu.Lock()
	h.received[verb] = buf.Bytes()
	h.mu.Unlock()
	return buf.Bytes(), nil
}

func (h *marketHost) InstallPackage(s grpc.BidiStreamingServer[containerv1.InstallPackageRequest, containerv1.InstallPackageResponse]) error {
	if _, err := receive(h, "install", s.Recv); err != nil {
		return err
	}
	return s.Send(&containerv1.InstallPackageResponse{Event: &containerv1.InstallPackageResponse_Result{Result: &containerv1.PackageResult{Package: &containerv1.Package{Id: "demo", Version: "x", Container: "demo"}}}})
}

func (h *marketHost) UpdatePackage(s grpc.BidiStreamingServer[containerv1.UpdatePackageRequest, containerv1.UpdatePackageResponse]) error {
	if _, err := receive(h, "update", s.Recv); err != nil {
		return err
	}
	return s.Send(&containerv1.UpdatePackageResponse{Event: &containerv1.UpdatePackageResponse_Result{Result: &containerv1.PackageResult{Package: &containerv1.Package{Id: "demo", Version: "x", Container: "demo"}}}})
}

// TestMarketCommands: a signed marketplace (an index over two stand-in package files)
// on a loopback HTTP server; the host is a stand-in. What reaches the host is exactly
// the file the index names, and only when the index and the file check out.
func TestMarketCommands(t *testing.T) {
	files := map[string][]byte{"demo-1.0.0.hpkg": []byte("demo one"), "demo-1.2.0.hpkg": []byte("demo one point two")}
	version := func(v, f string) market.Version {
		sum := sha256.Sum256(files[f])
		return market.Version{Version: v, Size: int64(len(files[f])), SHA256: hex.EncodeToString(sum[:]), URL: f, Notes: "- better"}
	}
	ix := &market.Index{Format: market.FormatVersion, Name: "Test", Packages: []market.Package{{ID: "demo", Title: "Demo app", Description: "Shows things.",
		Versions: []market.Version{version("1.2.0", "demo-1.2.0.hpkg"), version("1.0.0", "demo-1.0.0.hpkg")}}}}
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32))
	data, sig, err := ix.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	serveIndex, serveFiles := data, files
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch n := strings.TrimPrefix(r.URL.Path, "/"); n {
		case market.IndexName:
			w.Write(serveIndex)
		case market.SigName:
			w.Write(sig)
		default:
			if b, ok := serveFiles[n]; ok {
				w.Write(b)
				return
			}
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(home, "cache"))
	pub := filepath.Join(home, "market.pub")
	line, _ := hpkg.PublicKey{Key: key.Public().(ed25519.PublicKey)}.MarshalText()
	if err := os.WriteFile(pub, line, 0o644); err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(data, []byte("Shows things."), []byte("Shows nothing"), 1)

	dir := t.TempDir()
	h := &marketHost{received: map[string][]byte{}}
	serve(t, dir, "containerd-lite", func(s *grpcserver.Server) { containerv1.RegisterPackageServiceServer(s, h) })

	for _, tc := range []struct {
		name      string
		before    func()
		args      []string
		code      int
		stdout    []string
		stderr    []string
		received  string // verb=file the host got, "" for nothing
		installed bool
	}{
		{"install before any marketplace", nil, []string{"install", "demo"}, 1, nil, []string{"no marketplace is added", "market add"}, "", false},
		{"add without a key", nil, []string{"market", "add", "test", srv.URL}, 1, nil, []string{"--allow-unsigned"}, "", false},
		{"add", nil, []string{"market", "add", "test", srv.URL, "--key", pub}, 0, []string{"marketplace test added", hpkg.KeyID(key.Public().(ed25519.PublicKey))}, nil, "", false},
		{"ls", nil, []string{"market", "ls"}, 0, []string{"test", srv.URL}, nil, "", false},
		{"search", nil, []string{"search", "THINGS"}, 0, []string{"demo", "1.2.0", "Demo app", "test"}, nil, "", false},
		{"search finds nothing", nil, []string{"search", "zzz"}, 0, nil, nil, "", false},
		{"info, not installed", nil, []string{"info", "demo"}, 0, []string{"installed:", "1.2.0", "1.0.0", "Shows things.", "better"}, nil, "", false},
		{"info of nothing", nil, []string{"info", "nope"}, 1, nil, []string{`package "nope": not found`}, "", false},
		{"no such version", nil, []string{"install", "demo@2.0.0"}, 1, nil, []string{"no version 2.0.0", "1.2.0, 1.0.0"}, "", false},
		{"install a version", nil, []string{"install", "demo@1.0.0"}, 0, []string{"demo x installed"}, []string{"demo 1.0.0 from marketplace test"}, "install=demo-1.0.0.hpkg", false},
		{"update --check", nil, []string{"update", "--check"}, 0, []string{"demo", "1.0.0", "1.2.0", "test", "better"}, nil, "", true},
		{"update --check takes no id", nil, []string{"update", "--check", "demo"}, 1, nil, []string{"--check takes no argument"}, "", true},
		{"info, installed: the update", nil, []string{"info", "demo"}, 0, []string{"version:", "1.2.0 (hearthctl update demo)"}, nil, "", true},
		{"tampered package", func() { serveFiles = map[string][]byte{"demo-1.2.0.hpkg": []byte("demo one point 2!!")} }, []string{"update", "demo"}, 1, nil,
			[]string{"altered or damaged", "removed"}, "", true},
		{"tampered index", func() { serveFiles, serveIndex = files, tampered }, []string{"update", "demo"}, 1, nil, []string{"index.json.sig does not match"}, "", true},
		{"update", func() { serveIndex = data }, []string{"update", "demo"}, 0, []string{"demo x updated"}, nil, "update=demo-1.2.0.hpkg", true},
		{"a file that exists wins", nil, []string{"install", filepath.Join(home, "market.pub")}, 0, nil, nil, "install=pub", false},
		{"rm", nil, []string{"market", "rm", "test"}, 0, []string{"removed"}, nil, "", false},
		{"rm again", nil, []string{"market", "rm", "test"}, 1, nil, []string{"no marketplace test"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			if tc.before != nil {
				tc.before()
			}
			mu.Unlock()
			h.mu.Lock()
			h.installed, h.received = tc.installed, map[string][]byte{}
			h.mu.Unlock()
			code, stdout, stderr := run(t, dir, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout %q; want it to contain %q", stdout, w)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q; want it to contain %q", stderr, w)
				}
			}
			var got []string
			for verb, b := range h.received {
				name := "?"
				for f, c := range files {
					if bytes.Equal(b, c) {
						name = f
					}
				}
				if bytes.Equal(b, line) {
					name = "pub"
				}
				got = append(got, verb+"="+name)
			}
			if strings.Join(got, ",") != tc.received {
				t.Errorf("the host received %v, want %q", got, tc.received)
			}
		})
	}
}
