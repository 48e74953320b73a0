// Command netd owns Hearth's host networking: the bridge, container addresses and NAT,
// port bindings, the TLS proxy, LAN names, domains and onion services.
package main

import (
	"hearth.dev/internal/daemon"
	"hearth.dev/internal/grpcserver/stdreflection"
	"hearth.dev/services/netd/internal/netapi"
)

func main() {
	var f netapi.Flags
	daemon.Main(daemon.Spec{
		Name:       "netd",
		Summary:    "netd gives Hearth's containers their network: bridge, addresses, NAT, bindings,\nLAN names, domains and onion services.",
		Flags:      f.Register,
		Init:       f.Init,
		Reflection: stdreflection.Register,
	})
}
