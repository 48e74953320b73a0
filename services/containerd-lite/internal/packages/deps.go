package packages

// Dependencies between packages (a manifest's dependencies).
//
// A package starts only once each dependency that is not optional is installed in a
// version its range takes, declares the interfaces the package requires of it, runs, and
// the daemons behind those interfaces are ready (guestd's DAEMON_STATE_READY: a daemon
// without a ready check is ready once it runs). Until then the package waits: its intent
// ("waiting") is kept in intents.json beside the staging directory, so a waiting package
// still waits after a restart of containerd-lite, and a waiter (RunWaiter) starts it as
// soon as its dependencies are there. A package that was started has the intent
// "running"; at start-up, those whose container is not running (the host rebooted) wait
// again, which starts them in dependency order. StopPackage forgets the intent.
//
// An install whose dependencies are not there does not start the package: it waits, and
// the hooks of that first start (the install hook) are kept with its intent and run when
// it starts.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hearth.dev/internal/atomicfile"
	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/store"
)

// InternalDomain is the domain of containers on netd's bridge (netd's --internal-domain):
// a dependency answers at <id>.InternalDomain.
const InternalDomain = "hearth.internal"

// Intents.
const (
	intentWaiting = "waiting"
	intentRunning = "running"
)

// waitPoll is how often the waiter looks at the waiting packages' dependencies;
// retryFailed how long it leaves a package whose start failed before trying again.
const (
	waitPoll    = 500 * time.Millisecond
	retryFailed = 30 * time.Second
)

// intent is what the user asked of a package: that it run (it may still wait).
type intent struct {
	State string `json:"state"`
	// Hooks run at its next start (the install hook of an install that waited).
	Hooks []manifest.HookRun `json:"hooks,omitempty"`
	Since time.Time          `json:"since"`
}

// depState is the manager's part for dependencies: the intents (kept in a file), the
// waiter's wake-up and the starts that failed.
type depState struct {
	once    sync.Once
	mu      sync.Mutex
	path    string
	intents map[string]intent
	loadErr error
	kick    chan struct{}
	failed  map[string]failure
	// bulk counts the StartAlls under way: the waiter stands aside meanwhile.
	bulk atomic.Int32
}

type failure struct {
	err  error
	next time.Time
}

// deps returns the dependency state, loaded on first use.
func (m *Manager) deps() *depState {
	d := &m.dep
	d.once.Do(func() {
		d.path = filepath.Join(m.opts.StateDir, "intents.json")
		d.intents = map[string]intent{}
		d.failed = map[string]failure{}
		d.kick = make(chan struct{}, 1)
		data, err := os.ReadFile(d.path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			d.loadErr = err
		default:
			if err := json.Unmarshal(data, &d.intents); err != nil {
				d.loadErr = fmt.Errorf("%s: %w", d.path, err)
			}
		}
		if d.loadErr != nil {
			m.log.Error("package intents unreadable: packages that waited must be started again", "error", d.loadErr)
			d.intents = map[string]intent{}
		}
	})
	return d
}

func (d *depState) get(id string) (intent, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, ok := d.intents[id]
	return in, ok
}

func (d *depState) all() map[string]intent {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.intents)
}

// set records a package's intent (none: forget it) and saves them all.
func (d *depState) set(id string, in *intent) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	prev, had := d.intents[id]
	if in == nil {
		delete(d.intents, id)
	} else {
		if in.Since.IsZero() {
			in.Since = time.Now().UTC()
		}
		d.intents[id] = *in
	}
	delete(d.failed, id)
	data, err := json.MarshalIndent(d.intents, "", "  ")
	if err == nil {
		err = atomicfile.Write(d.path, data, 0o600)
	}
	if err != nil {
		if had {
			d.intents[id] = prev
		} else {
			delete(d.intents, id)
		}
		return fmt.Errorf("record that %s should run: %w", id, err)
	}
	return nil
}

func (d *depState) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// isWaiting says whether a package waits for its dependencies (and must not be started
// by anything else).
func (m *Manager) isWaiting(id string) bool {
	in, ok := m.deps().get(id)
	return ok && in.State == intentWaiting
}

// depView is what the waits need to know of one dependency.
type depView struct {
	installed bool
	err       error // reading it failed
	mf        *manifest.Manifest
	running   bool
	waiting   bool // it waits for its own dependencies
	states    map[string]guestv1.DaemonState
	statesErr error
	address   string
}

