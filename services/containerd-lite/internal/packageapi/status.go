package packageapi

import (
	"context"
	"strings"

	containerv1 "hearth.dev/proto/hearth/container/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// StatusSource reports a package's status (packages.Effects): the same answer the
// package gets from status.get.
type StatusSource interface {
	Status(ctx context.Context, container string) (*hostv1.GetStatusResponse, error)
}

// WithStatus makes the service answer GetPackageStatus from fx.
func (s *Service) WithStatus(fx StatusSource) *Service {
	s.fx = fx
	return s
}

// GetPackageStatus implements PackageService.
func (s *Service) GetPackageStatus(ctx context.Context, req *containerv1.GetPackageStatusRequest) (*containerv1.GetPackageStatusResponse, error) {
	if s.fx == nil {
		return s.UnimplementedPackageServiceServer.GetPackageStatus(ctx, req)
	}
	p, err := s.p.Get(strings.TrimSpace(req.GetId()))
	if err != nil {
		return nil, err
	}
	st, err := s.fx.Status(ctx, p.Container)
	if err != nil {
		return nil, err
	}
	return &containerv1.GetPackageStatusResponse{Status: st}, nil
}
