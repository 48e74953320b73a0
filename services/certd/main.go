// Command certd keeps Hearth's certificates: a local root CA for the LAN and ACME
// certificates for public domains.
package main

import (
	"hearth.dev/internal/daemon"
	"hearth.dev/services/certd/internal/setup"
)

func main() { daemon.Main(setup.Spec()) }
