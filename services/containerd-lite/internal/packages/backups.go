package packages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	"hearth.dev/internal/semver"
	"hearth.dev/services/containerd-lite/internal/backup"
	"hearth.dev/services/containerd-lite/internal/guestclient"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Repo is where backups go: a directory and the password that encrypts it.
type Repo struct {
	Dir, Password string
}

func (r Repo) open(ctx context.Context) (*backup.Repo, error) {
	if !filepath.IsAbs(r.Dir) {
		return nil, fmt.Errorf("backup directory %q: give an absolute path: %w", r.Dir, errdefs.ErrInvalidArgument)
	}
	if r.Password == "" {
		return nil, fmt.Errorf("no password for the backups in %s: %w", r.Dir, errdefs.ErrInvalidArgument)
	}
	return backup.Open(ctx, r.Dir, r.Password, backup.Options{})
}

// Backup stores a snapshot of an installed package in the repository: its manifest, its
// version and every volume. It is consistent: the package's backup hook runs first when
// it declares one (in the subcontainer of a running daemon of the hook's image, which
// sees that daemon's volumes: a pg_dump into one, say), and otherwise its processes are
// frozen while the volumes are read. A second backup of unchanged data writes almost
// nothing.
// The second result is how many bytes the backup wrote to the repository.
func (m *Manager) Backup(ctx context.Context, id string, r Repo, progress func(Progress)) (backup.Snapshot, int64, error) {
	snap, stored, err := m.backup(ctx, id, r, progress)
	return snap, stored, err
}

func (m *Manager) backup(ctx context.Context, id string, r Repo, progress func(Progress)) (backup.Snapshot, int64, error) {
	unlock, err := m.lockPackage(id)
	if err != nil {
		return backup.Snapshot{}, 0, err
	}
	defer unlock()
	p, err := m.opts.Records.GetPackage(id)
	if err != nil {
		return backup.Snapshot{}, 0, err
	}
	mf, err := manifest.Parse(p.Manifest)
	if err != nil {
		return backup.Snapshot{}, 0, err
	}
	op := Op{Progress: progress}
	repo, err := r.open(ctx)
	if err != nil {
		return backup.Snapshot{}, 0, err
	}
	defer repo.Close()
	meta := backup.Meta{Manifest: p.Manifest, Version: p.Version}
	if p.DataVersion != "" {
		meta.Labels = map[string]string{dataVersionLabel: p.DataVersion}
	}
	if h := mf.Hooks.Backup; h != nil {
		if err := m.runBackupHook(ctx, p, mf, h, op); err != nil {
			return backup.Snapshot{}, 0, err
		}
	}
	op.progress("freezing the package and reading its volumes", 0, 0)
	var snap backup.Snapshot
	var stored int64
	err = m.opts.Containers.WithVolumesQuiet(ctx, id, func(vols map[string]string) error {
		snap, err = repo.Backup(ctx, id, meta, vols, func(bp backup.Progress) {
			stored = bp.Stored
			op.progress("reading the volumes", bp.Bytes, 0)
		})
		return err
	})
	if err != nil {
		return snap, 0, fmt.Errorf("back up %s: %w", id, err)
	}
	m.log.Info("package backed up", "package", id, "snapshot", snap.ID, "bytes", snap.Bytes, "stored", stored, "unchanged_files", snap.Unchanged)
	return snap, stored, nil
}

