package launch

import (
	"context"
	"log/slog"
	"testing"
)

// countingHost counts the overlays the launcher asks the host to destroy.
type countingHost struct {
	Host
	destroyed []string
}

func (h *countingHost) DestroyOverlay(_ context.Context, name string) error {
	h.destroyed = append(h.destroyed, name)
	return nil
}

// TestReleaseAsksHostOnlyForWhatMayExist: a subcontainer the launcher made is destroyed on
// the host; one it never made, with nothing mounted where the host would mount it (this
// test runs outside a container: nothing is), costs no call.
func TestReleaseAsksHostOnlyForWhatMayExist(t *testing.T) {
	for _, tc := range []struct {
		name  string
		known bool
		want  int
	}{
		{"never made, nothing mounted", false, 0},
		{"made by this launcher", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &countingHost{}
			l := New(h, nil, nil, nil, slog.New(slog.DiscardHandler))
			if tc.known {
				l.subs["web"] = &sub{root: t.TempDir()}
			}
			if err := l.Release(context.Background(), "web"); err != nil {
				t.Fatal(err)
			}
			if len(h.destroyed) != tc.want {
				t.Errorf("host asked to destroy %v, want %d call(s)", h.destroyed, tc.want)
			}
		})
	}
}
