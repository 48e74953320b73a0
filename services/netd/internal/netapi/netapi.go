// Package netapi serves netd's gRPC services and puts netd's parts together.
package netapi

import (
	"context"
	"fmt"
	"net/netip"

	"hearth.dev/internal/daemon"
	"hearth.dev/internal/errdefs"
	netv1 "hearth.dev/proto/hearth/net/v1"
	"hearth.dev/services/netd/internal/bridge"
	"hearth.dev/services/netd/internal/expose"
)

// Server implements NetworkService, BindingService and ChallengeService.
type Server struct {
	netv1.UnimplementedNetworkServiceServer
	netv1.UnimplementedBindingServiceServer
	netv1.UnimplementedChallengeServiceServer
	net  *bridge.Network
	exp  *expose.Exposer
	edge *edge
}

var (
	_ netv1.NetworkServiceServer   = (*Server)(nil)
	_ netv1.BindingServiceServer   = (*Server)(nil)
	_ netv1.ChallengeServiceServer = (*Server)(nil)
)

// Init registers netd's services.
func (f *Flags) Init(ctx context.Context, env *daemon.Env) (daemon.Hooks, error) {
	e, err := f.start(ctx, env)
	if err != nil {
		return daemon.Hooks{}, err
	}
	s := &Server{net: e.net, exp: e.exp, edge: e}
	netv1.RegisterNetworkServiceServer(env.Server, s)
	netv1.RegisterBindingServiceServer(env.Server, s)
	netv1.RegisterChallengeServiceServer(env.Server, s)
	return daemon.Hooks{Reconcile: e.reconcile, Run: e.run, Close: e.close}, nil
}

// GetNetwork implements NetworkService.
func (s *Server) GetNetwork(context.Context, *netv1.GetNetworkRequest) (*netv1.GetNetworkResponse, error) {
	nw := &netv1.Network{Bridge: s.net.Name, Subnet: s.net.Subnet.String(), Gateway: s.net.Gateway.String()}
	if s.edge.dns != nil {
		nw.Dns = s.net.Gateway.String()
	}
	for _, a := range s.net.Attachments() {
		nw.Attachments = append(nw.Attachments, attachmentProto(a))
	}
	return &netv1.GetNetworkResponse{Network: nw}, nil
}

// AttachContainer implements NetworkService.
func (s *Server) AttachContainer(ctx context.Context, req *netv1.AttachContainerRequest) (*netv1.AttachContainerResponse, error) {
	if req.GetContainer() == "" {
		return nil, fmt.Errorf("name the container: %w", errdefs.ErrInvalidArgument)
	}
	var ifaces []bridge.Interface
	for _, p := range req.GetInterfaces() {
		if p.GetPort() < 1 || p.GetPort() > 65535 {
			return nil, fmt.Errorf("interface %q of %s: port %d: give 1 to 65535: %w", p.GetName(), req.GetContainer(), p.GetPort(), errdefs.ErrInvalidArgument)
		}
		ifaces = append(ifaces, bridge.Interface{Name: p.GetName(), Port: int(p.GetPort()), HTTP: p.GetProtocol() != netv1.Protocol_PROTOCOL_TCP})
	}
	a, changed, err := s.net.AttachChanged(req.GetContainer(), int(req.GetInitPid()), ifaces)
	if err != nil {
		return nil, err
	}
	if err := s.exp.SyncIfChanged(ctx, changed); err != nil {
		return nil, fmt.Errorf("container %s attached at %s, but: %w", a.Container, a.Address, err)
	}
	return &netv1.AttachContainerResponse{Attachment: attachmentProto(a)}, nil
}

// DetachContainer implements NetworkService.
func (s *Server) DetachContainer(ctx context.Context, req *netv1.DetachContainerRequest) (*netv1.DetachContainerResponse, error) {
	if err := s.net.Detach(req.GetContainer()); err != nil {
		return nil, err
	}
	if err := s.exp.Sync(ctx); err != nil {
		return nil, err
	}
	return &netv1.DetachContainerResponse{}, nil
}

func attachmentProto(a bridge.Attachment) *netv1.Attachment {
	out := &netv1.Attachment{Container: a.Container, Address: a.Address, HostVeth: a.HostVeth}
	for _, i := range a.Interfaces {
		p := &netv1.InterfacePort{Name: i.Name, Port: uint32(i.Port), Protocol: netv1.Protocol_PROTOCOL_TCP}
		if i.HTTP {
			p.Protocol = netv1.Protocol_PROTOCOL_HTTP
		}
		out.Interfaces = append(out.Interfaces, p)
	}
	return out
}

// gatewayPort is the DNS server's address on the bridge.
func gatewayPort(n *bridge.Network) netip.AddrPort { return netip.AddrPortFrom(n.Gateway, 53) }
