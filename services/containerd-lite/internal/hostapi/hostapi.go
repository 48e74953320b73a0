// Package hostapi serves HostService to one container on its own host.sock. The socket
// is the identity: every call on it acts for that container only.
package hostapi

import (
	"context"

	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// Server is HostService for one container.
type Server struct {
	hostv1.UnimplementedHostServiceServer
	container string
}

var _ hostv1.HostServiceServer = (*Server)(nil)

// New returns the service for the named container.
func New(container string) *Server { return &Server{container: container} }

// GetIdentity implements HostService.
func (s *Server) GetIdentity(context.Context, *hostv1.GetIdentityRequest) (*hostv1.GetIdentityResponse, error) {
	return &hostv1.GetIdentityResponse{Container: s.container}, nil
}
