// Package stdreflection is grpc-go's server reflection, for grpcserver.Config.Reflection
// (and daemon.Spec.Reflection) in the host's daemons. guestd serves reflectsvc's instead:
// linking grpc-go's costs every process at start, called or not, so grpcserver imports
// neither.
package stdreflection

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

// Register registers grpc-go's reflection services (v1 and v1alpha) on s.
func Register(s *grpc.Server) { reflection.Register(s) }
