package packages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	"hearth.dev/services/containerd-lite/internal/containers"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/store"
)

// ActionStatus is one of a package's actions and whether it is offered now.
type ActionStatus struct {
	ID     string
	Action manifest.Action
	// Available says whether the action can run now; Reason says why not.
	Available bool
	Reason    string
}

// ContainerOf returns the container of an installed package.
func (m *Manager) ContainerOf(id string) (string, error) {
	p, err := m.opts.Records.GetPackage(id)
	if err != nil {
		return "", err
	}
	return p.Container, nil
}

// actionsOf returns a container and its package's manifest (nil for a container that
// runs no package).
func (m *Manager) actionsOf(ctx context.Context, container string) (containers.Info, *manifest.Manifest, error) {
	i, err := m.opts.Containers.Get(ctx, container)
	if err != nil {
		return i, nil, err
	}
	if len(i.Manifest) == 0 {
		return i, nil, nil
	}
	mf, err := manifest.Parse(i.Manifest)
	if err != nil {
		return i, nil, fmt.Errorf("container %s: its manifest: %w", container, err)
	}
	return i, mf, nil
}

// busy says why no action can run now: another action runs on the package while its
// daemons are down (its container is up, but the package is not running); empty when
// none does.
func (m *Manager) busy(pkg string) string {
	if j, err := m.opts.Records.GetJournal(pkg); err == nil && j.Op == opAction {
		return "an action runs on the package while it is stopped: retry when it is done"
	}
	return ""
}

// offered says whether an action is offered while the container is in state st, and
// why not.
func offered(a *manifest.Action, st lxcrt.State) (bool, string) {
	state := strings.ToLower(string(st))
	switch a.Offered() {
	case manifest.WhenRunning:
		if st != lxcrt.Running {
			return false, fmt.Sprintf("offered only while the package runs, and it is %s: start it first", state)
		}
	case manifest.WhenStopped:
		if st != lxcrt.Stopped {
			return false, fmt.Sprintf("offered only while the package is stopped, and it is %s: stop it first", state)
		}
	default:
		if st != lxcrt.Running && st != lxcrt.Stopped {
			return false, fmt.Sprintf("the package is %s: wait for it to settle", state)
		}
	}
	return true, ""
}

// ListActions lists the actions of the package in container, sorted by id, each with
// whether it is offered now.
func (m *Manager) ListActions(ctx context.Context, container string) ([]ActionStatus, error) {
	i, mf, err := m.actionsOf(ctx, container)
	if err != nil || mf == nil {
		return nil, err
	}
	busy := m.busy(mf.ID)
	var out []ActionStatus
	for _, id := range slices.Sorted(maps.Keys(mf.Actions)) {
		a := mf.Actions[id]
		ok, why := offered(&a, i.State)
		if busy != "" {
			ok, why = false, busy
		}
		out = append(out, ActionStatus{ID: id, Action: a, Available: ok, Reason: why})
	}
	return out, nil
}