// view looks at an installed package: its manifest, whether it runs, its daemons' states.
func (m *Manager) view(ctx context.Context, id string, withStates bool) depView {
	p, err := m.opts.Records.GetPackage(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return depView{}
	}
	if err != nil {
		return depView{installed: true, err: err}
	}
	v := depView{installed: true, waiting: m.isWaiting(id)}
	if v.mf, err = manifest.Parse(p.Manifest); err != nil {
		v.err = err
		return v
	}
	i, err := m.opts.Containers.Get(ctx, p.Container)
	if err != nil {
		v.err = err
		return v
	}
	v.running, v.address = i.State == lxcrt.Running, i.Address
	if v.running && withStates {
		v.states, v.statesErr = m.daemonStates(ctx, p.Container)
	}
	return v
}

// daemonStates asks a running container's guestd for its daemons' states.
func (m *Manager) daemonStates(ctx context.Context, container string) (map[string]guestv1.DaemonState, error) {
	st, err := m.guestStatus(ctx, container)
	if err != nil {
		return nil, err
	}
	out := map[string]guestv1.DaemonState{}
	for _, j := range st.GetDaemons() {
		out[j.GetName()] = j.GetState()
	}
	return out, nil
}

func stateWord(s guestv1.DaemonState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "DAEMON_STATE_"))
}

// interfaceHealth says whether the daemon behind a dependency's interface is ready.
func interfaceHealth(v depView, iface string) (port int, healthy bool, reason string) {
	it, ok := v.mf.Interfaces[iface]
	switch {
	case !ok:
		return 0, false, "no such interface"
	case !v.running:
		return it.Port, false, "not running"
	case v.statesErr != nil:
		return it.Port, false, "its daemons' states are unknown: " + v.statesErr.Error()
	}
	st, ok := v.states[it.Daemon]
	switch {
	case !ok:
		return it.Port, false, fmt.Sprintf("daemon %s is not running", it.Daemon)
	case st != guestv1.DaemonState_DAEMON_STATE_READY:
		return it.Port, false, fmt.Sprintf("daemon %s is %s", it.Daemon, stateWord(st))
	}
	return it.Port, true, "ready"
}

// waitReasons lists what a package waits for, given a view of each dependency; cycle
// finds a dependency cycle through the package (nil when there is none). Optional
// dependencies are not waited for.
func waitReasons(mf *manifest.Manifest, view func(id string) depView, cycle func(dep string) []string) []*hostv1.Wait {
	var out []*hostv1.Wait
	for _, dep := range slices.Sorted(maps.Keys(mf.Dependencies)) {
		d := mf.Dependencies[dep]
		if d.Optional {
			continue
		}
		w := func(format string, a ...any) {
			out = append(out, &hostv1.Wait{Package: dep, Reason: fmt.Sprintf(format, a...)})
		}
		if c := cycle(dep); c != nil {
			w("dependency cycle: %s; no package of it can start", strings.Join(c, " → "))
			continue
		}
		v := view(dep)
		switch {
		case !v.installed:
			w("not installed")
			continue
		case v.err != nil:
			w("unreadable: %v", v.err)
			continue
		}
		if probs := d.Check(v.mf); len(probs) > 0 {
			w("%s", strings.Join(probs, "; "))
			continue
		}
		if !v.running {
			if v.waiting {
				w("stopped: it waits for its own dependencies")
			} else {
				w("stopped")
			}
			continue
		}
		for _, it := range d.Requires {
			if _, ok, why := interfaceHealth(v, it); !ok {
				w("interface %s not ready (%s)", it, why)
			}
		}
	}
	return out
}

// graph is each installed package's dependencies that are not optional.
func (m *Manager) graph() (map[string][]string, map[string]*manifest.Manifest, error) {
	ps, err := m.opts.Records.ListPackages()
	if err != nil {
		return nil, nil, err
	}
	g := map[string][]string{}
	mfs := map[string]*manifest.Manifest{}
	for _, p := range ps {
		mf, err := manifest.Parse(p.Manifest)
		if err != nil {
			g[p.ID] = nil
			continue
		}
		mfs[p.ID] = mf
		g[p.ID] = requiredDeps(mf)
	}
	return g, mfs, nil
}

func requiredDeps(mf *manifest.Manifest) []string {
	var out []string
	for _, dep := range slices.Sorted(maps.Keys(mf.Dependencies)) {
		if !mf.Dependencies[dep].Optional {
			out = append(out, dep)
		}
	}
	return out
}

