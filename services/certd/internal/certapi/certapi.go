// Package certapi serves CertificateService over the leaf manager and the local CA.
// Handlers return plain errors wrapping an errdefs kind: the server maps them to gRPC
// codes.
package certapi

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"hearth.dev/internal/errdefs"
	certv1 "hearth.dev/proto/hearth/cert/v1"
	"hearth.dev/services/certd/internal/acme"
	"hearth.dev/services/certd/internal/ca"
	"hearth.dev/services/certd/internal/leaf"
	"hearth.dev/services/certd/internal/names"
	"hearth.dev/services/certd/internal/x509pem"
)

// Server implements CertificateService.
type Server struct {
	certv1.UnimplementedCertificateServiceServer
	m  *leaf.Manager
	ca *ca.CA
	// overlap is RotateRoot's default.
	overlap time.Duration
}

var _ certv1.CertificateServiceServer = (*Server)(nil)

// New returns the service over m and the local CA; overlap is RotateRoot's default.
func New(m *leaf.Manager, c *ca.CA, overlap time.Duration) *Server {
	return &Server{m: m, ca: c, overlap: overlap}
}

// GetRoot implements CertificateService.
func (s *Server) GetRoot(context.Context, *certv1.GetRootRequest) (*certv1.GetRootResponse, error) {
	resp := &certv1.GetRootResponse{Roots: s.roots(s.ca.Roots())}
	for _, r := range resp.Roots {
		resp.RootsPem = append(resp.RootsPem, r.Pem)
	}
	return resp, nil
}

func (s *Server) roots(rs []ca.Root) []*certv1.Root {
	out := make([]*certv1.Root, 0, len(rs))
	for _, r := range rs {
		p := &certv1.Root{
			Pem:               x509pem.EncodeCerts(r.Cert),
			Sha256Fingerprint: ca.Fingerprint(r.Cert),
			NotBefore:         timestamppb.New(r.Cert.NotBefore),
			NotAfter:          timestamppb.New(r.Cert.NotAfter),
			Current:           r.Current,
			Subject:           r.Cert.Subject.String(),
		}
		if !r.PublishedUntil.IsZero() {
			p.PublishedUntil = timestamppb.New(r.PublishedUntil)
		}
		out = append(out, p)
	}
	return out
}

var kinds = map[certv1.Issuer]leaf.Kind{
	certv1.Issuer_ISSUER_UNSPECIFIED: leaf.Local,
	certv1.Issuer_ISSUER_LOCAL:       leaf.Local,
	certv1.Issuer_ISSUER_ACME:        leaf.ACME,
}

var challenges = map[certv1.Challenge]string{
	certv1.Challenge_CHALLENGE_UNSPECIFIED: "",
	certv1.Challenge_CHALLENGE_HTTP_01:     acme.HTTP01,
	certv1.Challenge_CHALLENGE_TLS_ALPN_01: acme.TLSALPN01,
	certv1.Challenge_CHALLENGE_DNS_01:      acme.DNS01,
}

// IssueCertificate implements CertificateService.
func (s *Server) IssueCertificate(ctx context.Context, req *certv1.IssueCertificateRequest) (*certv1.IssueCertificateResponse, error) {
	r, err := request(req)
	if err != nil {
		return nil, err
	}
	rec, err := s.m.Issue(ctx, r)
	if err != nil {
		return nil, err
	}
	return &certv1.IssueCertificateResponse{Certificate: ToProto(rec, true)}, nil
}

func request(req *certv1.IssueCertificateRequest) (leaf.Request, error) {
	kind, ok := kinds[req.GetIssuer()]
	if !ok {
		return leaf.Request{}, fmt.Errorf("issuer %v: use ISSUER_LOCAL or ISSUER_ACME: %w", req.GetIssuer(), errdefs.ErrInvalidArgument)
	}
	ch, ok := challenges[req.GetChallenge()]
	if !ok {
		return leaf.Request{}, fmt.Errorf("challenge %v: use HTTP_01, TLS_ALPN_01 or DNS_01: %w", req.GetChallenge(), errdefs.ErrInvalidArgument)
	}
	if ch != "" && kind != leaf.ACME {
		return leaf.Request{}, fmt.Errorf("a challenge is for ACME certificates; the local CA needs none: %w", errdefs.ErrInvalidArgument)
	}
	if err := names.CheckOwner(req.GetOwner()); err != nil {
		return leaf.Request{}, err
	}
	set, err := names.Parse(req.GetDnsNames(), req.GetIpAddresses())
	if err != nil {
		return leaf.Request{}, err
	}
	var held []string
	if len(req.GetHeldNames()) > 0 {
		if req.GetOwner() == "" {
			return leaf.Request{}, fmt.Errorf("held_names go with an owner: an administrative request may have any name already: %w", errdefs.ErrInvalidArgument)
		}
		hs, err := names.Parse(req.GetHeldNames(), nil)
		if err != nil {
			return leaf.Request{}, fmt.Errorf("held_names: %w", err)
		}
		held = hs.DNS
	}
	return leaf.Request{Names: set, Kind: kind, Owner: req.GetOwner(), Challenge: ch, Held: held}, nil
}

