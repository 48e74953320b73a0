package cli

import (
	"testing"

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
