// Package supervisor runs a package's daemons and one-shot jobs inside the container:
// each starts once everything it requires is ready (daemons) or done (oneshots); ready
// checks move it between starting, ready and failing; an exit or sustained failing health
// restarts it after an exponential backoff, as its policy says; a stop sends its signal,
// then SIGKILL after its timeout, and the whole package stops in reverse dependency order.
package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	"hearth.dev/services/guestd/internal/logbuf"
	"hearth.dev/services/guestd/internal/reaper"
	"hearth.dev/services/guestd/internal/starttrace"
)

// State is where a job is in its life.
type State string

// States.
const (
	Waiting  State = "waiting"  // for what it requires
	Starting State = "starting" // running, not yet ready
	Ready    State = "ready"
	Failing  State = "failing" // running, its checks fail
	Backoff  State = "backoff" // exited; restarts after a delay
	Stopping State = "stopping"
	Stopped  State = "stopped"
	Done     State = "done"   // a oneshot that succeeded
	Failed   State = "failed" // a oneshot that failed, or a daemon its policy leaves down
)

// Launcher makes a job's root and runs its processes.
type Launcher interface {
	// Prepare readies the job's root; fresh asks for a new one (first start of the package).
	Prepare(ctx context.Context, name string, spec *manifest.Daemon, fresh bool) error
	// Start starts the job's process in its own process group.
	Start(name string, spec *manifest.Daemon, stdout, stderr *os.File) (pid int, exited <-chan reaper.Exit, err error)
	// Run runs argv in the job's root as the job's user (exec checks) and waits.
	Run(ctx context.Context, name string, spec *manifest.Daemon, argv []string) (reaper.Exit, error)
	// Signal sends sig to the process group of pid, a process Start or Run started, unless
	// it has been reaped: its pid may name another process by then.
	Signal(pid int, sig syscall.Signal) error
	// Cleanup kills what is left of the job after its process exited (escaped descendants).
	Cleanup(name string)
	// Release undoes Prepare (the package is stopping).
	Release(ctx context.Context, name string) error
}

// Status is a job as reported.
type Status struct {
	Name      string
	Oneshot   bool
	State     State
	PID       int
	Restarts  int
	StartedAt time.Time
	LastExit  *reaper.Exit
	// Health is the last check's result, or why the job is where it is.
	Health string
	// Requires lists what the job waits for.
	Requires []string
}

type job struct {
	Status
	spec    *manifest.Daemon
	want    bool // the job should run
	stop    chan struct{}
	stopped chan struct{} // closed when a requested stop completed
	fresh   bool
	log     *logbuf.Log
}

// Supervisor runs the jobs of one manifest.
type Supervisor struct {
	m        *manifest.Manifest
	launcher Launcher
	log      *slog.Logger
	logs     func(name string) *logbuf.Log
	// Trace, when set, gets each job's first start steps (JOB.deps, JOB.prepare,
	// JOB.exec, JOB.ready); set it before StartAll.
	Trace *starttrace.Trace

	mu       sync.Mutex
	jobs     map[string]*job
	deps     map[string][]string
	changed  chan struct{}
	watchers map[chan Status]struct{}
	closing  bool
	wg       sync.WaitGroup
}

// New returns a supervisor for m; logs gives each job's log.
func New(m *manifest.Manifest, l Launcher, logs func(string) *logbuf.Log, log *slog.Logger) *Supervisor {
	s := &Supervisor{m: m, launcher: l, log: log, logs: logs, jobs: map[string]*job{},
		deps: m.Deps(), changed: make(chan struct{}), watchers: map[chan Status]struct{}{}}
	for _, group := range []struct {
		jobs    map[string]*manifest.Daemon
		oneshot bool
	}{{m.Daemons, false}, {m.Oneshots, true}} {
		for n, spec := range group.jobs {
			s.jobs[n] = &job{Status: Status{Name: n, Oneshot: group.oneshot, State: Stopped, Requires: s.deps[n]},
				spec: spec, stop: make(chan struct{}, 1), fresh: true, log: logs(n)}
		}
	}
	return s
}

// StartAll starts every job; each waits for what it requires.
func (s *Supervisor) StartAll() {
	for _, n := range s.m.Order() {
		s.startJob(n)
	}
}

