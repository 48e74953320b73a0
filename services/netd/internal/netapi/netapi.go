// Package netapi serves netd's gRPC services.
package netapi

import (
	"context"

	"hearth.dev/internal/daemon"
	netv1 "hearth.dev/proto/hearth/net/v1"
)

// Server implements NetworkService and BindingService. Their methods arrive with the
// networking issue; until then they answer Unimplemented.
type Server struct {
	netv1.UnimplementedNetworkServiceServer
	netv1.UnimplementedBindingServiceServer
}

var (
	_ netv1.NetworkServiceServer = (*Server)(nil)
	_ netv1.BindingServiceServer = (*Server)(nil)
)

// Init registers netd's services.
func Init(_ context.Context, env *daemon.Env) (daemon.Hooks, error) {
	s := &Server{}
	netv1.RegisterNetworkServiceServer(env.Server, s)
	netv1.RegisterBindingServiceServer(env.Server, s)
	return daemon.Hooks{}, nil
}
