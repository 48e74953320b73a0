package hostapi

import (
	"context"

	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// ActionEffects list and run the package's own actions.
type ActionEffects interface {
	ListActions(ctx context.Context, container string, req *hostv1.ListActionsRequest) (*hostv1.ListActionsResponse, error)
	RunAction(ctx context.Context, container string, req *hostv1.RunActionRequest) (*hostv1.RunActionResponse, error)
}

// ListActions implements HostService.
func (s *Server) ListActions(ctx context.Context, req *hostv1.ListActionsRequest) (*hostv1.ListActionsResponse, error) {
	if s.d.Actions == nil {
		return nil, unavailable("action.list")
	}
	return s.d.Actions.ListActions(ctx, s.container, req)
}

// RunAction implements HostService.
func (s *Server) RunAction(ctx context.Context, req *hostv1.RunActionRequest) (*hostv1.RunActionResponse, error) {
	if s.d.Actions == nil {
		return nil, unavailable("action.run")
	}
	return s.d.Actions.RunAction(ctx, s.container, req)
}
