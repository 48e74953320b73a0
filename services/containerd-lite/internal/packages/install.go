package packages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	"hearth.dev/services/containerd-lite/internal/backup"
	"hearth.dev/services/containerd-lite/internal/containers"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Install steps, journaled in this order.
const (
	stepVerified  = "verified"
	stepImages    = "images"
	stepCreated   = "created"
	stepStarted   = "started"
	stepStopped   = "stopped"
	stepSnapshot  = "snapshot"
	stepReplaced  = "replaced"
	stepCommitted = "committed"
)

// Install verifies a package file as it streams in, imports its images, creates its
// container and volumes (finding the data a former install kept), runs its install hook,
// starts it and waits until every daemon is ready. On failure everything it made is
// removed (kept data stays kept), and the error names the step and the cause.
func (m *Manager) Install(ctx context.Context, r io.Reader, op Op) (Result, error) {
	return m.install(ctx, r, op, nil)
}

// install installs; with rf, the package's data comes from a snapshot (restored before
// the first start, instead of the install hook; the migrate hook runs when the snapshot is
// of an older version).
func (m *Manager) install(ctx context.Context, r io.Reader, op Op, rf *restoreFrom) (Result, error) {
	rc, err := m.receive(ctx, r, op, func(id, version string) error {
		if rf != nil && id != rf.snap.Package {
			return fmt.Errorf("the package file is %s, the snapshot is of %s: %w", id, rf.snap.Package, errdefs.ErrInvalidArgument)
		}
		if p, err := m.opts.Records.GetPackage(id); err == nil {
			return fmt.Errorf("%s %s is installed: update it (hearthctl update FILE), or uninstall it first: %w", p.ID, p.Version, errdefs.ErrAlreadyExists)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		if _, err := m.opts.Containers.Get(ctx, id); err == nil {
			return fmt.Errorf("a container called %q exists that is not a package: remove it (hearthctl container rm %s) to install %s: %w", id, id, id, errdefs.ErrAlreadyExists)
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	defer rc.done()
	v, warn, data, mf := rc.v, rc.warn, rc.data, rc.mf
	_, keptErr := m.opts.Records.GetKept(v.ID)
	now := time.Now().UTC()
	to := &store.Package{ID: v.ID, Version: v.Version, Container: v.ID, Manifest: data, Signer: v.Signer, Trusted: v.Trusted, InstalledAt: now}
	j := &store.Journal{Op: "install", ID: v.ID, Started: now, Staging: v.Dir, To: to, KeptVolumes: keptErr == nil}
	if err := m.journal(j, stepVerified); err != nil {
		return Result{}, err
	}
	undo := func(step string, cause error) (Result, error) {
		j.Failure = cause.Error()
		if err := m.rollbackInstall(context.WithoutCancel(ctx), j); err != nil {
			m.log.Error("undo a failed install", "package", v.ID, "error", err)
			return Result{}, fmt.Errorf("%w (and undoing it failed: %v; restart containerd-lite to finish undoing)", failed("install", v.ID, step, cause), err)
		}
		return Result{}, failed("install", v.ID, step, cause)
	}
	images, err := m.importImages(ctx, v, mf, op)
	if err != nil {
		return undo(stepImages, err)
	}
	to.Images = images
	if err := m.journal(j, stepImages); err != nil {
		return undo(stepImages, err)
	}
	assets, err := m.keepFiles(v)
	if err != nil {
		return undo(stepImages, err)
	}
	op.progress("creating the container", 0, 0)
	if _, err := m.opts.Containers.Create(ctx, v.ID, containers.Spec{Manifest: data, Images: images, Assets: assets}); err != nil {
		return undo(stepCreated, err)
	}
	if err := m.journal(j, stepCreated); err != nil {
		return undo(stepCreated, err)
	}
	var run []manifest.HookRun
	switch {
	case rf != nil:
		if j.KeptVolumes {
			return undo(stepCreated, fmt.Errorf("data of %s kept from a former install is there: purge it first (hearthctl container rm --purge-volumes %s), or install and then restore in place: %w", v.ID, v.ID, errdefs.ErrFailedPrecondition))
		}
		if run, err = migrateRun(mf, rf.meta.Version, v.Version); err != nil {
			return undo(stepCreated, err)
		}
		op.progress("restoring the volumes", 0, 0)
		err = m.opts.Containers.WithVolumes(ctx, v.ID, func(vols map[string]string) error {
			into := map[string]string{}
			for _, name := range rf.snap.Volumes {
				p, ok := vols[name]
				if !ok {
					return fmt.Errorf("the snapshot holds volume %s, which %s %s does not have: %w", name, v.ID, v.Version, errdefs.ErrFailedPrecondition)
				}
				into[name] = p
			}
			_, err := rf.repo.Restore(ctx, rf.snap.ID, into, func(bp backup.Progress) { op.progress("restoring the volumes", bp.Bytes, rf.snap.Bytes) })
			return err
		})
		if err != nil {
			return undo(stepCreated, err)
		}
	case mf.Hooks.Install != nil:
		run = append(run, manifest.HookRun{Name: manifest.HookInstall, Env: map[string]string{"HEARTH_TO_VERSION": v.Version}})
	}
	// A package whose dependencies are not there waits for them (deps.go).
	waits, depWarn, err := m.deferStart(ctx, v.ID, mf, run)
	if err != nil {
		return undo(stepCreated, err)
	}
	warn = append(warn, depWarn...)
	if len(waits) == 0 {
		if err := m.journal(j, stepStarted); err != nil {
			return undo(stepStarted, err)
		}
		if err := m.startReady(ctx, v.ID, mf, run, op); err != nil {
			return undo(stepStarted, err)
		}
	}
	if err := m.journal(j, stepCommitted); err != nil {
		return undo(stepCommitted, err)
	}
	if err := m.opts.Records.CommitPackage(*to); err != nil {
		return undo(stepCommitted, err)
	}
	m.log.Info("package installed", "package", v.ID, "version", v.Version, "signer", v.Signer, "trusted", v.Trusted)
	op.progress("installed", 1, 1)
	return Result{Package: *to, Warnings: warn}, nil
}

// rollbackInstall removes what an install made: its container (its volumes too, unless
// they were kept from a former install), the images it added, its staging directory.
func (m *Manager) rollbackInstall(ctx context.Context, j *store.Journal) error {
	j.Failure = orText(j.Failure, "undone at start-up")
	if err := m.opts.Records.PutJournal(*j); err != nil {
		return err
	}
	if _, err := m.opts.Containers.Get(ctx, j.ID); err == nil {
		if err := m.opts.Containers.Delete(ctx, j.ID, true, !j.KeptVolumes); err != nil {
			return fmt.Errorf("remove the container: %w", err)
		}
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	// Every image the install may have named (those it did not get to have no name).
	if mf, err := manifest.Parse(j.To.Manifest); err == nil {
		all := map[string]string{}
		for n := range mf.Images {
			all[n] = ""
		}
		m.dropNames(ctx, j.ID, j.To.Version, all)
	}
	m.dropFiles(j.ID, "")
	if j.Staging != "" {
		os.RemoveAll(j.Staging)
	}
	if err := m.opts.Records.DeleteJournal(j.ID); err != nil {
		return err
	}
	m.log.Warn("install undone", "package", j.ID, "step", j.Step, "why", j.Failure)
	return nil
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