func (s *Supervisor) startJob(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[name]
	if j.want {
		return
	}
	j.want = true
	if j.State == Stopped || j.State == Failed || j.State == Done {
		j.Restarts, j.Health = 0, ""
		j.State = Waiting
		s.notifyLocked(j)
		s.wg.Add(1)
		go s.run(j)
	}
}

// Start starts one job (and leaves the others as they are).
func (s *Supervisor) Start(name string) error {
	if _, ok := s.jobs[name]; !ok {
		return fmt.Errorf("no daemon or oneshot %q in %s: %w", name, s.m.ID, errdefs.ErrNotFound)
	}
	s.startJob(name)
	return nil
}

// Stop stops one job and waits until it is down.
func (s *Supervisor) Stop(ctx context.Context, name string) error {
	s.mu.Lock()
	j, ok := s.jobs[name]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("no daemon or oneshot %q in %s: %w", name, s.m.ID, errdefs.ErrNotFound)
	}
	if !j.want {
		s.mu.Unlock()
		return nil
	}
	j.want = false
	done := make(chan struct{})
	j.stopped = done
	select {
	case j.stop <- struct{}{}:
	default:
	}
	s.notifyLocked(j)
	s.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Restart stops a job and starts it again.
func (s *Supervisor) Restart(ctx context.Context, name string) error {
	if err := s.Stop(ctx, name); err != nil {
		return err
	}
	return s.Start(name)
}

// StopAll stops every job, dependents before what they require, and releases their roots.
func (s *Supervisor) StopAll(ctx context.Context) {
	order := s.m.Order()
	slices.Reverse(order)
	for _, n := range order {
		if err := s.Stop(ctx, n); err != nil {
			s.log.Warn("stop", "job", n, "error", err)
		}
	}
	s.mu.Lock()
	s.closing = true
	s.notifyAllLocked()
	s.mu.Unlock()
	s.wg.Wait()
	for _, n := range order {
		if err := s.launcher.Release(ctx, n); err != nil {
			s.log.Warn("release", "job", n, "error", err)
		}
	}
}

// Status reports every job, in start order.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Status
	for _, n := range s.m.Order() {
		out = append(out, s.jobs[n].snapshot())
	}
	return out
}

func (j *job) snapshot() Status {
	st := j.Status
	st.Requires = slices.Clone(j.Requires)
	if j.LastExit != nil {
		e := *j.LastExit
		st.LastExit = &e
	}
	return st
}

