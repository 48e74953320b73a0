package cli

import (
	"strings"
	"testing"
)

// writeCounter records each Write it gets.
type writeCounter struct{ writes []string }

func (c *writeCounter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, string(p))
	return len(p), nil
}

// TestAlignedOneWrite: a table or a list of fields reaches stdout in one write, aligned, so a
// reader that stops at its first match cannot end hearthctl half-way through it.
func TestAlignedOneWrite(t *testing.T) {
	tests := []struct {
		name  string
		print func(g *globals) error
		want  string
	}{
		{"table", func(g *globals) error {
			return g.table([]string{"INTERFACE", "ADDRESS"}, [][]string{{"web", "https://busybox.local"}, {"web", "http://x.onion"}})
		}, "INTERFACE  ADDRESS\nweb        https://busybox.local\nweb        http://x.onion\n"},
		{"fields", func(g *globals) error {
			return g.fields("name", "busybox", "version", "1.0.0")
		}, "name:    busybox\nversion: 1.0.0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c writeCounter
			if err := tt.print(&globals{stdout: &c}); err != nil {
				t.Fatal(err)
			}
			if len(c.writes) != 1 {
				t.Fatalf("%d writes, want 1: %q", len(c.writes), c.writes)
			}
			if got := strings.Join(c.writes, ""); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
