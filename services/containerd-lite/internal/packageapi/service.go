// Package packageapi serves PackageService and KeyService over the package manager and
// the host's trust store.
package packageapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"hearth.dev/internal/errdefs"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	netv1 "hearth.dev/proto/hearth/net/v1"
	"hearth.dev/services/containerd-lite/internal/packages"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Packages is the package manager, as the service needs it.
type Packages interface {
	Install(ctx context.Context, r io.Reader, op packages.Op) (packages.Result, error)
	Update(ctx context.Context, r io.Reader, op packages.Op) (packages.Result, error)
	Uninstall(ctx context.Context, id string, purge bool) error
	Get(id string) (store.Package, error)
	List() ([]store.Package, error)
	Files(id, version string) (readme, license string)
	Bind(ctx context.Context, id, iface string, ex netv1.Exposure, domain string, passthrough bool) (*netv1.Binding, error)
	Unbind(ctx context.Context, id, iface string, ex netv1.Exposure, domain string) error
	Addresses(ctx context.Context, id string) ([]*netv1.Binding, error)
}

// State reports a package container's state.
type State func(ctx context.Context, container string) string

// Service implements PackageService.
type Service struct {
	containerv1.UnimplementedPackageServiceServer
	p     Packages
	state State
	fx    StatusSource
}

var _ containerv1.PackageServiceServer = (*Service)(nil)

// New returns the service.
func New(p Packages, state State) *Service { return &Service{p: p, state: state} }

// chunks feeds the file that follows the options, chunk by chunk, into a pipe the
// operation reads; a message that is not a chunk (options again) fails it.
func chunks[R any](ctx context.Context, recv func() (R, error), chunk func(R) ([]byte, bool)) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		for {
			m, err := recv()
			if errors.Is(err, io.EOF) {
				pw.Close()
				return
			}
			if err != nil {
				pw.CloseWithError(fmt.Errorf("receive the package: %w", err))
				return
			}
			b, ok := chunk(m)
			if !ok {
				pw.CloseWithError(fmt.Errorf("options given twice: %w", errdefs.ErrInvalidArgument))
				return
			}
			if _, err := pw.Write(b); err != nil {
				return // the operation stopped reading
			}
		}
	}()
	context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
	return pr
}

// firstOptions reads the options that start a stream.
func firstOptions[R any, O any](recv func() (R, error), get func(R) *O) (*O, error) {
	first, err := recv()
	if err != nil {
		return nil, err
	}
	o := get(first)
	if o == nil {
		return nil, fmt.Errorf("the first message gives the options, then the file follows in chunks: %w", errdefs.ErrInvalidArgument)
	}
	return o, nil
}

// progress sends progress no more than ten times a second, but every new phase.
func progress(send func(*containerv1.PackageProgress) error) func(packages.Progress) {
	var mu sync.Mutex
	var last time.Time
	var phase string
	return func(p packages.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Phase == phase && time.Since(last) < 100*time.Millisecond {
			return
		}
		last, phase = time.Now(), p.Phase
		_ = send(&containerv1.PackageProgress{Phase: p.Phase, Done: p.Done, Total: p.Total})
	}
}

// InstallPackage implements PackageService.
func (s *Service) InstallPackage(stream grpc.BidiStreamingServer[containerv1.InstallPackageRequest, containerv1.InstallPackageResponse]) error {
	opts, err := firstOptions(stream.Recv, (*containerv1.InstallPackageRequest).GetOptions)
	if err != nil {
		return err
	}
	r := chunks(stream.Context(), stream.Recv, func(m *containerv1.InstallPackageRequest) ([]byte, bool) { return m.GetChunk(), m.GetOptions() == nil })
	res, err := s.p.Install(stream.Context(), r, packages.Op{AllowUntrusted: opts.GetAllowUntrusted(), Progress: progress(func(p *containerv1.PackageProgress) error {
		return stream.Send(&containerv1.InstallPackageResponse{Event: &containerv1.InstallPackageResponse_Progress{Progress: p}})
	})})
	if err != nil {
		return err
	}
	return stream.Send(&containerv1.InstallPackageResponse{Event: &containerv1.InstallPackageResponse_Result{Result: s.result(stream.Context(), res)}})
}

