// Command containerd-lite keeps Hearth's images, containers, volumes and packages.
package main

import (
	"os"

	"hearth.dev/internal/daemon"
	"hearth.dev/services/containerd-lite/internal/idmap"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/setup"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case lxcrt.ForkStartArg:
			os.Exit(lxcrt.ForkStart(os.Args[2:]))
		case idmap.HoldArg:
			os.Exit(idmap.Hold())
		}
	}
	daemon.Main(setup.Spec())
}
