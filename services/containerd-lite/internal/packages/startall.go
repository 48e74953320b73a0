package packages

// Starting many packages at once: `hearthctl start --all`, and the start-up of
// containerd-lite after the host rebooted (RunWaiter), start every package that should
// run side by side, at most startWorkers at a time, each only once the packages it
// depends on have started and the interfaces it requires of them are ready.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"hearth.dev/internal/manifest"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	"hearth.dev/services/containerd-lite/internal/containers"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
)

// startWorkers is how many package starts run at once: as many as containers start at
// once (the containers' own bound, which every start goes through).
func startWorkers() int { return containers.DefaultMaxStarts() }

// readyPoll is how often a package whose dependencies started is looked at again, until
// the interfaces it requires of them are ready; readyGiveUp is how long it may wait so
// before it is left to the waiter (it keeps waiting, as after a single start).
const (
	readyPoll   = 20 * time.Millisecond
	readyGiveUp = 2 * time.Minute
)

// Outcomes of one package in a StartAll.
const (
	OutcomeStarted = "started" // it was stopped and now runs
	OutcomeRunning = "running" // it ran already
	OutcomeWaiting = "waiting" // it waits (Waits say for what); the waiter starts it later
	OutcomeFailed  = "failed"  // its start failed (Err)
)

// StartResult is what a StartAll did with one package.
type StartResult struct {
	ID      string
	Outcome string
	Waits   []*hostv1.Wait
	Err     error
	// At is when its start ended (zero for a package that ran already or did not start).
	At time.Time
}

// StartAll starts every installed package that is not running, side by side, in
// dependency order, and returns once each has started, failed, or is left waiting for
// something this start cannot bring (a dependency not installed, stopped by the user, in a
// cycle, or not ready within readyGiveUp). Each is recorded as one that should run: a
// package left waiting starts by itself when its dependencies are there. Results come in
// the order the starts ended, then the others by id.
func (m *Manager) StartAll(ctx context.Context) ([]StartResult, error) {
	g, _, err := m.graph()
	if err != nil {
		return nil, err
	}
	d := m.deps()
	var out []StartResult
	var set []string
	for _, id := range slices.Sorted(maps.Keys(g)) {
		r, start := m.markToStart(ctx, id)
		if start {
			set = append(set, id)
		} else {
			out = append(out, r)
		}
	}
	started := m.startSet(ctx, set)
	slices.SortStableFunc(started, func(a, b StartResult) int { return a.At.Compare(b.At) })
	d.wake()
	return append(started, out...), nil
}

// markToStart records that a package should run. It returns true when it is to be started
// (its intent is now waiting), or what StartAll reports of it otherwise.
func (m *Manager) markToStart(ctx context.Context, id string) (StartResult, bool) {
	unlock, err := m.lockBriefly(ctx, id)
	if err != nil {
		return StartResult{ID: id, Outcome: OutcomeFailed, Err: err}, false
	}
	defer unlock()
	p, err := m.installed(id)
	if err != nil {
		return StartResult{ID: id, Outcome: OutcomeFailed, Err: err}, false
	}
	i, err := m.opts.Containers.Get(ctx, p.Container)
	if err != nil {
		return StartResult{ID: id, Outcome: OutcomeFailed, Err: err}, false
	}
	d := m.deps()
	prev, _ := d.get(id)
	if i.State == lxcrt.Running {
		return StartResult{ID: id, Outcome: OutcomeRunning}, false
	}
	if err := d.set(id, &intent{State: intentWaiting, Hooks: prev.Hooks}); err != nil {
		return StartResult{ID: id, Outcome: OutcomeFailed, Err: err}, false
	}
	return StartResult{}, true
}

// startSet starts the waiting packages ids with the scheduler, the waiter standing aside.
func (m *Manager) startSet(ctx context.Context, ids []string) []StartResult {
	if len(ids) == 0 {
		return nil
	}
	d := m.deps()
	d.bulk.Add(1)
	defer d.bulk.Add(-1)
	g, mfs, err := m.graph()
	if err != nil {
		var out []StartResult
		for _, id := range ids {
			out = append(out, StartResult{ID: id, Outcome: OutcomeFailed, Err: err})
		}
		return out
	}
	began := time.Now()
	waits := func(id string) []*hostv1.Wait {
		mf := mfs[id]
		if mf == nil {
			return []*hostv1.Wait{{Package: id, Reason: "its manifest is unreadable"}}
		}
		return waitReasons(mf, func(dep string) depView { return m.view(ctx, dep, true) }, func(dep string) []string {
			if p := path(g, dep, id); p != nil {
				return append([]string{id}, p...)
			}
			return nil
		})
	}
	res := schedule(ctx, ids, g, startWorkers(), waits, func(id string) (bool, error) { return m.startWaitingNow(ctx, id) })
	n := 0
	for _, r := range res {
		if r.Outcome == OutcomeStarted {
			n++
		}
	}
	m.log.Info("packages started side by side", "asked", len(ids), "started", n, "workers", startWorkers(), "took", time.Since(began).Round(time.Millisecond))
	return res
}

