package hostapi

import (
	"context"

	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// PackageEffects are the effects that concern the package itself: its status, health
// results, progress, notifications, data version, addresses, bindings and certificates.
type PackageEffects interface {
	GetStatus(ctx context.Context, container string, req *hostv1.GetStatusRequest) (*hostv1.GetStatusResponse, error)
	SetHealth(ctx context.Context, container string, req *hostv1.SetHealthRequest) (*hostv1.SetHealthResponse, error)
	SetProgress(ctx context.Context, container string, req *hostv1.SetProgressRequest) (*hostv1.SetProgressResponse, error)
	BindInterface(ctx context.Context, container string, req *hostv1.BindInterfaceRequest) (*hostv1.BindInterfaceResponse, error)
	UnbindInterface(ctx context.Context, container string, req *hostv1.UnbindInterfaceRequest) (*hostv1.UnbindInterfaceResponse, error)
	GetAddresses(ctx context.Context, container string, req *hostv1.GetAddressesRequest) (*hostv1.GetAddressesResponse, error)
	GetCertificate(ctx context.Context, container string, req *hostv1.GetCertificateRequest) (*hostv1.GetCertificateResponse, error)
	GetContainerAddress(ctx context.Context, container string, req *hostv1.GetContainerAddressRequest) (*hostv1.GetContainerAddressResponse, error)
	Notify(ctx context.Context, container string, req *hostv1.NotifyRequest) (*hostv1.NotifyResponse, error)
	GetDataVersion(ctx context.Context, container string, req *hostv1.GetDataVersionRequest) (*hostv1.GetDataVersionResponse, error)
	SetDataVersion(ctx context.Context, container string, req *hostv1.SetDataVersionRequest) (*hostv1.SetDataVersionResponse, error)
}

// GetStatus implements HostService.
func (s *Server) GetStatus(ctx context.Context, req *hostv1.GetStatusRequest) (*hostv1.GetStatusResponse, error) {
	if s.d.Package == nil {
		return nil, unavailable("status.get")
	}
	return s.d.Package.GetStatus(ctx, s.container, req)
}

// SetHealth implements HostService.
func (s *Server) SetHealth(ctx context.Context, req *hostv1.SetHealthRequest) (*hostv1.SetHealthResponse, error) {
	if s.d.Package == nil {
		return nil, unavailable("health.set")
	}
	return s.d.Package.SetHealth(ctx, s.container, req)
}

// SetProgress implements HostService.
func (s *Server) SetProgress(ctx context.Context, req *hostv1.SetProgressRequest) (*hostv1.SetProgressResponse, error) {
	if s.d.Package == nil {
		return nil, unavailable("progress.set")
	}
	return s.d.Package.SetProgress(ctx, s.container, req)
}

// BindInterface implements HostService.
func (s *Server) BindInterface(ctx context.Context, req *hostv1.BindInterfaceRequest) (*hostv1.BindInterfaceResponse, error) {
	if s.d.Package == nil {
		return nil, unavailable("interface.bind")
	}
	return s.d.Package.BindInterface(ctx, s.container, req)
}

// UnbindInterface implements HostService.
func (s *Server) UnbindInterface(ctx context.Context, req *hostv1.UnbindInterfaceRequest) (*hostv1.UnbindInterfaceResponse, error) {
	if s.d.Package == nil {
		return nil, unavailable("interface.unbind")
	}
	return s.d.Package.UnbindInterface(ctx, s.container, req)
}

// GetAddresses implements HostService.
func (s *Server) GetAddresses(ctx context.Context, req *hostv1.GetAddressesRequest) (*hostv1.GetAddressesResponse, error) {
	if s.d.Package == nil {
		return nil, unavailable("interface.addresses")
	}
	return s.d.Package.GetAddresses(ctx, s.container, req)
}

// GetCertificate implements HostService.
func (s *Server) GetCertificate(ctx context.Context, req *hostv1.GetCertificateRequest) (*hostv1.GetCertificateResponse, error) {
	if s.d.Package == nil {
		return nil, unavailable("certificate.get")
	}
	return s.d.Package.GetCertificate(ctx, s.container, req)
}

// GetContainerAddress implements HostService.
func (s *Server) GetContainerAddress(ctx context.Context, req *hostv1.GetContainerAddressRequest) (*hostv1.GetContainerAddressResponse, error) {
	if s.d.Package == nil {
		return nil, unavailable("container.address")
	}
	return s.d.Package.GetContainerAddress(ctx, s.container, req)
}

// Notify implements HostService.
func (s *Server) Notify(ctx context.Context, req *hostv1.NotifyRequest) (*hostv1.NotifyResponse, error) {
	if s.d.Package == nil {
		return nil, unavailable("notify")
	}
	return s.d.Package.Notify(ctx, s.container, req)
}

// GetDataVersion implements HostService.
func (s *Server) GetDataVersion(ctx context.Context, req *hostv1.GetDataVersionRequest) (*hostv1.GetDataVersionResponse, error) {
	if s.d.Package == nil {
		return nil, unavailable("data_version.get")
	}
	return s.d.Package.GetDataVersion(ctx, s.container, req)
}

// SetDataVersion implements HostService.
func (s *Server) SetDataVersion(ctx context.Context, req *hostv1.SetDataVersionRequest) (*hostv1.SetDataVersionResponse, error) {
	if s.d.Package == nil {
		return nil, unavailable("data_version.set")
	}
	return s.d.Package.SetDataVersion(ctx, s.container, req)
}
