// Command containerd-lite keeps Hearth's images, containers, volumes and packages.
package main

import (
	"os"

	"hearth.dev/internal/daemon"
	"hearth.dev/services/containerd-lite/internal/idmap"
	_ "hearth.dev/services/containerd-lite/internal/lxcrt" // handles "forkstart" before main
	"hearth.dev/services/containerd-lite/internal/setup"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case idmap.HoldArg:
			os.Exit(idmap.Hold())
		}
	}
	daemon.Main(setup.Spec())
}