// Settled returns when no job is waiting or starting any more (every one ready,
// failing, done, failed or stopped: the package's start is over), or when ctx ends.
func (s *Supervisor) Settled(ctx context.Context) error {
	for {
		s.mu.Lock()
		changed, busy := s.changed, false
		for _, j := range s.jobs {
			busy = busy || j.want && (j.State == Waiting || j.State == Starting)
		}
		s.mu.Unlock()
		if !busy {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Watch returns a channel of job changes; cancel stops it.
func (s *Supervisor) Watch() (<-chan Status, func()) {
	ch := make(chan Status, 256)
	s.mu.Lock()
	s.watchers[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.watchers, ch)
		s.mu.Unlock()
	}
}

// notifyLocked tells waiters and watchers that j changed.
func (s *Supervisor) notifyLocked(j *job) {
	st := j.snapshot()
	for ch := range s.watchers {
		select {
		case ch <- st:
		default:
		}
	}
	s.notifyAllLocked()
}

func (s *Supervisor) notifyAllLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Supervisor) set(j *job, st State, health string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.State == st && j.Health == health {
		return
	}
	j.State, j.Health = st, health
	s.log.Info("job", "name", j.Name, "state", st, "pid", j.PID, "health", health)
	s.notifyLocked(j)
}

// depsMetLocked reports whether everything j waits for is ready (daemons) or done (oneshots).
func (s *Supervisor) depsMetLocked(j *job) (bool, string) {
	for _, d := range j.Requires {
		dj := s.jobs[d]
		if dj.Oneshot && dj.State != Done || !dj.Oneshot && dj.State != Ready {
			return false, fmt.Sprintf("waiting for %s (%s)", d, dj.State)
		}
	}
	return true, ""
}

// waitToStart blocks until j should start (true) or not run at all (false).
func (s *Supervisor) waitToStart(j *job) bool {
	for {
		s.mu.Lock()
		if !j.want || s.closing {
			s.mu.Unlock()
			return false
		}
		ok, why := s.depsMetLocked(j)
		if ok {
			s.mu.Unlock()
			return true
		}
		if j.State != Waiting || j.Health != why {
			j.State, j.Health = Waiting, why
			s.notifyLocked(j)
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-j.stop:
			s.mu.Lock()
			if !j.want {
				s.mu.Unlock()
				return false
			}
			s.mu.Unlock()
		}
	}
}

// finish marks the end of j's runner with state st.
func (s *Supervisor) finish(j *job, st State, health string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j.State, j.Health, j.PID, j.want = st, health, 0, false
	if j.stopped != nil {
		close(j.stopped)
		j.stopped = nil
	}
	s.notifyLocked(j)
}

// run is j's runner: start, watch, restart, until stopped or done.
func (s *Supervisor) run(j *job) {
	defer s.wg.Done()
	spec := j.spec
	minB, maxB := time.Second, 30*time.Second
	if spec.Restart.Backoff != "" {
		minB, maxB, _ = manifest.ParseBackoff(spec.Restart.Backoff)
	}
	backoff := minB
	s.prepareAhead(j)
	for {
		if !s.waitToStart(j) {
			s.finish(j, Stopped, "")
			return
		}
		s.Trace.Mark(j.Name + ".deps")
		exit, reason, stopped := s.once(j)
		if stopped {
			s.finish(j, Stopped, "stopped")
			return
		}
		policy := spec.Restart.Policy
		if policy == "" {
			policy = "always"
		}
		switch {
		case j.Oneshot && exit != nil && exit.Success():
			s.release(j)
			s.finish(j, Done, exit.String())
			return
		case j.Oneshot:
			s.release(j)
			s.finish(j, Failed, reason)
			return
		case exit != nil && exit.Success() && (policy == "never" || policy == "on-failure"):
			s.finish(j, Stopped, reason)
			return
		case policy == "never":
			s.finish(j, Failed, reason)
			return
		}
		// Restart after the backoff; a run that lasted longer than the cap resets it.
		if exit != nil && exit.At.Sub(j.StartedAt) >= maxB {
			backoff = minB
		}
		s.mu.Lock()
		j.Restarts++
		s.mu.Unlock()
		s.set(j, Backoff, fmt.Sprintf("%s; restarting in %v", reason, backoff))
		select {
		case <-time.After(backoff):
		case <-j.stop:
			s.finish(j, Stopped, "stopped")
			return
		}
		backoff = min(backoff*2, maxB)
	}
}

// prepareAhead readies the root of a job that waits for others while they become
// ready, so that its start then costs only the exec. It begins once each of them has
// started its process (their own preparing comes first: they are on the critical path),
// and ends at once when they are ready before that or the job is no longer wanted. A
// failure is left to once, which prepares again and reports it.
func (s *Supervisor) prepareAhead(j *job) {
	for {
		s.mu.Lock()
		if !j.want || s.closing || !j.fresh {
			s.mu.Unlock()
			return
		}
		if met, _ := s.depsMetLocked(j); met {
			s.mu.Unlock()
			return
		}
		if s.depsStartedLocked(j) {
			s.mu.Unlock()
			break
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-j.stop:
			return // waitToStart sees why (want is false, or it waits on)
		}
	}
	if err := s.launcher.Prepare(context.Background(), j.Name, j.spec, true); err != nil {
		s.log.Debug("prepare ahead", "job", j.Name, "error", err)
		return
	}
	j.fresh = false
}

// depsStartedLocked reports whether every job j requires has started its process.
func (s *Supervisor) depsStartedLocked(j *job) bool {
	for _, d := range j.Requires {
		switch s.jobs[d].State {
		case Starting, Ready, Failing, Done:
		default:
			return false
		}
	}
	return true
}

// once starts j's process and follows it until it exits (exit, why) or a stop request
// has brought it down (stopped).
func (s *Supervisor) once(j *job) (*reaper.Exit, string, bool) {
	spec := j.spec
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.launcher.Prepare(ctx, j.Name, spec, j.fresh); err != nil {
		s.log.Error("prepare", "job", j.Name, "error", err)
		return nil, "cannot start: " + err.Error(), false
	}
	j.fresh = false
	s.Trace.Mark(j.Name + ".prepare")
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err.Error(), false
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err.Error(), false
	}
	pid, exited, err := s.launcher.Start(j.Name, spec, outW, errW)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		s.log.Error("start", "job", j.Name, "error", err)
		return nil, "cannot start: " + err.Error(), false
	}
	s.Trace.Mark(j.Name + ".exec")
	var copies sync.WaitGroup
	copies.Add(2)
	go func() { defer copies.Done(); defer outR.Close(); j.log.Copy("stdout", outR) }()
	go func() { defer copies.Done(); defer errR.Close(); j.log.Copy("stderr", errR) }()
	s.mu.Lock()
	j.PID, j.StartedAt = pid, time.Now()
	s.mu.Unlock()
	s.set(j, Starting, "")
	var results <-chan checkResult
	if spec.Ready != nil && !j.Oneshot {
		results = s.checks(ctx, j)
	} else if !j.Oneshot {
		s.Trace.Mark(j.Name + ".ready")
		s.set(j, Ready, "running (no ready check)")
	}
	retries := 3
	if spec.Ready != nil && spec.Ready.Retries > 0 {
		retries = spec.Ready.Retries
	}
	fails := 0
	reason := ""
	end := func(e reaper.Exit) *reaper.Exit {
		// What the job left running goes first: it may hold the job's stdout or stderr
		// (a background child of a shell), and the copies end only once no one does.
		s.launcher.Cleanup(j.Name)
		copies.Wait()
		s.mu.Lock()
		j.LastExit, j.PID = &e, 0
		s.mu.Unlock()
		return &e
	}
	for {
		select {
		case e := <-exited:
			if reason == "" {
				reason = e.String()
			}
			return end(e), reason, false
		case <-j.stop:
			s.mu.Lock()
			want := j.want
			s.mu.Unlock()
			if want {
				continue
			}
			e := s.kill(j, pid, exited)
			end(e)
			return &e, "stopped", true
		case r := <-results:
			st := s.jobState(j)
			switch {
			case r.ok:
				fails = 0
				s.Trace.Mark(j.Name + ".ready")
				s.set(j, Ready, r.msg)
			case st == Starting && time.Since(j.StartedAt) < spec.Ready.Grace.D(30*time.Second):
				s.set(j, Starting, r.msg)
			case st == Starting:
				fails = retries
				s.set(j, Failing, "not ready within grace: "+r.msg)
			default:
				fails++
				if fails >= retries {
					s.set(j, Failing, r.msg)
				}
				if fails >= 2*retries && spec.Restart.Policy != "never" {
					reason = "health failing: " + r.msg
					s.log.Warn("restarting a failing job", "job", j.Name, "check", r.msg)
					_ = s.launcher.Signal(pid, syscall.SIGKILL)
					results = nil
				}
			}
		}
	}
}

