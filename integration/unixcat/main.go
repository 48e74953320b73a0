// Command unixcat is "nc -U" for the busybox images of the tests (whose nc has no Unix
// sockets): it connects to the Unix socket named by its argument (or
// $HEARTH_EFFECTS_SOCKET), sends its standard input, then half-closes, and copies what the
// socket answers to its standard output until the other side closes. It knows nothing of
// JSON-RPC: scripts write the protocol's lines themselves.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	path := os.Getenv("HEARTH_EFFECTS_SOCKET")
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "unixcat:", err)
		os.Exit(1)
	}
	go func() {
		_, _ = io.Copy(c, os.Stdin)
		_ = c.(*net.UnixConn).CloseWrite()
	}()
	if _, err := io.Copy(os.Stdout, c); err != nil {
		fmt.Fprintln(os.Stderr, "unixcat:", err)
		os.Exit(1)
	}
}
