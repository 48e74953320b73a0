package packages

import (
	"context"
	"errors"
	"fmt"
	"time"

	"hearth.dev/internal/errdefs"
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
	m.removeImages(ctx, j.ID, j.From.OwnImages)
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
			err = m.opts.Records.CommitPackage(*j.To)
		case j.Op == "install":
			err = m.rollbackInstall(ctx, j)
		case j.Op == "update" && j.Step == stepCommitted:
			err = m.commitUpdate(ctx, j)
		case j.Op == "update":
			err = m.rollbackUpdate(ctx, j, Op{})
		case j.Op == "uninstall":
			err = m.finishUninstall(ctx, j)
		default:
			err = fmt.Errorf("unknown operation %q", j.Op)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s of %s (at %s): %w", j.Op, j.ID, j.Step, err))
		}
	}
	return errors.Join(errs...)
}
