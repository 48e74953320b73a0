package packages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	"hearth.dev/internal/semver"
	"hearth.dev/services/containerd-lite/internal/containers"
	"hearth.dev/services/containerd-lite/internal/store"
	"hearth.dev/services/containerd-lite/internal/treecopy"
)

// Update replaces an installed package by another version of it: a lower version only
// when the installed manifest allows downgrades. It stops the package, copies its volumes
// aside, swaps images and manifest, runs the migrate hook (HEARTH_FROM_VERSION,
// HEARTH_TO_VERSION), starts it and waits until every daemon is ready. Any failure rolls
// back to the old images, manifest and data, starts the old version again, and says why.
func (m *Manager) Update(ctx context.Context, r io.Reader, op Op) (Result, error) {
	var from store.Package
	rc, err := m.receive(ctx, r, op, func(id, version string) error {
		var err error
		from, err = m.opts.Records.GetPackage(id)
		if errors.Is(err, errdefs.ErrNotFound) {
			return fmt.Errorf("%s is not installed: install it (hearthctl install FILE): %w", id, errdefs.ErrNotFound)
		} else if err != nil {
			return err
		}
		return checkVersions(from, version)
	})
	if err != nil {
		return Result{}, err
	}
	defer rc.done()
	v, warn, data, mf := rc.v, rc.warn, rc.data, rc.mf
	now := time.Now().UTC()
	to := from
	to.Version, to.Manifest, to.Signer, to.Trusted, to.UpdatedAt = v.Version, data, v.Signer, v.Trusted, now
	j := &store.Journal{Op: "update", ID: v.ID, Started: now, Staging: v.Dir, From: &from, To: &to}
	if err := m.journal(j, stepVerified); err != nil {
		return Result{}, err
	}
	undo := func(step string, cause error) (Result, error) {
		j.Failure = cause.Error()
		if err := m.rollbackUpdate(context.WithoutCancel(ctx), j, op); err != nil {
			m.log.Error("roll back a failed update", "package", v.ID, "error", err)
			return Result{}, fmt.Errorf("%w (and rolling back failed: %v; restart containerd-lite to finish rolling back)", failed("update", v.ID, step, cause), err)
		}
		return Result{}, fmt.Errorf("%w; rolled back: %s %s runs again with its data as it was", failed("update", v.ID, step, cause), from.ID, from.Version)
	}
	// Their names are in the journal before them: a rollback drops what was made.
	to.Images = map[string]string{}
	for n := range mf.Images {
		to.Images[n] = ""
	}
	if err := m.journal(j, stepImages); err != nil {
		return undo(stepImages, err)
	}
	images, err := m.importImages(ctx, v, mf, op)
	if err != nil {
		return undo(stepImages, err)
	}
	to.Images = images
	if err := m.journal(j, stepImages); err != nil {
		return undo(stepImages, err)
	}
	op.progress("stopping "+from.Version, 0, 0)
	if err := m.journal(j, stepStopped); err != nil {
		return undo(stepStopped, err)
	}
	if _, err := m.opts.Containers.Stop(ctx, v.ID, 0); err != nil {
		return undo(stepStopped, err)
	}
	j.Snapshot = filepath.Join(m.opts.StateDir, "snapshots", fmt.Sprintf("%s-%d", v.ID, now.UnixNano()))
	if err := m.journal(j, stepSnapshot); err != nil {
		return undo(stepSnapshot, err)
	}
	op.progress("keeping a copy of the data", 0, 0)
	if err := m.snapshot(ctx, v.ID, j.Snapshot); err != nil {
		return undo(stepSnapshot, err)
	}
	assets, err := m.keepFiles(v)
	if err != nil {
		return undo(stepReplaced, err)
	}
	prev, err := m.opts.Containers.Replace(ctx, v.ID, containers.Spec{Manifest: data, Images: images, Assets: assets})
	if err != nil {
		return undo(stepReplaced, err)
	}
	j.Previous = &prev
	if err := m.journal(j, stepReplaced); err != nil {
		return undo(stepReplaced, err)
	}
	var run []manifest.HookRun
	if mf.Hooks.Migrate != nil {
		run = append(run, manifest.HookRun{Name: manifest.HookMigrate, Env: map[string]string{"HEARTH_FROM_VERSION": from.Version, "HEARTH_TO_VERSION": v.Version}})
	}
	if err := m.journal(j, stepStarted); err != nil {
		return undo(stepStarted, err)
	}
	if err := m.startReady(ctx, v.ID, mf, run, op); err != nil {
		return undo(stepStarted, err)
	}
	if err := m.journal(j, stepCommitted); err != nil {
		return undo(stepCommitted, err)
	}
	if err := m.commitUpdate(ctx, j); err != nil {
		return Result{}, err
	}
	m.log.Info("package updated", "package", v.ID, "from", from.Version, "to", v.Version)
	op.progress("updated", 1, 1)
	return Result{Package: to, Warnings: warn}, nil
}

// checkVersions refuses a version that is not newer, unless the installed manifest allows
// downgrades.
func checkVersions(from store.Package, to string) error {
	c, err := semver.Compare(to, from.Version)
	if err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	switch {
	case c == 0:
		return fmt.Errorf("%s %s is installed already: %w", from.ID, from.Version, errdefs.ErrAlreadyExists)
	case c < 0:
		mf, err := manifest.Parse(from.Manifest)
		if err != nil {
			return err
		}
		if !mf.AllowDowngrade {
			return fmt.Errorf("%s %s is older than the installed %s, and %s %s does not allow downgrades (allow_downgrade in its manifest): %w",
				from.ID, to, from.Version, from.ID, from.Version, errdefs.ErrFailedPrecondition)
		}
	}
	return nil
}