// RunAction runs one of the actions of the package in container with input (a JSON
// object). The input is checked against the action's fields first: a bad input is
// refused (InvalidArgument, naming the field) before anything runs, and so is an action
// not offered in the package's state (FailedPrecondition, saying why). The action then
// runs as a job through guestd, in a fresh subcontainer of its image; a package that is
// stopped is started without its daemons for it, and stopped again. An action that
// fails (exits non-zero, times out, or prints no valid result) is an error with its exit
// and the end of its standard error.
func (m *Manager) RunAction(ctx context.Context, container, id string, input []byte) (*manifest.ActionResult, error) {
	i, mf, err := m.actionsOf(ctx, container)
	if err != nil {
		return nil, err
	}
	if mf == nil {
		return nil, fmt.Errorf("container %s runs no package, so it has no actions: %w", container, errdefs.ErrNotFound)
	}
	a, ok := mf.Actions[id]
	if !ok {
		has := "none"
		if len(mf.Actions) > 0 {
			has = strings.Join(slices.Sorted(maps.Keys(mf.Actions)), ", ")
		}
		return nil, fmt.Errorf("%s has no action %q (its actions: %s): %w", mf.ID, id, has, errdefs.ErrNotFound)
	}
	in, err := a.CheckInput(input)
	if err != nil {
		return nil, fmt.Errorf("action %s of %s: %w: %w", id, mf.ID, err, errdefs.ErrInvalidArgument)
	}
	if ok, why := offered(&a, i.State); !ok {
		return nil, fmt.Errorf("action %s of %s: %s: %w", id, mf.ID, why, errdefs.ErrFailedPrecondition)
	}
	stdin, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	if i.State == lxcrt.Running {
		if why := m.busy(mf.ID); why != "" {
			return nil, fmt.Errorf("action %s of %s: %s: %w", id, mf.ID, why, errdefs.ErrFailedPrecondition)
		}
		return m.runJob(ctx, container, mf.ID, id, &a, stdin)
	}
	// Stopped: the container comes up without its daemons for the job, under the
	// package's lock (no install, update, uninstall, backup or other such action
	// meanwhile), and goes down again. The journal says so first: after a crash, the
	// next start-up stops a container left up without its daemons (finishAction).
	unlock, err := m.lockPackage(mf.ID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := m.opts.Records.GetJournal(mf.ID); err == nil {
		return nil, fmt.Errorf("an operation on %s did not finish; restart containerd-lite to finish or undo it: %w", mf.ID, errdefs.ErrFailedPrecondition)
	}
	j := store.Journal{Op: opAction, ID: mf.ID, Started: time.Now().UTC(), From: &store.Package{ID: mf.ID, Container: container}}
	if err := m.journal(&j, stepStarting); err != nil {
		return nil, err
	}
	if _, err := m.opts.Containers.StartIdle(ctx, container); err != nil {
		return nil, errors.Join(fmt.Errorf("action %s of %s: start the package without its daemons: %w", id, mf.ID, err), m.finishAction(ctx, &j))
	}
	m.log.Info("package started without its daemons for an action", "package", mf.ID, "action", id)
	if err := m.journal(&j, stepIdle); err != nil {
		return nil, errors.Join(err, m.finishAction(ctx, &j))
	}
	res, err := m.runJob(ctx, container, mf.ID, id, &a, stdin)
	if ferr := m.finishAction(ctx, &j); ferr != nil {
		return nil, errors.Join(err, fmt.Errorf("action %s of %s: %w", id, mf.ID, ferr))
	}
	return res, err
}

// The journal of an action run while its package is stopped (op "action").
const (
	opAction     = "action"
	stepStarting = "starting" // the container is being started without its daemons
	stepIdle     = "idle"     // it runs without its daemons; the action runs
)

// finishAction stops a container started without its daemons for an action (when it
// runs) and forgets the journal.
func (m *Manager) finishAction(ctx context.Context, j *store.Journal) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	c := j.From.Container
	i, err := m.opts.Containers.Get(sctx, c)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	if err == nil && i.State != lxcrt.Stopped {
		if _, err := m.opts.Containers.Stop(sctx, c, 0); err != nil {
			return fmt.Errorf("stop the package again: %w", err)
		}
	}
	return m.opts.Records.DeleteJournal(j.ID)
}

// runJob runs the action through guestd and reads its result.
func (m *Manager) runJob(ctx context.Context, container, pkg, id string, a *manifest.Action, stdin []byte) (*manifest.ActionResult, error) {
	conn, err := m.guestConn(container)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	timeout := a.Timeout.D(manifest.DefaultActionTimeout)
	req := &guestv1.RunJobRequest{Name: "action-" + id, Image: a.Image, Argv: a.Argv(), Env: a.Env, User: a.User, Workdir: a.Workdir,
		Stdin: stdin, Timeout: durationpb.New(timeout)}
	for _, mt := range a.Mounts {
		req.Mounts = append(req.Mounts, &guestv1.JobMount{Volume: mt.Volume, Path: mt.Path, ReadOnly: mt.ReadOnly})
	}
	jctx, cancel := context.WithTimeout(ctx, timeout+time.Minute)
	defer cancel()
	start := time.Now()
	resp, err := guestv1.NewGuestServiceClient(conn).RunJob(jctx, req)
	if err != nil {
		return nil, fmt.Errorf("action %s of %s: %w", id, pkg, errdefs.FromGRPC(err))
	}
	code := resp.GetExit().GetCode()
	m.log.Info("action ran", "package", pkg, "action", id, "code", code, "took", time.Since(start).Round(time.Millisecond))
	stderr := lastLines(string(resp.GetStderr()), 10)
	switch {
	case resp.GetTimedOut():
		return nil, fmt.Errorf("action %s of %s did not finish within %v and was killed; its standard error ends: %s", id, pkg, timeout, orNothing(stderr))
	case code != 0:
		how := fmt.Sprintf("exited %d", code)
		if code < 0 {
			how = "was killed by " + resp.GetExit().GetSignal()
		}
		return nil, fmt.Errorf("action %s of %s failed: it %s; its standard error ends: %s", id, pkg, how, orNothing(stderr))
	case resp.GetStdoutTruncated():
		return nil, fmt.Errorf("action %s of %s printed more than its result may hold (%d bytes): %w", id, pkg, len(resp.GetStdout()), manifest.ErrResult)
	}
	res, err := manifest.ParseResult(resp.GetStdout())
	if err != nil {
		return nil, fmt.Errorf("action %s of %s exited 0, but %w; its standard error ends: %s", id, pkg, err, orNothing(stderr))
	}
	return res, nil
}

func orNothing(s string) string {
	if strings.TrimSpace(s) == "" {
		return "(nothing)"
	}
	return s
}
