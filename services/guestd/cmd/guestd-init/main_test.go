package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoGRPC: guestd-init runs in every container for its whole life; what it links
// and initializes is paid per container. gRPC and protobuf (and the packages that pull
// them in: the effects, the host client, the manifest) are the serving guestd's.
func TestLinksNoGRPC(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed %d packages: %q", len(deps), out)
	}
	for _, d := range deps {
		for _, banned := range []string{"google.golang.org/", "hearth.dev/proto/", "hearth.dev/internal/manifest", "hearth.dev/services/guestd/internal/effects"} {
			if strings.HasPrefix(d, banned) && d != "hearth.dev/services/guestd/internal/effectsock" {
				t.Errorf("guestd-init links %s", d)
			}
		}
	}
}
