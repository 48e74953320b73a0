package guestapi

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"hearth.dev/services/guestd/internal/effects"
	"hearth.dev/services/guestd/internal/launch"
)

func TestRunCaptured(t *testing.T) {
	h := newHostLaunch(t)
	tests := []struct {
		name, script, stdin string
		timeout             time.Duration
		code                int
		signal              string
		stdout, stderr      string // prefixes
		outLen              int    // when not 0, stdout's length
		truncated           bool
		err                 error
	}{
		{"ok", `echo out; echo err >&2`, "", time.Minute, 0, "", "out\n", "err\n", 0, false, nil},
		{"stdin", `cat; exit 3`, "hello\nworld", time.Minute, 3, "", "hello\nworld", "", 0, false, nil},
		{"no stdin read", `exit 0`, strings.Repeat("x", 1<<20), time.Minute, 0, "", "", "", 0, false, nil},
		{"signal", `kill -TERM $$`, "", time.Minute, -1, "SIGTERM", "", "", 0, false, nil},
		{"truncated", `head -c 3000000 /dev/zero | tr '\0' a`, "", time.Minute, 0, "", "aaa", "", 1 << 20, true, nil},
		{"timeout", `echo started; sleep 30`, "", 300 * time.Millisecond, 0, "", "", "", 0, false, context.DeadlineExceeded},
		{"descendant holds output", `sleep 30 & echo bye`, "", time.Minute, 0, "", "bye\n", "", 0, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := h.Build("t", nil, []string{"sh", "-c", tt.script}, nil)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			resp, err := runCaptured(context.Background(), h.Launcher, cmd, tt.stdin, tt.timeout, func(e error) error { return e })
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("error %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if int(resp.GetExitCode()) != tt.code || resp.GetSignal() != tt.signal || !strings.HasPrefix(resp.GetStdout(), tt.stdout) ||
				!strings.HasPrefix(resp.GetStderr(), tt.stderr) || resp.GetTruncated() != tt.truncated {
				t.Fatalf("got %d %q out %.40q err %.40q truncated %v", resp.GetExitCode(), resp.GetSignal(), resp.GetStdout(), resp.GetStderr(), resp.GetTruncated())
			}
			if tt.outLen != 0 && len(resp.GetStdout()) != tt.outLen {
				t.Fatalf("stdout is %d bytes, want %d", len(resp.GetStdout()), tt.outLen)
			}
		})
	}
	// The caller going away kills the command.
	cmd, _ := h.Build("t", nil, []string{"sh", "-c", "sleep 30"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := runCaptured(ctx, h.Launcher, cmd, "", time.Minute, func(e error) error { return e }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller gone: %v", err)
	}
}

var _ spawner = (*launch.Launcher)(nil)

// TestEffectsBuild: the effects' handler guestd serves builds (the effects are made on
// the first call, no longer when guestd starts, so this is where a bad table shows).
func TestEffectsBuild(t *testing.T) {
	h, err := (&Server{}).newEffects(nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h.Names()); n < 10 {
		t.Errorf("%d effects: %v", n, h.Names())
	}
}

// TestLazyEffects: the handler is built once, on the first call; a build error is every
// call's error.
func TestLazyEffects(t *testing.T) {
	builds := 0
	l := &lazyEffects{build: func() (*effects.Handler, error) {
		builds++
		return nil, errors.New("broken table")
	}}
	for range 2 {
		if _, err := l.Call(context.Background(), "identity.get", nil); err == nil || !strings.Contains(err.Error(), "broken table") {
			t.Errorf("call: %v, want the build's error", err)
		}
	}
	if builds != 1 {
		t.Errorf("built %d times, want once", builds)
	}
}
