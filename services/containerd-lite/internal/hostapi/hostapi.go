// Package hostapi serves HostService to one container on its own host.sock. The socket
// is the identity: every call on it acts for that container only, so a guest can name
// only its own images, volumes and overlays.
package hostapi

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hostv1 "hearth.dev/proto/hearth/host/v1"
	"hearth.dev/services/containerd-lite/internal/containers"
)

// Effects are what the host does for a container: its overlays (containers.Manager).
type Effects interface {
	CreateOverlay(ctx context.Context, container, image, overlay string) (containers.OverlayInfo, error)
	DestroyOverlay(ctx context.Context, container, overlay string) error
	BindVolume(ctx context.Context, container, volume, sub, path string, readOnly bool) (containers.OverlayInfo, error)
	ListOverlays(ctx context.Context, container string) ([]containers.OverlayInfo, error)
}

// Deps are the parts that carry out the effects. Each is called with the caller's
// container (the socket's identity), never a name the caller gave; a nil part's effects
// answer Unimplemented.
type Deps struct {
	Overlays Effects
	Package  PackageEffects
	Actions  ActionEffects
	Depends  DependencyEffects
}

// Server is HostService for one container.
type Server struct {
	hostv1.UnimplementedHostServiceServer
	container string
	fx        Effects
	d         Deps
}

var _ hostv1.HostServiceServer = (*Server)(nil)

// New returns the service for the named container.
func New(container string, d Deps) *Server {
	return &Server{container: container, fx: d.Overlays, d: d}
}

// unavailable is the error of an effect whose part is not wired.
func unavailable(what string) error {
	return status.Errorf(codes.Unimplemented, "%s is not available on this host", what)
}

// GetIdentity implements HostService.
func (s *Server) GetIdentity(context.Context, *hostv1.GetIdentityRequest) (*hostv1.GetIdentityResponse, error) {
	return &hostv1.GetIdentityResponse{Container: s.container}, nil
}

// CreateOverlay implements HostService.
func (s *Server) CreateOverlay(ctx context.Context, req *hostv1.CreateOverlayRequest) (*hostv1.CreateOverlayResponse, error) {
	o, err := s.fx.CreateOverlay(ctx, s.container, req.GetImage(), req.GetName())
	if err != nil {
		return nil, err
	}
	return &hostv1.CreateOverlayResponse{Overlay: OverlayProto(o)}, nil
}

// DestroyOverlay implements HostService.
func (s *Server) DestroyOverlay(ctx context.Context, req *hostv1.DestroyOverlayRequest) (*hostv1.DestroyOverlayResponse, error) {
	if err := s.fx.DestroyOverlay(ctx, s.container, req.GetName()); err != nil {
		return nil, err
	}
	return &hostv1.DestroyOverlayResponse{}, nil
}

// BindVolume implements HostService.
func (s *Server) BindVolume(ctx context.Context, req *hostv1.BindVolumeRequest) (*hostv1.BindVolumeResponse, error) {
	o, err := s.fx.BindVolume(ctx, s.container, req.GetVolume(), req.GetSubcontainer(), req.GetPath(), req.GetReadOnly())
	if err != nil {
		return nil, err
	}
	return &hostv1.BindVolumeResponse{Overlay: OverlayProto(o)}, nil
}

// ListOverlays implements HostService.
func (s *Server) ListOverlays(ctx context.Context, _ *hostv1.ListOverlaysRequest) (*hostv1.ListOverlaysResponse, error) {
	list, err := s.fx.ListOverlays(ctx, s.container)
	if err != nil {
		return nil, err
	}
	resp := &hostv1.ListOverlaysResponse{}
	for _, o := range list {
		resp.Overlays = append(resp.Overlays, OverlayProto(o))
	}
	return resp, nil
}

// OverlayProto converts an overlay for the API.
func OverlayProto(o containers.OverlayInfo) *hostv1.Overlay {
	out := &hostv1.Overlay{Name: o.Name, Image: o.Image, Path: o.Path}
	for _, b := range o.Binds {
		out.Binds = append(out.Binds, &hostv1.VolumeBind{Volume: b.Volume, Path: b.Path, ReadOnly: b.ReadOnly})
	}
	return out
}
