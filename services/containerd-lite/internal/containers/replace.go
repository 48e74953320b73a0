package containers

import (
	"context"
	"fmt"
	"slices"

	"hearth.dev/internal/bytesize"
	"hearth.dev/internal/errdefs"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Replace gives a stopped container a new spec (a package's new version): its images,
// manifest and limits change, new volumes are made, and volumes the new spec drops stay
// on its disk. It returns the record as it was, for Revert.
func (m *Manager) Replace(ctx context.Context, name string, spec Spec) (prev store.Container, err error) {
	next, err := m.resolveSpec(name, spec)
	if err != nil {
		return prev, err
	}
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return prev, err
	}
	defer unlock()
	prev, err = m.stopped(name)
	if err != nil {
		return prev, err
	}
	if next.Limits.DiskBytes < prev.Limits.DiskBytes {
		// A disk does not shrink: it keeps its size.
		next.Limits.DiskBytes = prev.Limits.DiskBytes
	}
	rec := prev
	rec.Images, rec.Manifest, rec.Limits, rec.Assets = next.Images, next.Manifest, next.Limits, next.Assets
	for _, v := range next.Volumes {
		if !slices.Contains(rec.Volumes, v) {
			rec.Volumes = append(rec.Volumes, v)
		}
	}
	if err := m.withDisk(rec, func(t Tree) error {
		for _, v := range next.Volumes {
			if _, err := t.MakeVolume(v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return prev, err
	}
	if err := m.define(rec, m.treeOf(rec)); err != nil {
		return prev, err
	}
	if err := m.opts.Records.PutContainer(rec); err != nil {
		return prev, err
	}
	m.log.Info("container replaced", "container", name, "disk", bytesize.Format(rec.Limits.DiskBytes))
	return prev, nil
}

// Revert puts back a stopped container's record as Replace returned it.
func (m *Manager) Revert(ctx context.Context, prev store.Container) error {
	unlock, err := m.lock(ctx, prev.Name)
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := m.stopped(prev.Name)
	if err != nil {
		return err
	}
	rec := cur
	rec.Images, rec.Manifest, rec.Limits, rec.Assets = prev.Images, prev.Manifest, prev.Limits, prev.Assets
	rec.Limits.DiskBytes = max(prev.Limits.DiskBytes, cur.Limits.DiskBytes)
	if err := m.define(rec, m.treeOf(rec)); err != nil {
		return err
	}
	return m.opts.Records.PutContainer(rec)
}

// makeData makes what a container's mounted disk lacks of its directories and volumes (a
// new disk gets them at its first mount: Create leaves it unmounted), and returns the
// volumes that were there already.
func makeData(t Tree, rec store.Container) (existing []string, err error) {
	if err := t.MakeData(); err != nil {
		return nil, fmt.Errorf("container %q: %w", rec.Name, err)
	}
	for _, v := range rec.Volumes {
		existed, err := t.MakeVolume(v)
		if err != nil {
			return nil, fmt.Errorf("container %q: %w", rec.Name, err)
		}
		if existed {
			existing = append(existing, v)
		}
	}
	return existing, nil
}

// stopped returns the record of a container that is stopped.
func (m *Manager) stopped(name string) (store.Container, error) {
	return m.recordIn(name, lxcrt.Stopped, "stop it first")
}

// withDisk runs fn with the stopped container's disk mounted, and unmounts it after.
func (m *Manager) withDisk(rec store.Container, fn func(Tree) error) error {
	data, err := m.opts.Disks.Open(rec.Name, rec.Limits.DiskBytes, ids(rec))
	if err != nil {
		return fmt.Errorf("container %q: disk: %w", rec.Name, err)
	}
	t := m.tree(rec.Name, ids(rec), data)
	_, ferr := makeData(t, rec)
	if ferr == nil {
		ferr = fn(t)
	}
	if err := m.opts.Disks.Close(rec.Name); err != nil && ferr == nil {
		return fmt.Errorf("container %q: unmount its disk: %w", rec.Name, err)
	}
	return ferr
}

// WithVolumes runs fn with the host directories of a stopped container's volumes (its
// disk mounted meanwhile), while no start can happen. The directories' contents are the
// container's: fn must treat them as hostile (treecopy does).
func (m *Manager) WithVolumes(ctx context.Context, name string, fn func(volumes map[string]string) error) error {
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := m.stopped(name)
	if err != nil {
		return err
	}
	return m.withDisk(rec, func(t Tree) error {
		dirs := map[string]string{}
		for _, v := range rec.Volumes {
			dirs[v] = t.VolumePath(v)
		}
		return fn(dirs)
	})
}

// WithVolumesQuiet runs fn with the host directories of a container's volumes while
// nothing in the container writes to them: a running container is frozen (its processes
// stopped where they are, by the cgroup freezer) for as long as fn runs; a stopped one has
// its disk mounted meanwhile. No start or stop happens meanwhile.
func (m *Manager) WithVolumesQuiet(ctx context.Context, name string, fn func(volumes map[string]string) error) error {
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := m.opts.Records.GetContainer(name)
	if err != nil {
		return err
	}
	st, _, err := m.opts.Runtime.State(name)
	if err != nil {
		return err
	}
	dirs := func(t Tree) map[string]string {
		out := map[string]string{}
		for _, v := range rec.Volumes {
			out[v] = t.VolumePath(v)
		}
		return out
	}
	switch st {
	case lxcrt.Stopped:
		return m.withDisk(rec, func(t Tree) error { return fn(dirs(t)) })
	case lxcrt.Running:
		if err := m.opts.Runtime.Freeze(name); err != nil {
			return err
		}
		defer func() {
			if err := m.opts.Runtime.Unfreeze(name); err != nil {
				m.log.Error("thaw after reading volumes", "container", name, "error", err)
			}
		}()
		return fn(dirs(m.treeOf(rec)))
	}
	return fmt.Errorf("container %q is %s: wait for it to settle, then retry: %w", name, st, errdefs.ErrFailedPrecondition)
}
