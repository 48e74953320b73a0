// Package netwait holds a package's start until its container has its network. The host
// starts the container first and attaches it to netd's bridge right after, while guestd
// is already booting: a hook or daemon that reaches out at once (an install hook fetching
// from a dependency) would otherwise race the attach and find no route.
package netwait

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// RouteFile is the kernel's IPv4 routing table of this network namespace.
const RouteFile = "/proc/net/route"

// poll is how often the table is read again while there is no default route: the attach
// follows the container's start within milliseconds.
const poll = 2 * time.Millisecond

// Wait returns once routes (RouteFile) has a default route that is up (netd adds it
// last, after the address), or an error once ctx ends without one.
func Wait(ctx context.Context, routes string) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no default route in %s yet (is the container attached to netd's bridge?): %w", routes, ctx.Err())
		case <-t.C:
		}
		ok, err := HasDefault(routes)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		t.Reset(poll)
	}
}

// rtfUp is the RTF_UP flag of a route.
const rtfUp = 0x1

// HasDefault reports whether the table in the format of /proc/net/route has a default
// route (destination and mask 0) that is up.
func HasDefault(routes string) (bool, error) {
	f, err := os.Open(routes)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		var flags uint64
		if _, err := fmt.Sscanf(f[3], "%x", &flags); err == nil && flags&rtfUp != 0 {
			return true, nil
		}
	}
	return false, sc.Err()
}
