package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/grpcserver"
	"hearth.dev/internal/peercred"
	"hearth.dev/internal/unixsock"
	certv1 "hearth.dev/proto/hearth/cert/v1"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	netv1 "hearth.dev/proto/hearth/net/v1"
)

// The daemons below stand in for containerd-lite, certd and netd on real gRPC servers
// (Hearth's own, with its interceptors), so that hearthctl is tested over the wire: they
// answer with fixed data and fail the way the real ones do, with plain errors wrapping
// an errdefs kind. Containers: "web" runs package hello, "plain" runs no package, "nonet"
// cannot be started because netd refuses it; any other name is not found.

func containerNamed(name string) (*containerv1.Container, error) {
	switch name {
	case "web", "plain", "nonet":
		return &containerv1.Container{Name: name, State: containerv1.ContainerState_CONTAINER_STATE_RUNNING, InitPid: 42, CreatedAt: timestamppb.Now()}, nil
	}
	return nil, fmt.Errorf("container %q: %w", name, errdefs.ErrNotFound)
}

type containerd struct {
	containerv1.UnimplementedContainerServiceServer
	containerv1.UnimplementedImageServiceServer
	guestv1.UnimplementedGuestServiceServer
	netdSocket string
}

func (d *containerd) CreateContainer(_ context.Context, req *containerv1.CreateContainerRequest) (*containerv1.CreateContainerResponse, error) {
	if _, err := containerNamed(req.GetName()); err == nil {
		return nil, fmt.Errorf("container %q: %w", req.GetName(), errdefs.ErrAlreadyExists)
	}
	return &containerv1.CreateContainerResponse{Container: &containerv1.Container{Name: req.GetName(), State: containerv1.ContainerState_CONTAINER_STATE_STOPPED}}, nil
}

