package netapi

import (
	"context"
	"fmt"

	"hearth.dev/internal/errdefs"
	netv1 "hearth.dev/proto/hearth/net/v1"
	"hearth.dev/services/netd/internal/bindings"
	"hearth.dev/services/netd/internal/expose"
	"hearth.dev/services/netd/internal/proxy"
)

// CreateBinding implements BindingService.
func (s *Server) CreateBinding(ctx context.Context, req *netv1.CreateBindingRequest) (*netv1.CreateBindingResponse, error) {
	r := bindings.Request{Container: req.GetContainer(), Interface: req.GetInterface(), Port: int(req.GetPort()),
		Domain: req.GetDomain(), Passthrough: req.GetPassthrough()}
	switch req.GetProtocol() {
	case netv1.Protocol_PROTOCOL_HTTP:
		r.HTTP = true
	case netv1.Protocol_PROTOCOL_TCP:
	default:
		return nil, fmt.Errorf("protocol of %s/%s: give PROTOCOL_HTTP or PROTOCOL_TCP: %w", r.Container, r.Interface, errdefs.ErrInvalidArgument)
	}
	switch req.GetExposure() {
	case netv1.Exposure_EXPOSURE_LAN:
		r.Exposure = bindings.LAN
	case netv1.Exposure_EXPOSURE_DOMAIN:
		r.Exposure = bindings.Domain
	case netv1.Exposure_EXPOSURE_TOR:
		r.Exposure = bindings.Tor
	default:
		return nil, fmt.Errorf("exposure of %s/%s: give EXPOSURE_LAN, EXPOSURE_DOMAIN or EXPOSURE_TOR: %w", r.Container, r.Interface, errdefs.ErrInvalidArgument)
	}
	v, err := s.exp.Create(ctx, r)
	if err != nil {
		return nil, err
	}
	return &netv1.CreateBindingResponse{Binding: bindingProto(v)}, nil
}

// DeleteBinding implements BindingService.
func (s *Server) DeleteBinding(ctx context.Context, req *netv1.DeleteBindingRequest) (*netv1.DeleteBindingResponse, error) {
	if (req.GetId() == "") == (req.GetContainer() == "") {
		return nil, fmt.Errorf("give a binding's id or a container, not both: %w", errdefs.ErrInvalidArgument)
	}
	ids, err := s.exp.Delete(ctx, req.GetId(), req.GetContainer())
	if err != nil {
		return nil, err
	}
	return &netv1.DeleteBindingResponse{Deleted: ids}, nil
}

// ListBindings implements BindingService.
func (s *Server) ListBindings(_ context.Context, req *netv1.ListBindingsRequest) (*netv1.ListBindingsResponse, error) {
	resp := &netv1.ListBindingsResponse{}
	for _, v := range s.exp.List(req.GetContainer()) {
		resp.Bindings = append(resp.Bindings, bindingProto(v))
	}
	return resp, nil
}

func bindingProto(v expose.View) *netv1.Binding {
	b := &netv1.Binding{Id: v.ID, Container: v.Container, Interface: v.Interface, Port: uint32(v.Port),
		Protocol: netv1.Protocol_PROTOCOL_TCP, Address: v.Address, Domain: v.Domain, Name: v.Name,
		HostPort: uint32(v.HostPort), Passthrough: v.Passthrough, Status: v.Status}
	if v.HTTP {
		b.Protocol = netv1.Protocol_PROTOCOL_HTTP
	}
	switch v.Exposure {
	case bindings.LAN:
		b.Exposure = netv1.Exposure_EXPOSURE_LAN
	case bindings.Domain:
		b.Exposure = netv1.Exposure_EXPOSURE_DOMAIN
	case bindings.Tor:
		b.Exposure = netv1.Exposure_EXPOSURE_TOR
	}
	return b
}

// PresentChallenge implements ChallengeService: certd's ACME answers, served by the proxy.
func (s *Server) PresentChallenge(_ context.Context, req *netv1.PresentChallengeRequest) (*netv1.PresentChallengeResponse, error) {
	ch, err := s.challenges()
	if err != nil {
		return nil, err
	}
	switch req.GetType() {
	case netv1.ChallengeType_CHALLENGE_TYPE_HTTP_01:
		if req.GetToken() == "" || req.GetKeyAuthorization() == "" {
			return nil, fmt.Errorf("HTTP-01 needs a token and a key authorization: %w", errdefs.ErrInvalidArgument)
		}
		if s.edge.httpL == nil {
			return nil, fmt.Errorf("netd answers no HTTP (its --http-addr is empty): use TLS-ALPN-01: %w", errdefs.ErrFailedPrecondition)
		}
		ch.PresentHTTP01(req.GetToken(), req.GetKeyAuthorization())
	case netv1.ChallengeType_CHALLENGE_TYPE_TLS_ALPN_01:
		if err := ch.PresentTLSALPN01(req.GetDomain(), req.GetKeyAuthorization()); err != nil {
			return nil, fmt.Errorf("TLS-ALPN-01 for %q: %w: %w", req.GetDomain(), err, errdefs.ErrInvalidArgument)
		}
	default:
		return nil, fmt.Errorf("challenge type %v: give HTTP_01 or TLS_ALPN_01: %w", req.GetType(), errdefs.ErrInvalidArgument)
	}
	s.edge.log.Info("presenting an ACME challenge", "type", req.GetType(), "domain", req.GetDomain())
	return &netv1.PresentChallengeResponse{}, nil
}

// CleanUpChallenge implements ChallengeService.
func (s *Server) CleanUpChallenge(_ context.Context, req *netv1.CleanUpChallengeRequest) (*netv1.CleanUpChallengeResponse, error) {
	ch, err := s.challenges()
	if err != nil {
		return nil, err
	}
	switch req.GetType() {
	case netv1.ChallengeType_CHALLENGE_TYPE_HTTP_01:
		ch.CleanUpHTTP01(req.GetToken())
	case netv1.ChallengeType_CHALLENGE_TYPE_TLS_ALPN_01:
		ch.CleanUpTLSALPN01(req.GetDomain())
	default:
		return nil, fmt.Errorf("challenge type %v: give HTTP_01 or TLS_ALPN_01: %w", req.GetType(), errdefs.ErrInvalidArgument)
	}
	return &netv1.CleanUpChallengeResponse{}, nil
}

func (s *Server) challenges() (*proxy.Challenges, error) {
	if s.edge.proxy == nil {
		return nil, fmt.Errorf("netd serves no HTTPS (its --https-addr is empty), so it answers no ACME challenge: %w", errdefs.ErrFailedPrecondition)
	}
	return s.edge.proxy.Challenges(), nil
}