// schedule runs start for each of ids, at most workers at once, each once every package
// of ids it depends on (g) has started and waits(id) is empty. A package whose waits name
// only packages of ids that started (their interfaces not ready yet) is looked at again
// every readyPoll, up to readyGiveUp; one whose waits name anything else, or whose
// dependency failed or is left waiting, is left waiting. start returns false when the
// package was no longer to start (stopped meanwhile): it is reported waiting, with no waits.
func schedule(ctx context.Context, ids []string, g map[string][]string, workers int, waits func(id string) []*hostv1.Wait, start func(id string) (bool, error)) []StartResult {
	const (
		pending = iota
		inflight
		done // started, failed or left waiting
	)
	inSet := map[string]bool{}
	for _, id := range ids {
		inSet[id] = true
	}
	// Only the set's own order matters: its packages' dependencies outside it either run
	// or are waits.
	sub := map[string][]string{}
	for _, id := range ids {
		sub[id] = g[id]
	}
	order, stuck := startOrder(sub)
	order = append(order, stuck...)
	state := map[string]int{}
	result := map[string]StartResult{}
	since := map[string]time.Time{} // when a package began waiting for its started dependencies
	type finished struct {
		id      string
		started bool
		err     error
	}
	ended := make(chan finished)
	running := 0
	cancelled := ctx.Done()
	leave := func(id string, ws []*hostv1.Wait) {
		state[id] = done
		result[id] = StartResult{ID: id, Outcome: OutcomeWaiting, Waits: ws}
	}
	for {
		polling := false
		for _, id := range order {
			if state[id] != pending || running >= workers || ctx.Err() != nil {
				continue
			}
			blocked := false
			for _, dep := range sub[id] {
				if !inSet[dep] || dep == id {
					continue
				}
				switch {
				case state[dep] != done:
					blocked = true
				case result[dep].Outcome != OutcomeStarted:
					leave(id, []*hostv1.Wait{{Package: dep, Reason: "it did not start: " + result[dep].Outcome}})
					blocked = true
				}
			}
			if blocked || state[id] != pending {
				continue
			}
			ws := waits(id)
			if len(ws) > 0 {
				soon := !slices.ContainsFunc(ws, func(w *hostv1.Wait) bool {
					return !inSet[w.GetPackage()] || result[w.GetPackage()].Outcome != OutcomeStarted
				})
				if _, ok := since[id]; !ok {
					since[id] = time.Now()
				}
				if soon && time.Since(since[id]) < readyGiveUp {
					polling = true
				} else {
					leave(id, ws)
				}
				continue
			}
			state[id] = inflight
			running++
			go func() {
				ok, err := start(id)
				ended <- finished{id, ok, err}
			}()
		}
		if running == 0 && !polling {
			break
		}
		var tick <-chan time.Time
		if polling {
			tick = time.After(readyPoll)
		}
		select {
		case f := <-ended:
			running--
			state[f.id] = done
			switch {
			case f.err != nil:
				result[f.id] = StartResult{ID: f.id, Outcome: OutcomeFailed, Err: f.err, At: time.Now()}
			case f.started:
				result[f.id] = StartResult{ID: f.id, Outcome: OutcomeStarted, At: time.Now()}
			default:
				result[f.id] = StartResult{ID: f.id, Outcome: OutcomeWaiting}
			}
		case <-tick:
		case <-cancelled:
			cancelled = nil // no more starts; wait for those under way
		}
	}
	var out []StartResult
	for _, id := range order {
		r, ok := result[id]
		if !ok {
			r = StartResult{ID: id, Outcome: OutcomeWaiting, Waits: []*hostv1.Wait{{Package: id, Reason: fmt.Sprintf("not started: %v", ctx.Err())}}}
		}
		out = append(out, r)
	}
	return out
}

// startWaitingNow starts a waiting package whose dependencies are there (the caller
// checked), with the hooks its intent keeps. It returns false when the package no longer
// waits (stopped, or started by someone else meanwhile). A failed start is left to the
// waiter, which tries again after retryFailed.
func (m *Manager) startWaitingNow(ctx context.Context, id string) (bool, error) {
	unlock, err := m.lockBriefly(ctx, id)
	if err != nil {
		return false, err
	}
	defer unlock()
	d := m.deps()
	in, ok := d.get(id)
	if !ok || in.State != intentWaiting {
		return false, nil
	}
	p, err := m.installed(id)
	if err != nil {
		return false, err
	}
	if i, err := m.opts.Containers.Get(ctx, p.Container); err != nil {
		return false, err
	} else if i.State == lxcrt.Running {
		return false, d.set(id, &intent{State: intentRunning})
	}
	if err := m.startLocked(ctx, id, p.Container, in.Hooks); err != nil {
		return false, fmt.Errorf("start %s: %w", id, err)
	}
	return true, nil
}

// startLocked starts a waiting package's container (its lock held) and records that it
// runs; a failed start is left to the waiter, which tries again after retryFailed.
func (m *Manager) startLocked(ctx context.Context, id, container string, hooks []manifest.HookRun) error {
	d := m.deps()
	m.log.Info("dependencies are there: starting the package", "package", id, "hooks", len(hooks))
	if _, err := m.opts.Containers.StartWith(ctx, container, hooks); err != nil {
		m.log.Error("start a package whose dependencies are there", "package", id, "error", err, "retry_in", retryFailed)
		d.mu.Lock()
		d.failed[id] = failure{err: err, next: time.Now().Add(retryFailed)}
		d.mu.Unlock()
		return err
	}
	if err := d.set(id, &intent{State: intentRunning}); err != nil {
		m.log.Error("record a started package", "package", id, "error", err)
	}
	return nil
}

// waitingIDs lists the packages whose intent is waiting.
func waitingIDs(all map[string]intent) []string {
	var out []string
	for id, in := range all {
		if in.State == intentWaiting {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// resultsText sums up a StartAll's results for a log line.
func resultsText(rs []StartResult) string {
	count := map[string]int{}
	for _, r := range rs {
		count[r.Outcome]++
	}
	var parts []string
	for _, o := range []string{OutcomeStarted, OutcomeRunning, OutcomeWaiting, OutcomeFailed} {
		if count[o] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[o], o))
		}
	}
	return strings.Join(parts, ", ")
}