// waitsOf lists what a package (id, with its manifest) waits for now.
func (m *Manager) waitsOf(ctx context.Context, id string, mf *manifest.Manifest) []*hostv1.Wait {
	g, _, err := m.graph()
	if err != nil {
		return []*hostv1.Wait{{Package: id, Reason: "the installed packages are unreadable: " + err.Error()}}
	}
	g[id] = requiredDeps(mf)
	return waitReasons(mf, func(dep string) depView { return m.view(ctx, dep, true) }, func(dep string) []string {
		if p := path(g, dep, id); p != nil {
			return append([]string{id}, p...)
		}
		return nil
	})
}

// path finds a way from one package to another along dependencies (both ends
// included), or nil.
func path(g map[string][]string, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if n == to {
			var out []string
			for ; n != ""; n = prev[n] {
				out = append(out, n)
			}
			slices.Reverse(out)
			return out
		}
		for _, d := range g[n] {
			if _, seen := prev[d]; !seen {
				prev[d] = n
				queue = append(queue, d)
			}
		}
	}
	return nil
}

// startOrder orders packages so that each comes after the packages it depends on
// (names outside g are taken as there); equals go by name. Packages on a dependency cycle,
// or behind one, cannot be ordered: they are returned apart, by name.
func startOrder(g map[string][]string) (order, stuck []string) {
	left := map[string]int{} // dependencies not yet ordered
	dependents := map[string][]string{}
	for n, ds := range g {
		for _, d := range slices.Compact(slices.Sorted(slices.Values(ds))) {
			if _, ok := g[d]; ok && d != n {
				left[n]++
				dependents[d] = append(dependents[d], n)
			} else if d == n {
				left[n]++ // depends on itself: never ready
			}
		}
	}
	var ready []string
	for n := range g {
		if left[n] == 0 {
			ready = append(ready, n)
		}
	}
	for len(ready) > 0 {
		slices.Sort(ready)
		n := ready[0]
		ready = ready[1:]
		order = append(order, n)
		for _, x := range dependents[n] {
			if left[x]--; left[x] == 0 {
				ready = append(ready, x)
			}
		}
	}
	for n := range g {
		if !slices.Contains(order, n) {
			stuck = append(stuck, n)
		}
	}
	slices.Sort(stuck)
	return order, stuck
}

// stopOrder lists what stopping id stops: the running packages that depend on it,
// directly or not, each before the packages it depends on, and id last.
func stopOrder(g map[string][]string, id string, running func(string) bool) []string {
	rev := map[string][]string{}
	for n, ds := range g {
		for _, d := range ds {
			rev[d] = append(rev[d], n)
		}
	}
	affected := map[string][]string{}
	seen := map[string]bool{id: true}
	queue := []string{id}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, x := range rev[n] {
			if !seen[x] {
				seen[x] = true
				queue = append(queue, x)
			}
		}
	}
	for n := range seen {
		if n != id && !running(n) {
			continue
		}
		affected[n] = nil
		for _, d := range g[n] {
			if seen[d] {
				affected[n] = append(affected[n], d)
			}
		}
	}
	order, stuck := startOrder(affected)
	order = append(order, stuck...) // a cycle: stop them anyway
	slices.Reverse(order)
	// id depends on none of the others unless on a cycle: keep it last.
	order = slices.DeleteFunc(order, func(n string) bool { return n == id })
	return append(order, id)
}

// dependencyWarnings are an install's warnings about the package's dependencies.
func dependencyWarnings(id string, mf *manifest.Manifest, waits []*hostv1.Wait, optional func(dep string) depView) []string {
	var out []string
	for _, w := range waits {
		d := mf.Dependencies[w.GetPackage()]
		out = append(out, fmt.Sprintf("dependency %s%s: %s; %s waits for it and starts once it runs%s",
			w.GetPackage(), depText(d), w.GetReason(), id, requiresText(d)))
	}
	for _, dep := range slices.Sorted(maps.Keys(mf.Dependencies)) {
		d := mf.Dependencies[dep]
		if !d.Optional {
			continue
		}
		switch v := optional(dep); {
		case !v.installed:
			out = append(out, fmt.Sprintf("optional dependency %s%s is not installed: %s runs without it", dep, depText(d), id))
		case v.mf != nil:
			for _, p := range d.Check(v.mf) {
				out = append(out, fmt.Sprintf("optional dependency %s: %s", dep, p))
			}
		}
	}
	return out
}

