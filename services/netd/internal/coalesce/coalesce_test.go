package coalesce

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCoalesce: while one run is under way, 50 callers ask; they share the runs that
// follow (not one each), and every caller's result comes from a run that began after it
// asked.
func TestCoalesce(t *testing.T) {
	var g Gate
	var runs, began atomic.Int64
	release := make(chan struct{})
	firstIn := make(chan struct{})
	job := func(context.Context) error {
		n := runs.Add(1)
		began.Store(time.Now().UnixNano())
		if n == 1 {
			close(firstIn)
			<-release
		}
		return nil
	}
	go g.Do(context.Background(), job)
	<-firstIn
	const callers = 50
	var wg sync.WaitGroup
	late := make([]bool, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			asked := time.Now().UnixNano()
			if err := g.Do(context.Background(), job); err != nil {
				t.Error(err)
			}
			late[i] = began.Load() >= asked
		}()
	}
	time.Sleep(50 * time.Millisecond) // the callers are waiting behind the first run
	close(release)
	wg.Wait()
	if n := runs.Load(); n < 2 || n > 3 {
		t.Errorf("%d runs for 1 + %d callers that asked during the first; want 2 (3 if one asked late)", n, callers)
	}
	for i, ok := range late {
		if !ok {
			t.Errorf("caller %d got the result of a run that began before it asked", i)
		}
	}
}

// TestResults: each caller gets the result of the run that covered it, an error
// included.
func TestResults(t *testing.T) {
	var g Gate
	boom := errors.New("boom")
	for _, want := range []error{nil, boom, nil} {
		if got := g.Do(context.Background(), func(context.Context) error { return want }); !errors.Is(got, want) {
			t.Errorf("Do = %v, want %v", got, want)
		}
	}
}

// TestOthersCancel: two callers wait behind a run; the next run covers both, run by
// whichever wakes first. When that is the one whose context then ends, the run ends with
// its cancellation: the other caller, its context fine, must not get that error but the
// result of a run of its own. Repeated, so that each wakes first in some rounds.
func TestOthersCancel(t *testing.T) {
	for round := range 30 {
		var g Gate
		ctx, cancel := context.WithCancel(context.Background())
		release := make(chan struct{})
		inFirst := make(chan struct{})
		var runs atomic.Int64
		job := func(c context.Context) error {
			switch {
			case runs.Add(1) == 1:
				close(inFirst)
				<-release
				return nil
			case c == ctx:
				cancel()
				return c.Err()
			}
			return nil
		}
		go g.Do(context.Background(), job)
		<-inFirst
		errs := make(chan error, 2)
		go func() { errs <- g.Do(ctx, job) }()
		fine := make(chan error, 1)
		go func() { fine <- g.Do(context.Background(), job) }()
		time.Sleep(5 * time.Millisecond) // both wait behind the first run
		close(release)
		if err := <-fine; err != nil {
			t.Fatalf("round %d: the caller whose context is fine got %v (after %d runs)", round, err, runs.Load())
		}
		<-errs // nil, or its own cancellation: either is its due
		cancel()
	}
}

// TestOwnTimeout: a runner whose job fails with a deadline of its own (not the caller's
// context) gets that error, not another run.
func TestOwnTimeout(t *testing.T) {
	var g Gate
	var runs atomic.Int64
	err := g.Do(context.Background(), func(context.Context) error {
		runs.Add(1)
		return context.DeadlineExceeded
	})
	if !errors.Is(err, context.DeadlineExceeded) || runs.Load() != 1 {
		t.Errorf("Do = %v after %d runs, want the job's deadline after 1", err, runs.Load())
	}
}