func (s *Supervisor) jobState(j *job) State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return j.State
}

// kill stops j's process group: its stop signal, then SIGKILL after its timeout.
func (s *Supervisor) kill(j *job, pid int, exited <-chan reaper.Exit) reaper.Exit {
	sig := syscall.SIGTERM
	if j.spec.Stop.Signal != "" {
		sig, _ = manifest.ParseSignal(j.spec.Stop.Signal)
	}
	timeout := j.spec.Stop.Timeout.D(10 * time.Second)
	s.set(j, Stopping, fmt.Sprintf("sent %v; SIGKILL in %v", sig, timeout))
	_ = s.launcher.Signal(pid, sig)
	// Once the leader is reaped its group can no longer be signalled safely: what is left
	// of the job is the launcher's Cleanup's.
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case e := <-exited:
		return e
	case <-timer.C:
	}
	s.log.Warn("stop timed out; killing", "job", j.Name, "pid", pid, "timeout", timeout)
	_ = s.launcher.Signal(pid, syscall.SIGKILL)
	return <-exited
}

// Log returns a job's log, or nil.
func (s *Supervisor) Log(name string) *logbuf.Log {
	if j, ok := s.jobs[name]; ok {
		return j.log
	}
	return nil
}

// Names lists the jobs in start order.
func (s *Supervisor) Names() []string { return s.m.Order() }

// release gives back a finished oneshot's root; a later start prepares a fresh one.
func (s *Supervisor) release(j *job) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.launcher.Release(ctx, j.Name); err != nil {
		s.log.Warn("release", "job", j.Name, "error", err)
	}
	j.fresh = true
}
