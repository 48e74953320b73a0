// Command containerd-lite keeps Hearth's images, containers, volumes and packages.
package main

import (
	"os"

	"hearth.dev/internal/daemon"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/setup"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == lxcrt.ForkStartArg {
		os.Exit(lxcrt.ForkStart(os.Args[2:]))
	}
	daemon.Main(setup.Spec())
}
