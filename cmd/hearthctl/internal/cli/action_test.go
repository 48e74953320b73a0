package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/grpcserver"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

func TestInputSummary(t *testing.T) {
	i64 := func(n int64) *int64 { return &n }
	for _, tc := range []struct {
		name   string
		fields []*hostv1.ActionField
		want   string
	}{
		{"none", nil, "-"},
		{"bounds and default", []*hostv1.ActionField{{Name: "length", Type: "integer", Min: i64(8), Max: i64(64), DefaultJson: "20"}}, "length:integer[8..64]=20"},
		{"required, one bound", []*hostv1.ActionField{{Name: "token", Type: "secret", Required: true, Min: i64(12)}}, "token*:secret[12..]"},
		{"enum, sorted", []*hostv1.ActionField{{Name: "mode", Type: "enum", Values: []string{"fast", "safe"}, DefaultJson: `"safe"`}, {Name: "a", Type: "boolean"}},
			`a:boolean mode:enum(fast|safe)="safe"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := inputSummary(tc.fields); got != tc.want {
				t.Errorf("inputSummary = %q, want %q", got, tc.want)
			}
		})
	}
}

// actionPackages stands in for containerd-lite's PackageService: hello has one action,
// reset (length: integer 12..64, notify: boolean, note: string). It records the input
// each run was given.
type actionPackages struct {
	containerv1.UnimplementedPackageServiceServer
	inputs []string
}

func (p *actionPackages) ListActions(_ context.Context, req *containerv1.ListActionsRequest) (*containerv1.ListActionsResponse, error) {
	lo, hi := int64(12), int64(64)
	return &containerv1.ListActionsResponse{Actions: []*hostv1.ActionInfo{{Id: "reset", Name: "Reset", When: "any", Available: true, Input: []*hostv1.ActionField{
		{Name: "length", Type: "integer", Min: &lo, Max: &hi, DefaultJson: "24"}, {Name: "notify", Type: "boolean"}, {Name: "note", Type: "string"},
	}}}}, nil
}

func (p *actionPackages) RunAction(_ context.Context, req *containerv1.RunActionRequest) (*containerv1.RunActionResponse, error) {
	p.inputs = append(p.inputs, req.GetAction()+" "+req.GetInputJson())
	if req.GetAction() != "reset" {
		return nil, fmt.Errorf("hello has no action %q (its actions: reset): %w", req.GetAction(), errdefs.ErrNotFound)
	}
	return &containerv1.RunActionResponse{Message: "new password", Values: []*hostv1.ActionValue{
		{Name: "user", Value: "admin", Copyable: true}, {Name: "password", Value: "Xy7", Secret: true, Copyable: true}}}, nil
}

func TestActionRun(t *testing.T) {
	file := filepath.Join(t.TempDir(), "in.json")
	if err := os.WriteFile(file, []byte(`{"length": 30, "note": "from the file"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
		inputs string
	}{
		{"typed pairs", []string{"action", "run", "hello", "reset", "--input", "length=32", "--input", "notify=no", "--input", "note=a=b"}, 0,
			[]string{"new password\n", "user:", "admin", "password (secret, shown once): Xy7"}, []string{"copy them now"}, `reset {"length":32,"note":"a=b","notify":false}`},
		{"no input", []string{"action", "run", "hello", "reset"}, 0, []string{"new password"}, nil, "reset {}"},
		{"file, then pairs over it", []string{"action", "run", "hello", "reset", "--input-file", file, "--input", "length=12"}, 0, nil, nil,
			`reset {"length":12,"note":"from the file"}`},
		{"not an integer: nothing sent", []string{"action", "run", "hello", "reset", "--input", "length=long"}, 1, nil,
			[]string{`length: "long" is not an integer: give an integer from 12 to 64, such as length=12`, "hearthctl action ls hello"}, ""},
		{"unknown field: nothing sent", []string{"action", "run", "hello", "reset", "--input", "size=3"}, 1, nil,
			[]string{"size: unknown field: this action takes length, note, notify"}, ""},
		{"not key=value", []string{"action", "run", "hello", "reset", "--input", "length"}, 1, nil, []string{"write key=value"}, ""},
		{"bad file", []string{"action", "run", "hello", "reset", "--input-file", "/nonexistent.json"}, 1, nil, []string{"--input-file"}, ""},
		{"unknown action: the host says", []string{"action", "run", "hello", "nope"}, 1, nil, []string{`hello has no action "nope" (its actions: reset)`, "(NotFound)"}, "nope {}"},
		{"json", []string{"-o", "json", "action", "run", "hello", "reset"}, 0, []string{`"password"`, `"Xy7"`}, nil, "reset {}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := &actionPackages{}
			serve(t, dir, "containerd-lite", func(s *grpcserver.Server) { containerv1.RegisterPackageServiceServer(s, p) })
			code, stdout, stderr := run(t, dir, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout %q; want it to contain %q", stdout, w)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q; want it to contain %q", stderr, w)
				}
			}
			if got := strings.Join(p.inputs, ","); got != tc.inputs {
				t.Errorf("runs %q, want %q", got, tc.inputs)
			}
		})
	}
}