// GetCertificate implements CertificateService.
func (s *Server) GetCertificate(_ context.Context, req *certv1.GetCertificateRequest) (*certv1.GetCertificateResponse, error) {
	rec, err := s.m.Get(req.GetId(), req.GetOwner())
	if err != nil {
		return nil, err
	}
	return &certv1.GetCertificateResponse{Certificate: ToProto(rec, req.GetIncludeKey())}, nil
}

// ListCertificates implements CertificateService.
func (s *Server) ListCertificates(_ context.Context, req *certv1.ListCertificatesRequest) (*certv1.ListCertificatesResponse, error) {
	resp := &certv1.ListCertificatesResponse{}
	for _, rec := range s.m.List(req.GetOwner()) {
		resp.Certificates = append(resp.Certificates, ToProto(rec, false))
	}
	return resp, nil
}

// RenewCertificate implements CertificateService.
func (s *Server) RenewCertificate(ctx context.Context, req *certv1.RenewCertificateRequest) (*certv1.RenewCertificateResponse, error) {
	rec, err := s.m.Renew(ctx, req.GetId(), req.GetOwner())
	if err != nil {
		return nil, err
	}
	return &certv1.RenewCertificateResponse{Certificate: ToProto(rec, true)}, nil
}

var events = map[leaf.EventKind]certv1.Event{
	leaf.EventExisting:      certv1.Event_EVENT_EXISTING,
	leaf.EventIssued:        certv1.Event_EVENT_ISSUED,
	leaf.EventRenewed:       certv1.Event_EVENT_RENEWED,
	leaf.EventReissued:      certv1.Event_EVENT_REISSUED,
	leaf.EventRootRotated:   certv1.Event_EVENT_ROOT_ROTATED,
	leaf.EventRenewalFailed: certv1.Event_EVENT_RENEWAL_FAILED,
}

// WatchCertificates implements CertificateService. A watcher that falls far behind is
// ended with ResourceExhausted and should watch again.
func (s *Server) WatchCertificates(req *certv1.WatchCertificatesRequest, stream certv1.CertificateService_WatchCertificatesServer) error {
	if err := names.CheckOwner(req.GetOwner()); err != nil {
		return err
	}
	// Subscribe before listing, so that no change falls between the two.
	sub := s.m.Subscribe()
	defer sub.Close()
	if req.GetIncludeExisting() {
		for _, rec := range s.m.List(req.GetOwner()) {
			if err := stream.Send(&certv1.WatchCertificatesResponse{Event: certv1.Event_EVENT_EXISTING, Certificate: ToProto(rec, req.GetIncludeKey())}); err != nil {
				return err
			}
		}
	}
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				return sub.Err()
			}
			resp := &certv1.WatchCertificatesResponse{Event: events[ev.Kind]}
			if ev.Record != nil {
				if req.GetOwner() != "" && ev.Record.Owner != req.GetOwner() {
					continue
				}
				resp.Certificate = ToProto(ev.Record, req.GetIncludeKey())
			} else {
				resp.Roots = s.roots(ev.Roots)
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}

// RotateRoot implements CertificateService.
func (s *Server) RotateRoot(ctx context.Context, req *certv1.RotateRootRequest) (*certv1.RotateRootResponse, error) {
	overlap := s.overlap
	if req.GetOverlap() != nil {
		overlap = req.GetOverlap().AsDuration()
	}
	n, err := s.m.RotateRoot(ctx, overlap)
	if err != nil {
		return nil, fmt.Errorf("rotate the root (%d certificates re-issued): %w", n, err)
	}
	return &certv1.RotateRootResponse{Roots: s.roots(s.ca.Roots()), Reissued: int32(n)}, nil
}

var protoKinds = map[leaf.Kind]certv1.Issuer{leaf.Local: certv1.Issuer_ISSUER_LOCAL, leaf.ACME: certv1.Issuer_ISSUER_ACME}

var protoChallenges = map[string]certv1.Challenge{
	acme.HTTP01:    certv1.Challenge_CHALLENGE_HTTP_01,
	acme.TLSALPN01: certv1.Challenge_CHALLENGE_TLS_ALPN_01,
	acme.DNS01:     certv1.Challenge_CHALLENGE_DNS_01,
}

// ToProto describes a record; the private key only with withKey.
func ToProto(r *leaf.Record, withKey bool) *certv1.Certificate {
	c := &certv1.Certificate{
		Id:          r.ID,
		DnsNames:    r.DNSNames,
		IpAddresses: r.IPs,
		Issuer:      protoKinds[r.Kind],
		NotBefore:   timestamppb.New(r.NotBefore),
		NotAfter:    timestamppb.New(r.NotAfter),
		ChainPem:    r.ChainPEM,
		Owner:       r.Owner,
		RenewAt:     timestamppb.New(r.RenewAt),
		Serial:      r.Serial,
		Challenge:   protoChallenges[r.Challenge],
		LastError:   r.LastError,
	}
	if r.Failures > 0 {
		c.RenewAt = timestamppb.New(r.RetryAt)
	}
	if withKey {
		c.KeyPem = r.KeyPEM
	}
	return c
}
