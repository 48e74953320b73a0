// Package effectsock is the effects socket's place and its creation, apart from the
// effects themselves: guestd's init (guestd-init, in C: it defines the same path and
// variable) creates the socket and hands it to each serving guestd, which serves the
// effects on it; a serving guestd given none creates its own with Listen.
package effectsock

import (
	"fmt"
	"net"
	"os"

	"hearth.dev/internal/unixsock"
)

// Path is the effects socket, as the container and every subcontainer see it (guestd
// binds it into each subcontainer and names it in every job's environment).
const Path = "/media/hearth/rpc/effects.sock"

// FDEnv names the descriptor of the effects socket's listener that init hands to the
// serving guestd. Init holds the socket for the container's life: subcontainers have it
// bound in, so it must stay the same socket across restarts of the serving guestd.
// Connections made while no guestd serves wait in its backlog.
const FDEnv = "HEARTH_EFFECTS_FD"

// Listen creates the effects socket at path, open to every user of the container
// (package scripts run as their images' users).
func Listen(path string) (net.Listener, error) {
	l, err := unixsock.Listen(path, unixsock.Options{UID: -1, GID: -1})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return l, nil
}
