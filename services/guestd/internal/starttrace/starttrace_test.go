package starttrace

import (
	"fmt"
	"sync"
	"testing"
)

func TestTrace(t *testing.T) {
	tests := []struct {
		name  string
		marks []string
		want  []string
	}{
		{"in order", []string{"bundle", "reconcile", "a.exec"}, []string{"bundle", "reconcile", "a.exec"}},
		{"a restart keeps the first end", []string{"a.exec", "a.ready", "a.exec", "a.ready"}, []string{"a.exec", "a.ready"}},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr Trace
			for _, m := range tt.marks {
				tr.Mark(m)
			}
			got := tr.Marks()
			if len(got) != len(tt.want) {
				t.Fatalf("marks %v, want %v", got, tt.want)
			}
			for i, m := range got {
				if m.Name != tt.want[i] {
					t.Errorf("mark %d = %q, want %q", i, m.Name, tt.want[i])
				}
				if i > 0 && m.At.Before(got[i-1].At) {
					t.Errorf("mark %q at %v is before %q at %v", m.Name, m.At, got[i-1].Name, got[i-1].At)
				}
			}
		})
	}
}

func TestTraceBoundedAndConcurrent(t *testing.T) {
	var tr Trace
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < Max; i++ {
				tr.Mark(fmt.Sprintf("g%d.%d", g, i))
			}
		}()
	}
	wg.Wait()
	if n := len(tr.Marks()); n != Max {
		t.Errorf("%d marks kept, want the bound %d", n, Max)
	}
	var nilTrace *Trace
	nilTrace.Mark("x")
	if nilTrace.Marks() != nil {
		t.Error("a nil trace returned marks")
	}
}