// runBackupHook runs the backup hook in a running daemon of its image.
func (m *Manager) runBackupHook(ctx context.Context, p store.Package, mf *manifest.Manifest, h *manifest.Hook, op Op) error {
	daemon := ""
	for _, n := range slices.Sorted(maps.Keys(mf.Daemons)) {
		if mf.Daemons[n].Image == h.Image {
			daemon = n
			break
		}
	}
	if daemon == "" {
		return fmt.Errorf("%s: its backup hook runs in image %s, which no daemon runs: %w", p.ID, h.Image, errdefs.ErrFailedPrecondition)
	}
	i, err := m.opts.Containers.Get(ctx, p.Container)
	if err != nil {
		return err
	}
	if i.State != lxcrt.Running {
		// Stopped: its data is at rest; nothing to make consistent.
		return nil
	}
	d, err := m.opts.Containers.GuestDialer(p.Container)
	if err != nil {
		return err
	}
	op.progress("running the backup hook", 0, 0)
	hctx, cancel := context.WithTimeout(ctx, h.Timeout.D(manifest.DefaultHookTimeout))
	defer cancel()
	code, out, err := guestclient.Exec(hctx, p.Container, d, daemon, append(slices.Clone(h.Command), h.Args...), h.Env)
	if err != nil {
		return fmt.Errorf("backup hook of %s: %w", p.ID, err)
	}
	if code != 0 {
		return fmt.Errorf("backup hook of %s exited %d; its output ends: %s: %w", p.ID, code, lastLines(out, 10), errdefs.ErrFailedPrecondition)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Snapshots lists the repository's snapshots of a package (of every package for "").
func (m *Manager) Snapshots(ctx context.Context, r Repo, id string) ([]backup.Snapshot, error) {
	repo, err := r.open(ctx)
	if err != nil {
		return nil, err
	}
	defer repo.Close()
	return repo.List(ctx, id)
}

// PruneSnapshots keeps the newest keep snapshots of a package and deletes the others.
func (m *Manager) PruneSnapshots(ctx context.Context, r Repo, id string, keep int) (int, error) {
	if keep < 1 {
		return 0, fmt.Errorf("keep %d: keep at least one snapshot: %w", keep, errdefs.ErrInvalidArgument)
	}
	repo, err := r.open(ctx)
	if err != nil {
		return 0, err
	}
	defer repo.Close()
	return repo.Prune(ctx, id, keep)
}

// Restore steps, journaled in this order (op "restore").
const (
	stepRestored = "restored" // restored beside the live volumes
	stepSwapping = "swapping" // the restored volumes take the live ones' places
)

var restoreSteps = []string{stepVerified, stepStopped, stepRestored, stepSwapping, stepStarted, stepCommitted}

// Restore puts a snapshot of a package back. The snapshot (the newest when snapshotID is
// empty) is verified first, whole: a damaged repository or a wrong password is found
// before anything of the package changes. An installed package is restored in place: it
// stops, the volumes are restored beside the live ones, swapped in, and it starts again
// (its migrate hook runs when the snapshot is of an older version; a newer one is
// refused). An absent package is installed from pkg (its file), with the snapshot's data
// in place of the install hook's.
func (m *Manager) Restore(ctx context.Context, id string, r Repo, snapshotID string, pkg io.Reader, op Op) (Result, error) {
	repo, err := r.open(ctx)
	if err != nil {
		return Result{}, err
	}
	defer repo.Close()
	snap, err := pickSnapshot(ctx, repo, id, snapshotID)
	if err != nil {
		return Result{}, err
	}
	op.progress("verifying the snapshot", 0, 0)
	meta, err := repo.Verify(ctx, snap.ID)
	if err != nil {
		return Result{}, fmt.Errorf("snapshot %s of %s: %w", snap.ID, id, err)
	}
	if _, err := m.opts.Records.GetPackage(id); errors.Is(err, errdefs.ErrNotFound) {
		if pkg == nil {
			return Result{}, fmt.Errorf("%s is not installed: give its package file (--package FILE.hpkg, version %s or newer) to install it with the snapshot's data: %w", id, meta.Version, errdefs.ErrFailedPrecondition)
		}
		return m.install(ctx, pkg, op, &restoreFrom{repo: repo, snap: snap, meta: meta})
	} else if err != nil {
		return Result{}, err
	}
	if pkg != nil {
		return Result{}, fmt.Errorf("%s is installed: its data is restored in place, without a package file (update it first if you want another version): %w", id, errdefs.ErrInvalidArgument)
	}
	return m.restoreInPlace(ctx, id, repo, snap, meta, op)
}

// restoreFrom tells an install to take its data from a snapshot.
type restoreFrom struct {
	repo *backup.Repo
	snap backup.Snapshot
	meta backup.Meta
}

func pickSnapshot(ctx context.Context, repo *backup.Repo, id, snapshotID string) (backup.Snapshot, error) {
	snaps, err := repo.List(ctx, id)
	if err != nil {
		return backup.Snapshot{}, err
	}
	if len(snaps) == 0 {
		return backup.Snapshot{}, fmt.Errorf("no snapshot of %s in %s: %w", id, repo.Dir(), errdefs.ErrNotFound)
	}
	if snapshotID == "" {
		return snaps[len(snaps)-1], nil
	}
	for _, s := range snaps {
		if s.ID == snapshotID || (len(snapshotID) >= 6 && strings.HasPrefix(s.ID, snapshotID)) {
			return s, nil
		}
	}
	return backup.Snapshot{}, fmt.Errorf("no snapshot %s of %s in %s (hearthctl backup ls lists them): %w", snapshotID, id, repo.Dir(), errdefs.ErrNotFound)
}

// migrateRun is the migrate hook to run when data of version from meets version to.
func migrateRun(mf *manifest.Manifest, from, to string) ([]manifest.HookRun, error) {
	c, err := semver.Compare(from, to)
	if err != nil {
		return nil, err
	}
	switch {
	case c > 0:
		return nil, fmt.Errorf("the snapshot is of %s %s, newer than %s: restore it into %s or newer: %w", mf.ID, from, to, from, errdefs.ErrFailedPrecondition)
	case c < 0 && mf.Hooks.Migrate != nil:
		return []manifest.HookRun{{Name: manifest.HookMigrate, Env: map[string]string{"HEARTH_FROM_VERSION": from, "HEARTH_TO_VERSION": to}}}, nil
	}
	return nil, nil
}

func (m *Manager) restoreInPlace(ctx context.Context, id string, repo *backup.Repo, snap backup.Snapshot, meta backup.Meta, op Op) (Result, error) {
	unlock, err := m.lockPackage(id)
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	p, err := m.opts.Records.GetPackage(id)
	if err != nil {
		return Result{}, err
	}
	mf, err := manifest.Parse(p.Manifest)
	if err != nil {
		return Result{}, err
	}
	run, err := migrateRun(mf, meta.Version, p.Version)
	if err != nil {
		return Result{}, err
	}
	// The data version goes with the data: the snapshot's (a migrate hook may set another).
	to := p
	to.DataVersion = meta.Labels[dataVersionLabel]
	j := &store.Journal{Op: "restore", ID: id, Started: time.Now().UTC(), From: &p, To: &to}
	if err := m.journal(j, stepVerified); err != nil {
		return Result{}, err
	}
	undo := func(step string, cause error) (Result, error) {
		j.Failure = cause.Error()
		if err := m.rollbackRestore(context.WithoutCancel(ctx), j); err != nil {
			return Result{}, fmt.Errorf("%w (and putting the data back failed: %v; restart containerd-lite to finish)", failed("restore", id, step, cause), err)
		}
		return Result{}, fmt.Errorf("%w; the package runs again with its data as it was", failed("restore", id, step, cause))
	}
	op.progress("stopping "+id, 0, 0)
	if err := m.journal(j, stepStopped); err != nil {
		return undo(stepStopped, err)
	}
	if _, err := m.opts.Containers.Stop(ctx, id, 0); err != nil {
		return undo(stepStopped, err)
	}
	op.progress("restoring the volumes", 0, 0)
	err = m.opts.Containers.WithVolumes(ctx, id, func(vols map[string]string) error {
		into := map[string]string{}
		for _, v := range snap.Volumes {
			live, ok := vols[v]
			if !ok {
				return fmt.Errorf("the snapshot holds volume %s, which %s %s does not have: %w", v, id, p.Version, errdefs.ErrFailedPrecondition)
			}
			beside := sibling(live, ".restore-")
			if err := os.RemoveAll(beside); err != nil {
				return err
			}
			if err := os.Mkdir(beside, 0o700); err != nil {
				return err
			}
			into[v] = beside
		}
		_, err := repo.Restore(ctx, snap.ID, into, func(bp backup.Progress) { op.progress("restoring the volumes", bp.Bytes, snap.Bytes) })
		return err
	})
	if err != nil {
		return undo(stepRestored, err)
	}
	if err := m.journal(j, stepRestored); err != nil {
		return undo(stepRestored, err)
	}
	if err := m.journal(j, stepSwapping); err != nil {
		return undo(stepSwapping, err)
	}
	if err := m.swapRestored(ctx, id, snap.Volumes, false); err != nil {
		return undo(stepSwapping, err)
	}
	if err := m.journal(j, stepStarted); err != nil {
		return undo(stepStarted, err)
	}
	if err := m.startReady(ctx, id, mf, run, op); err != nil {
		return undo(stepStarted, err)
	}
	if err := m.journal(j, stepCommitted); err != nil {
		return undo(stepCommitted, err)
	}
	if err := m.finishRestore(ctx, j); err != nil {
		return Result{}, err
	}
	m.log.Info("package restored", "package", id, "snapshot", snap.ID, "snapshot_version", meta.Version)
	return Result{Package: p}, nil
}

// sibling is the path beside a volume where a restore works.
func sibling(live, prefix string) string {
	return filepath.Join(filepath.Dir(live), prefix+filepath.Base(live))
}

// swapRestored puts the restored volumes in place of the live ones (which go aside to
// .before-<name>), or, with back, the ones aside back in place. Each volume's swap may be
// done again after a crash.
func (m *Manager) swapRestored(ctx context.Context, id string, volumes []string, back bool) error {
	return m.opts.Containers.WithVolumes(ctx, id, func(vols map[string]string) error {
		for _, v := range volumes {
			live, ok := vols[v]
			if !ok {
				continue
			}
			restored, before := sibling(live, ".restore-"), sibling(live, ".before-")
			if back {
				// Undo: the live one (restored) goes, the one aside comes back.
				if _, err := os.Lstat(before); err != nil {
					continue // not swapped
				}
				if err := os.RemoveAll(live); err != nil {
					return err
				}
				if err := os.Rename(before, live); err != nil {
					return err
				}
				continue
			}
			if _, err := os.Lstat(restored); errors.Is(err, os.ErrNotExist) {
				continue // swapped already
			}
			if _, err := os.Lstat(before); errors.Is(err, os.ErrNotExist) {
				if err := os.Rename(live, before); err != nil {
					return err
				}
			}
			if err := os.Rename(restored, live); err != nil {
				return err
			}
		}
		return nil
	})
}

// finishRestore drops what a committed restore kept aside.
func (m *Manager) finishRestore(ctx context.Context, j *store.Journal) error {
	err := m.opts.Containers.WithVolumesQuiet(ctx, j.ID, func(vols map[string]string) error {
		for _, live := range vols {
			for _, p := range []string{sibling(live, ".before-"), sibling(live, ".restore-")} {
				if err := os.RemoveAll(p); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if j.To != nil {
		return m.opts.Records.CommitPackage(*j.To) // with the restored data's version
	}
	return m.opts.Records.DeleteJournal(j.ID)
}

// rollbackRestore puts the data back as it was before the restore and starts the package.
func (m *Manager) rollbackRestore(ctx context.Context, j *store.Journal) error {
	j.Failure = orText(j.Failure, "undone at start-up")
	if err := m.opts.Records.PutJournal(*j); err != nil {
		return err
	}
	if slices.Index(restoreSteps, j.Step) >= slices.Index(restoreSteps, stepStopped) {
		if _, err := m.opts.Containers.Stop(ctx, j.ID, 0); err != nil {
			return err
		}
		mf, err := manifest.Parse(j.From.Manifest)
		if err != nil {
			return err
		}
		var vols []string
		vols = append(vols, mf.Volumes...)
		if err := m.swapRestored(ctx, j.ID, vols, true); err != nil {
			return err
		}
		err = m.opts.Containers.WithVolumes(ctx, j.ID, func(live map[string]string) error {
			for _, p := range live {
				if err := os.RemoveAll(sibling(p, ".restore-")); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := m.startReady(ctx, j.ID, mf, nil, Op{}); err != nil {
			return err
		}
	} else if err := m.ensureRunning(ctx, *j.From); err != nil {
		return err
	}
	m.log.Warn("restore undone", "package", j.ID, "step", j.Step, "why", j.Failure)
	return m.opts.Records.DeleteJournal(j.ID)
}
