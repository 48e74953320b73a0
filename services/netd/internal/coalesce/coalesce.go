// Package coalesce runs a job that brings state in line for every caller that asked for
// it, once per burst: callers that ask while a run is under way share the next run,
// instead of each queueing a run of its own behind it.
//
// netd's Sync is such a job: each one reads every binding and attachment and applies the
// whole firewall. When the host starts its services at once, attachments arrive a few
// milliseconds apart, faster than a Sync at a hundred services; a Sync per attachment
// made the burst O(N²).
package coalesce

import (
	"context"
	"errors"
	"sync"
)

// Gate coalesces the runs of one job. The zero value is ready.
type Gate struct {
	mu      sync.Mutex
	cond    *sync.Cond
	asked   uint64 // requests made so far
	done    uint64 // every request up to done was covered by a finished run
	running bool
	err     error // the result of the run that finished last
}

// Do returns the result of a run of job that began after this call did: the caller's
// own, or that of another caller that asked at about the same time. A run covers every
// request made before it began. A caller whose covering run ended because its runner's
// context was done, while its own is not, asks again.
func (g *Gate) Do(ctx context.Context, job func(context.Context) error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	for {
		g.asked++
		mine, ran := g.asked, false
		for g.done < mine {
			if g.running {
				g.cond.Wait()
				continue
			}
			g.running, ran = true, true
			covers := g.asked
			g.mu.Unlock()
			err := job(ctx)
			g.mu.Lock()
			g.running = false
			g.done, g.err = covers, err
			g.cond.Broadcast()
		}
		err := g.err
		if !ran && err != nil && ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			continue // another caller's context ended the run: ask again
		}
		return err
	}
}
