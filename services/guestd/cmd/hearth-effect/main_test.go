package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"hearth.dev/internal/errkind"
	"hearth.dev/internal/jsonrpc"
)

func TestRun(t *testing.T) {
	var m jsonrpc.Mux
	jsonrpc.Register(&m, "echo", func(ctx context.Context, p map[string]any) (map[string]any, error) { return p, nil })
	jsonrpc.Register(&m, "fail", func(ctx context.Context, p struct{}) (any, error) {
		return nil, errkind.NotFound
	})
	path := filepath.Join(t.TempDir(), "e.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &jsonrpc.Server{Handler: &m}
	go s.Serve(context.Background(), l)
	defer s.Close()
	tests := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout string
		stderr string // a substring
	}{
		{"result", []string{"echo", `{"a":1}`}, "", 0, `{"a":1}` + "\n", ""},
		{"no params", []string{"echo"}, "", 0, "null\n", ""},
		{"stdin", []string{"echo", "-"}, `{"b":[true]}`, 0, `{"b":[true]}` + "\n", ""},
		{"error", []string{"fail"}, "", 1, "", "hearth-effect: fail: not found (code -32001)\n{\"kind\":\"not_found\"}\n"},
		{"unknown", []string{"nope", "{}"}, "", 1, "", `{"method":"nope"}`},
		{"bad params", []string{"fail", `{"x":1}`}, "", 1, "", `{"param":"x","problem":"unknown parameter: this method takes none"}`},
		{"not json", []string{"echo", `{a:1}`}, "", 2, "", "the params are not JSON"},
		{"usage", []string{}, "", 2, "", "usage: hearth-effect"},
		{"no socket", []string{"-socket", "/nonexistent/e.sock", "echo"}, "", 1, "", "connect to guestd's effects socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if len(args) > 0 && args[0] != "-socket" {
				args = append([]string{"-socket", path}, args...)
			}
			var out, errb bytes.Buffer
			code := run(args, strings.NewReader(tt.stdin), &out, &errb)
			if code != tt.code || out.String() != tt.stdout || !strings.Contains(errb.String(), tt.stderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errb.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

// TestNoGRPC checks that the client links neither gRPC nor protobuf.
func TestNoGRPC(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var deps []string
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, "google.golang.org/") || strings.Contains(d, "grpc") || strings.Contains(d, "protobuf") {
			deps = append(deps, d)
		}
	}
	if len(deps) > 0 {
		b, _ := json.Marshal(deps)
		t.Fatalf("hearth-effect links %s", b)
	}
	if !strings.Contains(string(out), "hearth.dev/internal/jsonrpc") {
		t.Fatalf("go list -deps does not list jsonrpc: %s", out)
	}
}
