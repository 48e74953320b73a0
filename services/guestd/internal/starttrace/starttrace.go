// Package starttrace records when each step of guestd's first start of its package ended:
// cheap enough to leave on (a timestamp under a lock per step, at most Max steps), and
// reported by GetInfo so that a benchmark can put guestd's steps beside the host's.
package starttrace

import (
	"sync"
	"time"
)

// Max bounds the marks kept: a package with very many jobs is traced up to there.
const Max = 256

// Mark is when a step ended.
type Mark struct {
	Name string
	At   time.Time
}

// Trace is a list of marks, safe for concurrent use. The zero value is ready; a nil
// *Trace records nothing.
type Trace struct {
	mu    sync.Mutex
	marks []Mark
	seen  map[string]bool
}

// Mark records that the step name ended now. Only a step's first end is kept: a job
// that restarts does not add marks.
func (t *Trace) Mark(name string) {
	if t == nil {
		return
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[name] || len(t.marks) >= Max {
		return
	}
	if t.seen == nil {
		t.seen = map[string]bool{}
	}
	t.seen[name] = true
	t.marks = append(t.marks, Mark{Name: name, At: now})
}

// Marks returns a copy of the marks, in the order they were recorded.
func (t *Trace) Marks() []Mark {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Mark(nil), t.marks...)
}
