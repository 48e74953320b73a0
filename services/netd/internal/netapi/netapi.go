// Package netapi serves netd's gRPC services.
package netapi

import (
	"context"
	"flag"
	"fmt"
	"net/netip"

	"hearth.dev/internal/daemon"
	"hearth.dev/internal/errdefs"
	netv1 "hearth.dev/proto/hearth/net/v1"
	"hearth.dev/services/netd/internal/bridge"
)

// Server implements NetworkService and BindingService. Bindings arrive with the
// networking issue; until then they answer Unimplemented.
type Server struct {
	netv1.UnimplementedNetworkServiceServer
	netv1.UnimplementedBindingServiceServer
	net *bridge.Network
}

var (
	_ netv1.NetworkServiceServer = (*Server)(nil)
	_ netv1.BindingServiceServer = (*Server)(nil)
)

// Flags are netd's own flags.
type Flags struct {
	Bridge string
	Subnet string
}

// Register adds the flags.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Bridge, "bridge", "hearth0", "the bridge containers attach to")
	fs.StringVar(&f.Subnet, "subnet", "10.88.0.0/16", "the bridge's IPv4 subnet; its first address is the gateway")
}

// Init registers netd's services.
func (f *Flags) Init(_ context.Context, env *daemon.Env) (daemon.Hooks, error) {
	subnet, err := netip.ParsePrefix(f.Subnet)
	if err != nil {
		return daemon.Hooks{}, fmt.Errorf("--subnet %q: give a subnet such as 10.88.0.0/16", f.Subnet)
	}
	n, err := bridge.New(f.Bridge, subnet, env.StateDir, env.Logger)
	if err != nil {
		return daemon.Hooks{}, err
	}
	s := &Server{net: n}
	netv1.RegisterNetworkServiceServer(env.Server, s)
	netv1.RegisterBindingServiceServer(env.Server, s)
	return daemon.Hooks{Reconcile: func(context.Context) error { return n.Reconcile() }}, nil
}

// GetNetwork implements NetworkService.
func (s *Server) GetNetwork(context.Context, *netv1.GetNetworkRequest) (*netv1.GetNetworkResponse, error) {
	nw := &netv1.Network{Bridge: s.net.Name, Subnet: s.net.Subnet.String(), Gateway: s.net.Gateway.String()}
	for _, a := range s.net.Attachments() {
		nw.Attachments = append(nw.Attachments, attachmentProto(a))
	}
	return &netv1.GetNetworkResponse{Network: nw}, nil
}

// AttachContainer implements NetworkService.
func (s *Server) AttachContainer(_ context.Context, req *netv1.AttachContainerRequest) (*netv1.AttachContainerResponse, error) {
	if req.GetContainer() == "" {
		return nil, fmt.Errorf("name the container: %w", errdefs.ErrInvalidArgument)
	}
	a, err := s.net.Attach(req.GetContainer(), int(req.GetInitPid()))
	if err != nil {
		return nil, err
	}
	return &netv1.AttachContainerResponse{Attachment: attachmentProto(a)}, nil
}

// DetachContainer implements NetworkService.
func (s *Server) DetachContainer(_ context.Context, req *netv1.DetachContainerRequest) (*netv1.DetachContainerResponse, error) {
	if err := s.net.Detach(req.GetContainer()); err != nil {
		return nil, err
	}
	return &netv1.DetachContainerResponse{}, nil
}

func attachmentProto(a bridge.Attachment) *netv1.Attachment {
	return &netv1.Attachment{Container: a.Container, Address: a.Address, HostVeth: a.HostVeth}
}
