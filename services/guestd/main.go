// Command guestd is Hearth's service manager inside each container. As the container's
// init (PID 1) it reaps orphans and keeps a serving guestd running; the serving guestd
// answers the host on /media/hearth/rpc/guestd.sock.
package main

import (
	"os"

	"hearth.dev/services/guestd/internal/guestapi"
	"hearth.dev/services/guestd/internal/initproc"
)

func main() {
	if os.Getpid() == 1 || (len(os.Args) > 1 && os.Args[1] == "init") {
		os.Exit(initproc.Main(os.Args[1:]))
	}
	guestapi.Main()
}
