// Package sdnotify tells systemd about a service's state (sd_notify(3)) when the service
// runs under systemd with Type=notify; elsewhere it does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// Ready reports that start-up is finished.
func Ready() error { return Notify("READY=1") }

// Stopping reports that the service is shutting down.
func Stopping() error { return Notify("STOPPING=1") }

// Notify sends state to $NOTIFY_SOCKET. Without that variable it is a no-op.
func Notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", state, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", state, err)
	}
	return nil
}