// UpdatePackage implements PackageService.
func (s *Service) UpdatePackage(stream grpc.BidiStreamingServer[containerv1.UpdatePackageRequest, containerv1.UpdatePackageResponse]) error {
	opts, err := firstOptions(stream.Recv, (*containerv1.UpdatePackageRequest).GetOptions)
	if err != nil {
		return err
	}
	r := chunks(stream.Context(), stream.Recv, func(m *containerv1.UpdatePackageRequest) ([]byte, bool) { return m.GetChunk(), m.GetOptions() == nil })
	res, err := s.p.Update(stream.Context(), r, packages.Op{AllowUntrusted: opts.GetAllowUntrusted(), Progress: progress(func(p *containerv1.PackageProgress) error {
		return stream.Send(&containerv1.UpdatePackageResponse{Event: &containerv1.UpdatePackageResponse_Progress{Progress: p}})
	})})
	if err != nil {
		return err
	}
	return stream.Send(&containerv1.UpdatePackageResponse{Event: &containerv1.UpdatePackageResponse_Result{Result: s.result(stream.Context(), res)}})
}

func (s *Service) result(ctx context.Context, r packages.Result) *containerv1.PackageResult {
	return &containerv1.PackageResult{Package: s.proto(ctx, r.Package), Warnings: r.Warnings}
}

func (s *Service) proto(ctx context.Context, p store.Package) *containerv1.Package {
	out := &containerv1.Package{Id: p.ID, Version: p.Version, Container: p.Container, Signer: p.Signer, Trusted: p.Trusted,
		InstalledAt: timestamppb.New(p.InstalledAt), Images: p.Images}
	if !p.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(p.UpdatedAt)
	}
	if s.state != nil {
		out.State = s.state(ctx, p.Container)
	}
	return out
}

// UninstallPackage implements PackageService.
func (s *Service) UninstallPackage(ctx context.Context, req *containerv1.UninstallPackageRequest) (*containerv1.UninstallPackageResponse, error) {
	return &containerv1.UninstallPackageResponse{}, s.p.Uninstall(ctx, req.GetId(), req.GetPurge())
}

// ListPackages implements PackageService.
func (s *Service) ListPackages(ctx context.Context, _ *containerv1.ListPackagesRequest) (*containerv1.ListPackagesResponse, error) {
	ps, err := s.p.List()
	if err != nil {
		return nil, err
	}
	resp := &containerv1.ListPackagesResponse{}
	for _, p := range ps {
		resp.Packages = append(resp.Packages, s.proto(ctx, p))
	}
	return resp, nil
}

// GetPackage implements PackageService.
func (s *Service) GetPackage(ctx context.Context, req *containerv1.GetPackageRequest) (*containerv1.GetPackageResponse, error) {
	p, err := s.p.Get(strings.TrimSpace(req.GetId()))
	if err != nil {
		return nil, err
	}
	readme, license := s.p.Files(p.ID, p.Version)
	return &containerv1.GetPackageResponse{Package: s.proto(ctx, p), Manifest: p.Manifest, Readme: readme, License: license}, nil
}

// BindPackage implements PackageService.
func (s *Service) BindPackage(ctx context.Context, req *containerv1.BindPackageRequest) (*containerv1.BindPackageResponse, error) {
	b, err := s.p.Bind(ctx, req.GetId(), req.GetInterface(), req.GetExposure(), req.GetDomain(), req.GetPassthrough())
	if err != nil {
		return nil, err
	}
	return &containerv1.BindPackageResponse{Binding: b}, nil
}

// UnbindPackage implements PackageService.
func (s *Service) UnbindPackage(ctx context.Context, req *containerv1.UnbindPackageRequest) (*containerv1.UnbindPackageResponse, error) {
	return &containerv1.UnbindPackageResponse{}, s.p.Unbind(ctx, req.GetId(), req.GetInterface(), req.GetExposure(), req.GetDomain())
}

// ListAddresses implements PackageService.
func (s *Service) ListAddresses(ctx context.Context, req *containerv1.ListAddressesRequest) (*containerv1.ListAddressesResponse, error) {
	bs, err := s.p.Addresses(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &containerv1.ListAddressesResponse{Bindings: bs}, nil
}
