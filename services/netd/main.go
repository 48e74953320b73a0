// Command netd owns Hearth's host networking: the bridge, container addresses and NAT,
// port bindings, the TLS proxy, LAN names, domains and onion services.
package main

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"hearth.dev/internal/daemon"
	"hearth.dev/services/netd/internal/netapi"
)

func main() {
	var f netapi.Flags
	daemon.Main(daemon.Spec{
		Name:    "netd",
		Summary: "netd gives Hearth's containers their network: bridge, addresses, NAT, bindings,\nLAN names, domains and onion services.",
		Flags:   f.Register,
		Init:    f.Init,
		// grpc-go's server reflection: grpcurl list, describe.
		Reflection: func(s *grpc.Server) { reflection.Register(s) },
	})
}
