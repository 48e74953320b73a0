package packageapi

import (
	"context"
	"fmt"
	"strings"
	"time"

	"hearth.dev/internal/errdefs"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	"hearth.dev/services/containerd-lite/internal/packages"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Lifecycle starts and stops packages with their dependencies in mind
// (packages.Manager).
type Lifecycle interface {
	StartPackage(ctx context.Context, id string) (store.Package, []*hostv1.Wait, error)
	StopPackage(ctx context.Context, id string, cascade bool, grace time.Duration) ([]string, error)
	StopPlan(ctx context.Context, id string) ([]string, error)
	StartAll(ctx context.Context) ([]packages.StartResult, error)
}

// lifecycle is the package manager's Lifecycle, when it has one.
func (s *Service) lifecycle() (Lifecycle, error) {
	l, ok := s.p.(Lifecycle)
	if !ok {
		return nil, fmt.Errorf("starting and stopping packages is not available on this host: %w", errdefs.ErrUnimplemented)
	}
	return l, nil
}

// StartPackage implements PackageService.
func (s *Service) StartPackage(ctx context.Context, req *containerv1.StartPackageRequest) (*containerv1.StartPackageResponse, error) {
	l, err := s.lifecycle()
	if err != nil {
		return nil, err
	}
	p, waits, err := l.StartPackage(ctx, strings.TrimSpace(req.GetId()))
	if err != nil {
		return nil, err
	}
	return &containerv1.StartPackageResponse{Package: s.proto(ctx, p), WaitingFor: waits}, nil
}

// StartAllPackages implements PackageService.
func (s *Service) StartAllPackages(ctx context.Context, _ *containerv1.StartAllPackagesRequest) (*containerv1.StartAllPackagesResponse, error) {
	l, err := s.lifecycle()
	if err != nil {
		return nil, err
	}
	rs, err := l.StartAll(ctx)
	if err != nil {
		return nil, err
	}
	resp := &containerv1.StartAllPackagesResponse{}
	for _, r := range rs {
		p := &containerv1.PackageStart{Id: r.ID, Outcome: r.Outcome, WaitingFor: r.Waits}
		if r.Err != nil {
			p.Error = r.Err.Error()
		}
		resp.Packages = append(resp.Packages, p)
	}
	return resp, nil
}

// StopPackage implements PackageService.
func (s *Service) StopPackage(ctx context.Context, req *containerv1.StopPackageRequest) (*containerv1.StopPackageResponse, error) {
	l, err := s.lifecycle()
	if err != nil {
		return nil, err
	}
	if req.GetGrace() != nil && req.GetGrace().AsDuration() < 0 {
		return nil, fmt.Errorf("grace %v: give a positive duration, or none for the manifest's: %w", req.GetGrace().AsDuration(), errdefs.ErrInvalidArgument)
	}
	id := strings.TrimSpace(req.GetId())
	if req.GetDryRun() {
		plan, err := l.StopPlan(ctx, id)
		if err != nil {
			return nil, err
		}
		return &containerv1.StopPackageResponse{Stopped: plan}, nil
	}
	stopped, err := l.StopPackage(ctx, id, req.GetCascade(), req.GetGrace().AsDuration())
	if err != nil {
		return nil, err
	}
	return &containerv1.StopPackageResponse{Stopped: stopped}, nil
}