// snapshot copies the stopped package's volumes to dir, through descriptors.
func (m *Manager) snapshot(ctx context.Context, id, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	return m.opts.Containers.WithVolumes(ctx, id, func(vols map[string]string) error {
		for name, src := range vols {
			if _, err := treecopy.Copy(src, filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("copy volume %s: %w", name, err)
			}
		}
		return nil
	})
}

// restoreSnapshot puts the volumes kept in dir back in place of the stopped package's.
func (m *Manager) restoreSnapshot(ctx context.Context, id, dir string) error {
	return m.opts.Containers.WithVolumes(ctx, id, func(vols map[string]string) error {
		for name, live := range vols {
			kept := filepath.Join(dir, name)
			if _, err := os.Lstat(kept); errors.Is(err, os.ErrNotExist) {
				continue // a volume the new version added: it keeps what it has
			}
			// The live tree goes aside, the copy comes in, then the aside goes.
			aside := filepath.Join(filepath.Dir(live), "."+name+".rollback")
			if err := os.RemoveAll(aside); err != nil {
				return err
			}
			if err := os.Rename(live, aside); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("volume %s: %w", name, err)
			}
			if _, err := treecopy.Copy(kept, live); err != nil {
				return fmt.Errorf("restore volume %s: %w", name, err)
			}
			if err := os.RemoveAll(aside); err != nil {
				return err
			}
		}
		return nil
	})
}

// commitUpdate makes the new version the package: its record, and the old images and the
// snapshot go.
func (m *Manager) commitUpdate(ctx context.Context, j *store.Journal) error {
	if err := m.opts.Records.CommitPackage(*j.To); err != nil {
		return err
	}
	m.dropNames(ctx, j.ID, j.From.Version, j.From.Images)
	m.dropFiles(j.ID, j.From.Version)
	if j.Snapshot != "" {
		os.RemoveAll(j.Snapshot)
	}
	if j.Staging != "" {
		os.RemoveAll(j.Staging)
	}
	return nil
}

// rollbackUpdate brings back the version before the update: the container's old record,
// the volumes as the snapshot kept them (when the new version may have changed them), the
// old version running; then the images the update added go.
func (m *Manager) rollbackUpdate(ctx context.Context, j *store.Journal, op Op) error {
	j.Failure = orText(j.Failure, "undone at start-up")
	if err := m.opts.Records.PutJournal(*j); err != nil {
		return err
	}
	op.progress("rolling back to "+j.From.Version, 0, 0)
	reached := func(step string) bool { return stepIndex(j.Step) >= stepIndex(step) }
	if reached(stepStopped) {
		if _, err := m.opts.Containers.Stop(ctx, j.ID, 0); err != nil {
			return fmt.Errorf("stop: %w", err)
		}
		if reached(stepReplaced) && j.Previous != nil {
			if err := m.opts.Containers.Revert(ctx, *j.Previous); err != nil {
				return fmt.Errorf("put back the container's record: %w", err)
			}
		} else if reached(stepSnapshot) {
			// Replace may have happened before its journal line: putting back the old
			// spec is harmless when it did not.
			var assets string
			if _, err := os.Stat(filepath.Join(m.filesDir(j.ID, j.From.Version), "assets")); err == nil {
				assets = filepath.Join(m.filesDir(j.ID, j.From.Version), "assets")
			}
			if _, err := m.opts.Containers.Replace(ctx, j.ID, containers.Spec{Manifest: j.From.Manifest, Images: j.From.Images, Assets: assets}); err != nil {
				return fmt.Errorf("put back the container's record: %w", err)
			}
		}
		// Volumes change only once the new version ran: from "started" on.
		if reached(stepStarted) && j.Snapshot != "" {
			if err := m.restoreSnapshot(ctx, j.ID, j.Snapshot); err != nil {
				return fmt.Errorf("put back the data: %w", err)
			}
		}
		mf, err := manifest.Parse(j.From.Manifest)
		if err != nil {
			return err
		}
		if err := m.startReady(ctx, j.ID, mf, nil, op); err != nil {
			return fmt.Errorf("start %s again: %w", j.From.Version, err)
		}
	} else if err := m.ensureRunning(ctx, *j.From); err != nil {
		// Not stopped by the update; a power cut may have stopped it.
		return fmt.Errorf("start %s again: %w", j.From.Version, err)
	}
	if j.To.Version != j.From.Version {
		m.dropNames(ctx, j.ID, j.To.Version, j.To.Images)
		m.dropFiles(j.ID, j.To.Version)
	}
	if j.Snapshot != "" {
		os.RemoveAll(j.Snapshot)
	}
	if j.Staging != "" {
		os.RemoveAll(j.Staging)
	}
	if err := m.opts.Records.DeleteJournal(j.ID); err != nil {
		return err
	}
	m.log.Warn("update rolled back", "package", j.ID, "to", j.From.Version, "step", j.Step, "why", j.Failure)
	return nil
}

var steps = []string{stepVerified, stepImages, stepCreated, stepStopped, stepSnapshot, stepReplaced, stepStarted, stepCommitted}

func stepIndex(s string) int { return slices.Index(steps, s) }
