// Package certapi serves certd's gRPC service.
package certapi

import (
	"context"

	"hearth.dev/internal/daemon"
	certv1 "hearth.dev/proto/hearth/cert/v1"
)

// Server implements CertificateService. Its methods arrive with the certd issue; until
// then they answer Unimplemented.
type Server struct {
	certv1.UnimplementedCertificateServiceServer
}

var _ certv1.CertificateServiceServer = (*Server)(nil)

// Init registers certd's service.
func Init(_ context.Context, env *daemon.Env) (daemon.Hooks, error) {
	certv1.RegisterCertificateServiceServer(env.Server, &Server{})
	return daemon.Hooks{}, nil
}
