package setup

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hearth.dev/internal/daemon"
)

// Bad flags stop certd at start with an error that names the flag.
func TestBadFlagsStopStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--leaf-lifetime", "0s"}, "--leaf-lifetime"},
		{[]string{"--root-overlap", "-1h"}, "--root-overlap"},
		{[]string{"--internal-domain", "bad domain"}, "--internal-domain"},
		{[]string{"--grant", "pkg"}, "OWNER=NAME"},
		{[]string{"--http01-addr", "127.0.0.1:0"}, "--acme-directory"},
		{[]string{"--acme-directory", "https://127.0.0.1:1/dir"}, "--http01-addr"},
		{[]string{"--acme-directory", "https://127.0.0.1:1/dir", "--dns01-provider", "no-such-provider"}, "--dns01-provider no-such-provider"},
		{[]string{"--acme-directory", "https://127.0.0.1:1/dir", "--http01-addr", taken.Addr().String()}, "http-01 listener on " + taken.Addr().String()},
		{[]string{"--acme-directory", "https://127.0.0.1:1/dir", "--http01-addr", "127.0.0.1:0", "--dns01-propagation", "sometimes"}, "--dns01-propagation"},
		{[]string{"--acme-directory", "https://127.0.0.1:1/dir", "--http01-addr", "127.0.0.1:0", "--acme-ca-roots", "/nonexistent.pem"}, "--acme-ca-roots"},
	} {
		dir := t.TempDir()
		args := append([]string{"--socket", filepath.Join(dir, "c.sock"), "--state-dir", filepath.Join(dir, "state")}, tc.args...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var out bytes.Buffer
		err := daemon.Run(ctx, Spec(), args, &out, &out)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("certd %v: %v, want an error naming %q", tc.args, err, tc.want)
		}
	}
}
