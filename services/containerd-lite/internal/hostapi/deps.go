package hostapi

import (
	"context"

	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// DependencyEffects answer for the packages the caller's manifest depends on.
type DependencyEffects interface {
	GetDependency(ctx context.Context, container string, req *hostv1.GetDependencyRequest) (*hostv1.GetDependencyResponse, error)
}

// GetDependency implements HostService.
func (s *Server) GetDependency(ctx context.Context, req *hostv1.GetDependencyRequest) (*hostv1.GetDependencyResponse, error) {
	if s.d.Depends == nil {
		return nil, unavailable("dependency.get")
	}
	return s.d.Depends.GetDependency(ctx, s.container, req)
}