func depText(d manifest.Dependency) string {
	var parts []string
	if d.Version != "" {
		parts = append(parts, d.Version)
	}
	if d.Description != "" {
		parts = append(parts, d.Description)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func requiresText(d manifest.Dependency) string {
	if len(d.Requires) == 0 {
		return ""
	}
	return " with its interfaces " + strings.Join(d.Requires, ", ") + " ready"
}

// deferStart is an install's start: when the package's dependencies are there, nil (and
// the caller starts it); otherwise the package is left to wait, with the hooks of its
// first start kept for then, and the warnings say for what.
func (m *Manager) deferStart(ctx context.Context, id string, mf *manifest.Manifest, run []manifest.HookRun) (waits []*hostv1.Wait, warn []string, err error) {
	waits = m.waitsOf(ctx, id, mf)
	warn = dependencyWarnings(id, mf, waits, func(dep string) depView { return m.view(ctx, dep, false) })
	state := intentRunning
	if len(waits) > 0 {
		state = intentWaiting
	} else {
		run = nil
	}
	if err := m.deps().set(id, &intent{State: state, Hooks: run}); err != nil {
		return nil, nil, err
	}
	if len(waits) > 0 {
		m.deps().wake()
	}
	return waits, warn, nil
}

// StartPackage starts an installed package once its dependencies are there: when they
// are, it starts it now and returns no waits; otherwise the package waits (the waiter
// starts it when they are) and the waits say for what. A package that runs is left as
// it is.
func (m *Manager) StartPackage(ctx context.Context, id string) (store.Package, []*hostv1.Wait, error) {
	unlock, err := m.lockBriefly(ctx, id)
	if err != nil {
		return store.Package{}, nil, err
	}
	defer unlock()
	p, err := m.installed(id)
	if err != nil {
		return p, nil, err
	}
	d := m.deps()
	prev, had := d.get(id)
	i, err := m.opts.Containers.Get(ctx, p.Container)
	if err != nil {
		return p, nil, err
	}
	if i.State == lxcrt.Running {
		return p, nil, d.set(id, &intent{State: intentRunning})
	}
	mf, err := manifest.Parse(p.Manifest)
	if err != nil {
		return p, nil, fmt.Errorf("%s's manifest: %w", id, err)
	}
	// Waiting first: a crash while it starts leaves it to the waiter.
	if err := d.set(id, &intent{State: intentWaiting, Hooks: prev.Hooks}); err != nil {
		return p, nil, err
	}
	if waits := m.waitsOf(ctx, id, mf); len(waits) > 0 {
		m.log.Info("package waits for its dependencies", "package", id, "waits", waitsText(waits))
		d.wake()
		return p, waits, nil
	}
	if _, err := m.opts.Containers.StartWith(ctx, p.Container, prev.Hooks); err != nil {
		if had {
			_ = d.set(id, &prev)
		} else {
			_ = d.set(id, nil)
		}
		return p, nil, err
	}
	return p, nil, d.set(id, &intent{State: intentRunning})
}

// installed returns an installed package with no operation under way.
func (m *Manager) installed(id string) (store.Package, error) {
	p, err := m.opts.Records.GetPackage(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return p, fmt.Errorf("package %q is not installed (hearthctl ls lists those that are): %w", id, errdefs.ErrNotFound)
	} else if err != nil {
		return p, err
	}
	if _, err := m.opts.Records.GetJournal(id); err == nil {
		return p, fmt.Errorf("an operation on %s did not finish; restart containerd-lite to finish or undo it: %w", id, errdefs.ErrFailedPrecondition)
	}
	return p, nil
}

// lockBriefly takes a package's lock, waiting a little for the waiter's.
func (m *Manager) lockBriefly(ctx context.Context, id string) (func(), error) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u, err := m.locks.LockContext(lctx, id)
	if err != nil {
		return nil, fmt.Errorf("another operation on %q (an install, update, uninstall, start or stop) is under way: retry when it is done: %w", id, errdefs.ErrAborted)
	}
	return u, nil
}

func waitsText(ws []*hostv1.Wait) string {
	var parts []string
	for _, w := range ws {
		parts = append(parts, w.GetPackage()+": "+w.GetReason())
	}
	return strings.Join(parts, "; ")
}

// StopPackage stops a package (one that waits stops waiting). While packages that
// depend on it run, it is refused with FailedPrecondition naming them, unless cascade:
// then they stop first, each before what it depends on. It returns the packages stopped,
// in order, ending with id. grace is how long daemons have to stop (the manifest's when 0).
func (m *Manager) StopPackage(ctx context.Context, id string, cascade bool, grace time.Duration) ([]string, error) {
	order, err := m.StopPlan(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(order) > 1 && !cascade {
		others := order[:len(order)-1]
		return nil, fmt.Errorf("%s %s on %s and %s: stop %s first, or stop with cascade (hearthctl stop --cascade %s) to stop %s too: %w",
			strings.Join(others, ", "), plural(len(others), "depends", "depend"), id, plural(len(others), "runs", "run"),
			plural(len(others), "it", "them"), id, plural(len(others), "it", "them"), errdefs.ErrFailedPrecondition)
	}
	var stopped []string
	for _, n := range order {
		if err := m.stopOne(ctx, n, grace); err != nil {
			return stopped, fmt.Errorf("stop %s: %w (stopped before it: %s)", n, err, orText(strings.Join(stopped, ", "), "none"))
		}
		stopped = append(stopped, n)
	}
	return stopped, nil
}

// StopPlan says what stopping a package with cascade would stop, in order: the running
// packages that depend on it, then it.
func (m *Manager) StopPlan(ctx context.Context, id string) ([]string, error) {
	if _, err := m.installed(id); err != nil {
		return nil, err
	}
	g, _, err := m.graph()
	if err != nil {
		return nil, err
	}
	running := func(n string) bool {
		p, err := m.opts.Records.GetPackage(n)
		if err != nil {
			return false
		}
		i, err := m.opts.Containers.Get(ctx, p.Container)
		return err == nil && i.State == lxcrt.Running
	}
	return stopOrder(g, id, running), nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// stopOne forgets a package's intent and stops its container.
func (m *Manager) stopOne(ctx context.Context, id string, grace time.Duration) error {
	unlock, err := m.lockBriefly(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	p, err := m.opts.Records.GetPackage(id)
	if err != nil {
		return err
	}
	d := m.deps()
	prev, had := d.get(id)
	// Keep hooks a waiting install left for its first start.
	var keep *intent
	if had && len(prev.Hooks) > 0 {
		keep = &intent{State: "", Hooks: prev.Hooks}
	}
	if err := d.set(id, keep); err != nil {
		return err
	}
	i, err := m.opts.Containers.Get(ctx, p.Container)
	if err != nil {
		return err
	}
	if i.State == lxcrt.Stopped {
		return nil
	}
	_, err = m.opts.Containers.Stop(ctx, p.Container, grace)
	return err
}

// WaitingFor says what a package waits for before it starts: nothing when it runs, is
// stopped or is not installed. It is safe on a nil Manager.
func (m *Manager) WaitingFor(ctx context.Context, id string) []*hostv1.Wait {
	if m == nil || !m.isWaiting(id) {
		return nil
	}
	p, err := m.opts.Records.GetPackage(id)
	if err != nil {
		return nil
	}
	mf, err := manifest.Parse(p.Manifest)
	if err != nil {
		return nil
	}
	waits := m.waitsOf(ctx, id, mf)
	d := m.deps()
	d.mu.Lock()
	f, failed := d.failed[id]
	d.mu.Unlock()
	if len(waits) == 0 && failed {
		waits = append(waits, &hostv1.Wait{Package: id, Reason: fmt.Sprintf("its start failed (%v); tried again at %s", f.err, f.next.Format(time.TimeOnly))})
	}
	return waits
}

// RunWaiter starts waiting packages once their dependencies are there, until ctx ends.
// It begins with the packages that should run and do not (the host rebooted): they wait,
// so they start in dependency order.
func (m *Manager) RunWaiter(ctx context.Context) error {
	d := m.deps()
	for id, in := range d.all() {
		if in.State != intentRunning {
			continue
		}
		p, err := m.opts.Records.GetPackage(id)
		if err != nil {
			continue
		}
		if i, err := m.opts.Containers.Get(ctx, p.Container); err == nil && i.State != lxcrt.Running {
			in.State = intentWaiting
			if err := d.set(id, &in); err != nil {
				m.log.Error("start-up: a package that should run", "package", id, "error", err)
			} else {
				m.log.Info("start-up: a package that should run does not; it starts once its dependencies do", "package", id)
			}
		}
	}
	// Those that should run start side by side, each after what it depends on.
	if ids := waitingIDs(d.all()); len(ids) > 0 {
		rs := m.startSet(ctx, ids)
		m.log.Info("start-up: packages that should run", "outcome", resultsText(rs))
	}
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	for {
		m.startWaiting(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-d.kick:
		}
	}
}

// startWaiting starts, in dependency order, each waiting package whose dependencies are there.
func (m *Manager) startWaiting(ctx context.Context) {
	d := m.deps()
	if d.bulk.Load() > 0 {
		return // a StartAll starts them
	}
	all := d.all()
	if !slices.ContainsFunc(slices.Collect(maps.Values(all)), func(in intent) bool { return in.State == intentWaiting }) {
		return
	}
	g, _, err := m.graph()
	if err != nil {
		m.log.Error("waiter: list packages", "error", err)
		return
	}
	order, stuck := startOrder(g)
	for _, id := range append(order, stuck...) {
		if all[id].State != intentWaiting || ctx.Err() != nil {
			continue
		}
		unlock, ok := m.locks.TryLock(id)
		if !ok {
			continue // an operation on it is under way
		}
		m.startIfReady(ctx, id)
		unlock()
	}
	// Intents of packages no longer installed.
	for id := range all {
		if _, ok := g[id]; ok {
			continue
		}
		if unlock, ok := m.locks.TryLock(id); ok {
			if _, err := m.opts.Records.GetPackage(id); errors.Is(err, errdefs.ErrNotFound) {
				_ = d.set(id, nil)
			}
			unlock()
		}
	}
}

// startIfReady starts a waiting package (its lock held) when nothing is left to wait for.
func (m *Manager) startIfReady(ctx context.Context, id string) {
	d := m.deps()
	in, ok := d.get(id)
	if !ok || in.State != intentWaiting {
		return
	}
	d.mu.Lock()
	f, failed := d.failed[id]
	d.mu.Unlock()
	if failed && time.Now().Before(f.next) {
		return
	}
	p, err := m.installed(id)
	if err != nil {
		return
	}
	i, err := m.opts.Containers.Get(ctx, p.Container)
	if err != nil {
		return
	}
	if i.State == lxcrt.Running {
		_ = d.set(id, &intent{State: intentRunning})
		return
	}
	mf, err := manifest.Parse(p.Manifest)
	if err != nil {
		return
	}
	if len(m.waitsOf(ctx, id, mf)) > 0 {
		return
	}
	_ = m.startLocked(ctx, id, p.Container, in.Hooks)
}

// GetDependency answers a package's question about one of its dependencies: only those
// its manifest names under dependencies (anything else is PermissionDenied, whether or
// not it exists).
func (m *Manager) GetDependency(ctx context.Context, container string, req *hostv1.GetDependencyRequest) (*hostv1.GetDependencyResponse, error) {
	self, err := m.packageOf(container)
	if err != nil {
		return nil, err
	}
	mf, err := manifest.Parse(self.Manifest)
	if err != nil {
		return nil, err
	}
	id := req.GetId()
	d, ok := mf.Dependencies[id]
	if !ok {
		names := slices.Sorted(maps.Keys(mf.Dependencies))
		return nil, fmt.Errorf("%q is not one of %s's dependencies (its manifest names: %s): %w", id, self.ID, orText(strings.Join(names, ", "), "none"), errdefs.ErrPermissionDenied)
	}
	resp := &hostv1.GetDependencyResponse{Id: id, Name: id + "." + InternalDomain}
	v := m.view(ctx, id, true)
	if v.installed && v.mf != nil {
		resp.Installed, resp.Version, resp.Running = true, v.mf.Version, v.running
		if v.running {
			resp.Ipv4 = v.address
		}
	} else if v.installed {
		resp.Installed = true
	}
	for _, it := range d.Requires {
		h := &hostv1.InterfaceHealth{Interface: it}
		switch {
		case !v.installed:
			h.Reason = "not installed"
		case v.mf == nil:
			h.Reason = fmt.Sprintf("unreadable: %v", v.err)
		default:
			port, ok, why := interfaceHealth(v, it)
			h.Port, h.Healthy, h.Reason = uint32(port), ok, why
		}
		resp.Interfaces = append(resp.Interfaces, h)
	}
	return resp, nil
}

// packageOf finds the package a container runs.
func (m *Manager) packageOf(container string) (store.Package, error) {
	ps, err := m.opts.Records.ListPackages()
	if err != nil {
		return store.Package{}, err
	}
	for _, p := range ps {
		if p.Container == container {
			return p, nil
		}
	}
	return store.Package{}, fmt.Errorf("container %s runs no installed package, so it has no dependencies: %w", container, errdefs.ErrPermissionDenied)
}
