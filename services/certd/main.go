// Command certd keeps Hearth's certificates: a local root CA for the LAN and ACME
// certificates for public domains.
package main

import (
	"hearth.dev/internal/daemon"
	"hearth.dev/services/certd/internal/certapi"
)

func main() {
	daemon.Main(daemon.Spec{
		Name:    "certd",
		Summary: "certd issues and renews Hearth's certificates: a local root CA for .local names and\nprivate addresses, and ACME certificates for public domains.",
		Init:    certapi.Init,
	})
}
