package packages

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Uninstall removes a package: its container goes; its data is kept (a reinstall of the
// same id finds it) unless purge; the images it brought go unless something else uses them.
func (m *Manager) Uninstall(ctx context.Context, id string, purge bool) error {
	unlock, err := m.lockPackage(id)
	if err != nil {
		return err
	}
	defer unlock()
	p, err := m.opts.Records.GetPackage(id)
	if err != nil {
		return err
	}
	j := &store.Journal{Op: "uninstall", ID: id, Started: time.Now().UTC(), From: &p, KeptVolumes: !purge}
	if err := m.journal(j, "started"); err != nil {
		return err
	}
	return m.finishUninstall(ctx, j)
}

// finishUninstall carries an uninstall to its end; every step may be done again.
func (m *Manager) finishUninstall(ctx context.Context, j *store.Journal) error {
	purge := !j.KeptVolumes
	if _, err := m.opts.Containers.Get(ctx, j.ID); err == nil {
		if err := m.opts.Containers.Delete(ctx, j.ID, true, purge); err != nil {
			return fmt.Errorf("uninstall %s: remove its container: %w", j.ID, err)
		}
	} else if errors.Is(err, errdefs.ErrNotFound) && purge {
		// The container went before a crash; purge what it kept.
		if err := m.opts.Containers.Delete(ctx, j.ID, false, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return fmt.Errorf("uninstall %s: purge its data: %w", j.ID, err)
		}
	} else if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	if err := m.opts.Records.RemovePackage(j.ID); err != nil {
		return err
	}
	m.dropNames(ctx, j.ID, j.From.Version, j.From.Images)
	m.dropFiles(j.ID, "")
	m.uninstalled(j.ID, purge)
	m.log.Info("package uninstalled", "package", j.ID, "version", j.From.Version, "data_kept", !purge)
	return nil
}

// Reconcile finishes or undoes the operations a crash cut short: what had committed is
// finished, the rest is undone. It runs before containerd-lite serves.
func (m *Manager) Reconcile(ctx context.Context) error {
	js, err := m.opts.Records.ListJournal()
	if err != nil {
		return err
	}
	var errs []error
	for i := range js {
		j := &js[i]
		m.log.Warn("reconcile: an operation did not finish", "op", j.Op, "package", j.ID, "step", j.Step)
		var err error
		switch {
		case j.Op == "install" && j.Step == stepCommitted:
			if err = m.opts.Records.CommitPackage(*j.To); err == nil {
				err = m.ensureRunning(ctx, *j.To)
			}
		case j.Op == "install":
			err = m.rollbackInstall(ctx, j)
		case j.Op == "update" && j.Step == stepCommitted:
			if err = m.commitUpdate(ctx, j); err == nil {
				err = m.ensureRunning(ctx, *j.To)
			}
		case j.Op == "update":
			err = m.rollbackUpdate(ctx, j, Op{})
		case j.Op == "uninstall":
			err = m.finishUninstall(ctx, j)
		case j.Op == "restore" && j.Step == stepCommitted:
			if err = m.finishRestore(ctx, j); err == nil {
				err = m.ensureRunning(ctx, *j.From)
			}
		case j.Op == "restore":
			err = m.rollbackRestore(ctx, j)
		case j.Op == opAction:
			err = m.finishAction(ctx, j)
		default:
			err = fmt.Errorf("unknown operation %q", j.Op)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s of %s (at %s): %w", j.Op, j.ID, j.Step, err))
		}
	}
	// Staging and snapshot directories no unfinished operation refers to: a crash while a
	// file was still being verified, or after an operation ended.
	left, err := m.opts.Records.ListJournal()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	used := map[string]bool{}
	for _, j := range left {
		used[j.Staging], used[j.Snapshot] = true, true
	}
	for _, sub := range []string{"staging", "snapshots"} {
		dir := filepath.Join(m.opts.StateDir, sub)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if p := filepath.Join(dir, e.Name()); !used[p] {
				if err := os.RemoveAll(p); err != nil {
					errs = append(errs, err)
				} else {
					m.log.Warn("reconcile: removed what an unfinished operation left", "path", p)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// ensureRunning starts a package that was running when its operation committed (a power
// cut may have stopped it since).
func (m *Manager) ensureRunning(ctx context.Context, p store.Package) error {
	i, err := m.opts.Containers.Get(ctx, p.Container)
	if err != nil {
		return err
	}
	if i.State == lxcrt.Running || m.isWaiting(p.ID) {
		return nil // a package that waits for its dependencies starts when they are there
	}
	mf, err := manifest.Parse(p.Manifest)
	if err != nil {
		return err
	}
	return m.startReady(ctx, p.ID, mf, nil, Op{})
}
