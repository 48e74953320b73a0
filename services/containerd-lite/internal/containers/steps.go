package containers

import (
	"log/slog"
	"time"
)

// Step is when a step of an operation ended.
type Step struct {
	Name string
	At   time.Time
}

// steps times the steps of one operation, for its log line and its trace.
type steps struct {
	last  time.Time
	start time.Time
	attrs []any
	marks []Step
}

func newSteps() *steps { now := time.Now(); return &steps{last: now, start: now} }

// done records the time since the last step under name.
func (s *steps) done(name string) {
	now := time.Now()
	s.attrs = append(s.attrs, slog.Duration(name, now.Sub(s.last).Round(10*time.Microsecond)))
	s.marks = append(s.marks, Step{Name: name, At: now})
	s.last = now
}

// log returns the steps and the total, as log attributes.
func (s *steps) log() []any {
	return append(s.attrs, slog.Duration("took", time.Since(s.start).Round(10*time.Microsecond)))
}