func (d *containerd) StartContainer(ctx context.Context, req *containerv1.StartContainerRequest) (*containerv1.StartContainerResponse, error) {
	c, err := containerNamed(req.GetName())
	if err != nil {
		return nil, err
	}
	// Ask netd, as containerd-lite does, and pass its refusal on wrapped.
	conn, err := dial.Unix(d.netdSocket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := netv1.NewNetworkServiceClient(conn).AttachContainer(ctx, &netv1.AttachContainerRequest{Container: c.GetName(), InitPid: c.GetInitPid()}); err != nil {
		return nil, fmt.Errorf("attach container %q to netd's bridge: %w", c.GetName(), errdefs.FromGRPC(err))
	}
	return &containerv1.StartContainerResponse{Container: c}, nil
}

func (d *containerd) StopContainer(_ context.Context, req *containerv1.StopContainerRequest) (*containerv1.StopContainerResponse, error) {
	c, err := containerNamed(req.GetName())
	if err != nil {
		return nil, err
	}
	c.State, c.InitPid = containerv1.ContainerState_CONTAINER_STATE_STOPPED, 0
	return &containerv1.StopContainerResponse{Container: c}, nil
}

func (d *containerd) DeleteContainer(_ context.Context, req *containerv1.DeleteContainerRequest) (*containerv1.DeleteContainerResponse, error) {
	if _, err := containerNamed(req.GetName()); err != nil {
		return nil, err
	}
	return &containerv1.DeleteContainerResponse{}, nil
}

func (d *containerd) ListContainers(context.Context, *containerv1.ListContainersRequest) (*containerv1.ListContainersResponse, error) {
	resp := &containerv1.ListContainersResponse{}
	for _, n := range []string{"web", "plain"} {
		c, _ := containerNamed(n)
		resp.Containers = append(resp.Containers, c)
	}
	return resp, nil
}

func (d *containerd) GetContainer(_ context.Context, req *containerv1.GetContainerRequest) (*containerv1.GetContainerResponse, error) {
	c, err := containerNamed(req.GetName())
	if err != nil {
		return nil, err
	}
	resp := &containerv1.GetContainerResponse{Container: c, Guest: &guestv1.GuestInfo{Version: "test", Pid: 1}, Details: &containerv1.ContainerDetails{}}
	if c.GetName() == "web" {
		resp.Guest.Package = "hello"
	}
	return resp, nil
}

var testImage = &containerv1.Image{Digest: "sha256:" + strings.Repeat("ab", 32), Names: []string{"app:1"}, Size: 1 << 20, CreatedAt: timestamppb.Now(), Config: &containerv1.ImageConfig{}}

func (d *containerd) ImportImage(_ *containerv1.ImportImageRequest, stream grpc.ServerStreamingServer[containerv1.ImportImageResponse]) error {
	if err := stream.Send(&containerv1.ImportImageResponse{Event: &containerv1.ImportImageResponse_Progress{Progress: &containerv1.ImageProgress{Phase: "unpack", LayersTotal: 1}}}); err != nil {
		return err
	}
	return stream.Send(&containerv1.ImportImageResponse{Event: &containerv1.ImportImageResponse_Image{Image: testImage}})
}

func (d *containerd) PullImage(_ *containerv1.PullImageRequest, stream grpc.ServerStreamingServer[containerv1.PullImageResponse]) error {
	if err := stream.Send(&containerv1.PullImageResponse{Event: &containerv1.PullImageResponse_Progress{Progress: &containerv1.ImageProgress{Phase: "fetch", LayersTotal: 1}}}); err != nil {
		return err
	}
	return stream.Send(&containerv1.PullImageResponse{Event: &containerv1.PullImageResponse_Image{Image: testImage}})
}

func (d *containerd) ListImages(context.Context, *containerv1.ListImagesRequest) (*containerv1.ListImagesResponse, error) {
	return &containerv1.ListImagesResponse{Images: []*containerv1.Image{testImage}}, nil
}

func (d *containerd) GetImage(_ context.Context, req *containerv1.GetImageRequest) (*containerv1.GetImageResponse, error) {
	if req.GetRef() != "app:1" {
		return nil, fmt.Errorf("image %q: %w", req.GetRef(), errdefs.ErrNotFound)
	}
	return &containerv1.GetImageResponse{Image: testImage}, nil
}

func (d *containerd) TagImage(context.Context, *containerv1.TagImageRequest) (*containerv1.TagImageResponse, error) {
	return &containerv1.TagImageResponse{Image: testImage}, nil
}

func (d *containerd) DeleteImage(context.Context, *containerv1.DeleteImageRequest) (*containerv1.DeleteImageResponse, error) {
	return &containerv1.DeleteImageResponse{Deleted: []string{testImage.GetDigest()}}, nil
}

func (d *containerd) PruneImages(context.Context, *containerv1.PruneImagesRequest) (*containerv1.PruneImagesResponse, error) {
	return &containerv1.PruneImagesResponse{}, nil
}

// guestFor returns the package of the container a guest call names, as guestd answers it.
func guestFor(ctx context.Context) (string, error) {
	names := metadata.ValueFromIncomingContext(ctx, ContainerKey)
	if len(names) != 1 {
		return "", fmt.Errorf("name the container in %q: %w", ContainerKey, errdefs.ErrInvalidArgument)
	}
	if names[0] != "web" {
		return "", fmt.Errorf("this container runs no package: %w", errdefs.ErrFailedPrecondition)
	}
	return "hello", nil
}

func (d *containerd) GetStatus(ctx context.Context, _ *guestv1.GetStatusRequest) (*guestv1.GetStatusResponse, error) {
	pkg, err := guestFor(ctx)
	if err != nil {
		return nil, err
	}
	return &guestv1.GetStatusResponse{Package: pkg, Version: "1.0", Daemons: []*guestv1.Daemon{
		{Name: "db", State: guestv1.DaemonState_DAEMON_STATE_READY, Pid: 10},
		{Name: "app", State: guestv1.DaemonState_DAEMON_STATE_READY, Pid: 11},
	}}, nil
}

func daemonIn(ctx context.Context, name string) error {
	pkg, err := guestFor(ctx)
	if err != nil {
		return err
	}
	if name != "db" && name != "app" {
		return fmt.Errorf("no daemon or oneshot %q in %s: %w", name, pkg, errdefs.ErrNotFound)
	}
	return nil
}

func (d *containerd) StartDaemon(ctx context.Context, req *guestv1.StartDaemonRequest) (*guestv1.StartDaemonResponse, error) {
	return &guestv1.StartDaemonResponse{}, daemonIn(ctx, req.GetName())
}

func (d *containerd) StopDaemon(ctx context.Context, req *guestv1.StopDaemonRequest) (*guestv1.StopDaemonResponse, error) {
	return &guestv1.StopDaemonResponse{}, daemonIn(ctx, req.GetName())
}

func (d *containerd) RestartDaemon(ctx context.Context, req *guestv1.RestartDaemonRequest) (*guestv1.RestartDaemonResponse, error) {
	return &guestv1.RestartDaemonResponse{}, daemonIn(ctx, req.GetName())
}

// Exec runs "true", "false" (exit 3) and "echo" (prints hi).
func (d *containerd) Exec(stream grpc.BidiStreamingServer[guestv1.ExecRequest, guestv1.ExecResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if err := daemonIn(stream.Context(), start.GetDaemon()); err != nil {
		return err
	}
	code := int32(0)
	switch start.GetArgv()[0] {
	case "false":
		code = 3
	case "echo":
		if err := stream.Send(&guestv1.ExecResponse{Msg: &guestv1.ExecResponse_Stdout{Stdout: []byte("hi\n")}}); err != nil {
			return err
		}
	}
	return stream.Send(&guestv1.ExecResponse{Msg: &guestv1.ExecResponse_Exit{Exit: &guestv1.Exit{Code: code}}})
}

// netd refuses container "nonet": its subnet is full.
type netd struct {
	netv1.UnimplementedNetworkServiceServer
}

func (netd) AttachContainer(_ context.Context, req *netv1.AttachContainerRequest) (*netv1.AttachContainerResponse, error) {
	if req.GetContainer() == "nonet" {
		return nil, fmt.Errorf("subnet %s is full: %w", "10.88.0.0/29", errdefs.ErrResourceExhausted)
	}
	return &netv1.AttachContainerResponse{Attachment: &netv1.Attachment{Container: req.GetContainer(), Address: "10.88.0.2"}}, nil
}

type certd struct {
	certv1.UnimplementedCertificateServiceServer
}

var testCert = &certv1.Certificate{Id: "c1", Issuer: certv1.Issuer_ISSUER_LOCAL, DnsNames: []string{"nas.local"}, Serial: "01", NotAfter: timestamppb.New(time.Now().Add(time.Hour))}

var testRoot = &certv1.Root{Pem: []byte("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"), Sha256Fingerprint: "ab:cd", Current: true}

func (certd) GetRoot(context.Context, *certv1.GetRootRequest) (*certv1.GetRootResponse, error) {
	return &certv1.GetRootResponse{Roots: []*certv1.Root{testRoot}, RootsPem: [][]byte{testRoot.GetPem()}}, nil
}

func (certd) IssueCertificate(_ context.Context, req *certv1.IssueCertificateRequest) (*certv1.IssueCertificateResponse, error) {
	if req.GetOwner() != "" {
		return nil, fmt.Errorf("name %q is not %s's: %w", req.GetDnsNames()[0], req.GetOwner(), errdefs.ErrPermissionDenied)
	}
	return &certv1.IssueCertificateResponse{Certificate: testCert}, nil
}

func (certd) GetCertificate(_ context.Context, req *certv1.GetCertificateRequest) (*certv1.GetCertificateResponse, error) {
	if req.GetId() != testCert.GetId() {
		return nil, fmt.Errorf("certificate %q: %w", req.GetId(), errdefs.ErrNotFound)
	}
	return &certv1.GetCertificateResponse{Certificate: testCert}, nil
}

func (certd) ListCertificates(context.Context, *certv1.ListCertificatesRequest) (*certv1.ListCertificatesResponse, error) {
	return &certv1.ListCertificatesResponse{Certificates: []*certv1.Certificate{testCert}}, nil
}

func (certd) RenewCertificate(context.Context, *certv1.RenewCertificateRequest) (*certv1.RenewCertificateResponse, error) {
	return &certv1.RenewCertificateResponse{Certificate: testCert}, nil
}

func (certd) RotateRoot(context.Context, *certv1.RotateRootRequest) (*certv1.RotateRootResponse, error) {
	return &certv1.RotateRootResponse{Roots: []*certv1.Root{testRoot}, Reissued: 1}, nil
}

// serve runs a real server for the daemon named on <runDir>/<name>.sock.
func serve(t *testing.T, runDir, name string, register func(*grpcserver.Server)) string {
	t.Helper()
	sock := filepath.Join(runDir, name+".sock")
	srv := grpcserver.New(grpcserver.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Authorize: peercred.UIDs(uint32(os.Getuid())), StopTimeout: time.Second})
	register(srv)
	srv.SetServing()
	l, err := unixsock.Listen(sock, unixsock.Options{UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return sock
}

// lab runs the three daemons in a temporary run directory and returns it.
func lab(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	netdSock := serve(t, dir, "netd", func(s *grpcserver.Server) { netv1.RegisterNetworkServiceServer(s, netd{}) })
	d := &containerd{netdSocket: netdSock}
	serve(t, dir, "containerd-lite", func(s *grpcserver.Server) {
		containerv1.RegisterContainerServiceServer(s, d)
		containerv1.RegisterImageServiceServer(s, d)
		guestv1.RegisterGuestServiceServer(s, d)
	})
	serve(t, dir, "certd", func(s *grpcserver.Server) { certv1.RegisterCertificateServiceServer(s, certd{}) })
	return dir
}

// run runs hearthctl in runDir and returns its exit code, stdout and stderr.
func run(t *testing.T, runDir string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(append([]string{"--run-dir", runDir, "--timeout", "10s"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestJSONIsOneDocument: every command with --output json prints exactly one JSON
// object (streams of events, 'logs' and 'cert watch', print one per line instead).
func TestJSONIsOneDocument(t *testing.T) {
	dir := lab(t)
	img := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"container", "create", "new"},
		{"container", "start", "web"},
		{"container", "stop", "web"},
		{"container", "rm", "web"},
		{"container", "ls"},
		{"container", "status", "web"},
		{"container", "status", "plain"},
		{"container", "inspect", "web"},
		{"daemon", "start", "web", "db"},
		{"daemon", "stop", "web", "db"},
		{"daemon", "restart", "web", "db"},
		{"image", "import", img, "--name", "app:1"},
		{"image", "pull", "registry.invalid/app:1"},
		{"image", "ls"},
		{"image", "inspect", "app:1"},
		{"image", "tag", "app:1", "app:2"},
		{"image", "rm", "app:1"},
		{"image", "prune"},
		{"cert", "ls"},
		{"cert", "show", "c1"},
		{"cert", "issue", "nas.local"},
		{"cert", "renew", "c1"},
		{"cert", "root"},
		{"cert", "root", "--rotate"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := run(t, dir, append([]string{"-o", "json"}, args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			dec := json.NewDecoder(strings.NewReader(out))
			var doc map[string]any
			if err := dec.Decode(&doc); err != nil {
				t.Fatalf("stdout is not a JSON object: %v\n%s", err, out)
			}
			var more json.RawMessage
			if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
				t.Errorf("stdout holds more than one document (next: %s, %v):\n%s", more, err, out)
			}
		})
	}
}

// TestStatusJSON: the container and its package's daemons in one object.
func TestStatusJSON(t *testing.T) {
	dir := lab(t)
	for _, tc := range []struct {
		name    string
		daemons []string // nil: no package, "status" is null
	}{
		{"web", []string{"db", "app"}},
		{"plain", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, dir, "-o", "json", "container", "status", tc.name)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var doc struct {
				Container struct{ Name, State string }
				Guest     struct{ Package string }
				Status    *struct {
					Package string
					Daemons []struct{ Name string }
				}
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if doc.Container.Name != tc.name || doc.Container.State != "CONTAINER_STATE_RUNNING" {
				t.Errorf("container %+v", doc.Container)
			}
			if tc.daemons == nil {
				if doc.Status != nil || !strings.Contains(out, `"status": null`) {
					t.Errorf("status %+v, want null:\n%s", doc.Status, out)
				}
				return
			}
			if doc.Status == nil || doc.Status.Package != "hello" || doc.Guest.Package != "hello" {
				t.Fatalf("status %+v, guest %+v: want package hello\n%s", doc.Status, doc.Guest, out)
			}
			var names []string
			for _, d := range doc.Status.Daemons {
				names = append(names, d.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.daemons, ",") {
				t.Errorf("daemons %v, want %v", names, tc.daemons)
			}
		})
	}
}

// TestErrors: the user reads the daemon's words, not gRPC's prefix, with the code's name;
// an error from netd that containerd-lite wraps reads as netd's. Failures exit 1, exec
// exits with its command's status.
func TestErrors(t *testing.T) {
	dir := lab(t)
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"container", "status", "missing"}, 1, "", `hearthctl: container "missing": not found (NotFound)` + "\n"},
		{[]string{"-o", "json", "container", "status", "missing"}, 1, "", `hearthctl: container "missing": not found (NotFound)` + "\n"},
		{[]string{"container", "create", "web"}, 1, "", `hearthctl: container "web": already exists (AlreadyExists)` + "\n"},
		{[]string{"container", "start", "nonet"}, 1, "", `hearthctl: attach container "nonet" to netd's bridge: subnet 10.88.0.0/29 is full: resource exhausted (ResourceExhausted)` + "\n"},
		{[]string{"daemon", "start", "web", "nope"}, 1, "", `hearthctl: no daemon or oneshot "nope" in hello: not found (NotFound)` + "\n"},
		{[]string{"daemon", "start", "plain", "db"}, 1, "", `hearthctl: this container runs no package: failed precondition (FailedPrecondition)` + "\n"},
		{[]string{"cert", "show", "c9"}, 1, "", `hearthctl: certificate "c9": not found (NotFound)` + "\n"},
		{[]string{"cert", "issue", "b.local", "--owner", "a"}, 1, "", `hearthctl: name "b.local" is not a's: permission denied (PermissionDenied)` + "\n"},
		{[]string{"exec", "web", "db", "--", "false"}, 3, "", ""},
		{[]string{"exec", "web", "db", "--", "echo"}, 0, "hi\n", ""},
		{[]string{"exec", "web", "nope", "--", "true"}, 1, "", `hearthctl: no daemon or oneshot "nope" in hello: not found (NotFound)` + "\n"},
		{[]string{"--output", "yaml", "container", "ls"}, 1, "", `hearthctl: --output "yaml": use text or json` + "\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := run(t, dir, tc.args...)
			if code != tc.code || out != tc.stdout || errOut != tc.stderr {
				t.Errorf("exit %d, stdout %q, stderr %q\nwant %d, %q, %q", code, out, errOut, tc.code, tc.stdout, tc.stderr)
			}
		})
	}
	// No daemon at all: the hint, not a transport error.
	code, _, errOut := run(t, t.TempDir(), "container", "ls")
	if code != 1 || !strings.Contains(errOut, "is the daemon running?") || strings.Contains(errOut, "rpc error") {
		t.Errorf("without containerd-lite: exit %d, %q", code, errOut)
	}
}
