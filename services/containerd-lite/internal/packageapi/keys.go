package packageapi

import (
	"context"
	"fmt"
	"strings"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/hpkg"
	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// Keys implements KeyService over the host's trust store.
type Keys struct {
	containerv1.UnimplementedKeyServiceServer
	Store *hpkg.TrustStore
}

var _ containerv1.KeyServiceServer = (*Keys)(nil)

func keyProto(k hpkg.PublicKey) *containerv1.TrustedKey {
	return &containerv1.TrustedKey{Id: k.ID(), Comment: k.Comment, Key: k.String()}
}

// TrustKey implements KeyService.
func (s *Keys) TrustKey(_ context.Context, req *containerv1.TrustKeyRequest) (*containerv1.TrustKeyResponse, error) {
	k, err := hpkg.ParsePublicKey([]byte(strings.TrimSpace(req.GetKey())))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	if err := s.Store.Trust(k); err != nil {
		return nil, err
	}
	return &containerv1.TrustKeyResponse{Key: keyProto(k)}, nil
}

// UntrustKey implements KeyService.
func (s *Keys) UntrustKey(_ context.Context, req *containerv1.UntrustKeyRequest) (*containerv1.UntrustKeyResponse, error) {
	_, err := s.Store.Untrust(req.GetId())
	return &containerv1.UntrustKeyResponse{}, err
}

// ListKeys implements KeyService.
func (s *Keys) ListKeys(context.Context, *containerv1.ListKeysRequest) (*containerv1.ListKeysResponse, error) {
	ks, err := s.Store.List()
	if err != nil {
		return nil, err
	}
	resp := &containerv1.ListKeysResponse{}
	for _, k := range ks {
		resp.Keys = append(resp.Keys, keyProto(k))
	}
	return resp, nil
}
