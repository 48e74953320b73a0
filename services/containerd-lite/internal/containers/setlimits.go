package containers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"hearth.dev/internal/bytesize"
	"hearth.dev/internal/errdefs"
	"hearth.dev/services/containerd-lite/internal/limits"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/store"
)

// SetLimits changes a container's limits: the fields of l that are not zero replace the
// current ones, the host's policy caps the result, a running container's cgroup takes
// them at once, and its disk grows: online where the kernel lets containerd-lite resize a
// mounted file system, otherwise at the container's next start. A disk never shrinks.
// notes say what the policy changed and what waits for a start.
func (m *Manager) SetLimits(ctx context.Context, name string, l store.Limits) (Info, store.Limits, []string, error) {
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return Info{}, store.Limits{}, nil, err
	}
	defer unlock()
	rec, err := m.opts.Records.GetContainer(name)
	if err != nil {
		return Info{}, store.Limits{}, nil, err
	}
	want := rec.Limits
	for _, f := range []struct{ to, from *int64 }{{&want.MemoryBytes, &l.MemoryBytes}, {&want.Pids, &l.Pids}, {&want.DiskBytes, &l.DiskBytes}} {
		if *f.from != 0 {
			*f.to = *f.from
		}
	}
	if l.CPUs != 0 {
		want.CPUs = l.CPUs
	}
	got, notes, err := m.opts.Policy.Apply(want)
	if err != nil {
		return Info{}, store.Limits{}, nil, fmt.Errorf("container %q: %w: %w", name, err, errdefs.ErrInvalidArgument)
	}
	if got.DiskBytes < rec.Limits.DiskBytes {
		return Info{}, store.Limits{}, nil, fmt.Errorf("container %q: its disk is %s; disks do not shrink: give at least that: %w",
			name, bytesize.Format(rec.Limits.DiskBytes), errdefs.ErrInvalidArgument)
	}
	st, _, err := m.opts.Runtime.State(name)
	if err != nil {
		return Info{}, store.Limits{}, nil, err
	}
	if st == lxcrt.Running {
		for _, kv := range limits.ConfigLines(got, m.opts.CgroupV2) {
			key := kv[0][strings.Index(kv[0], ".cgroup")+len(".cgroup"):]
			key = strings.TrimPrefix(strings.TrimPrefix(key, "2"), ".")
			if err := m.opts.Runtime.SetCgroupItem(name, key, kv[1]); err != nil {
				return Info{}, store.Limits{}, nil, fmt.Errorf("container %q: %w (lower limits may be refused below what the container uses now)", name, err)
			}
		}
		if got.DiskBytes > rec.Limits.DiskBytes {
			if err := m.opts.Disks.Grow(name, got.DiskBytes); errors.Is(err, errdefs.ErrPermissionDenied) || errors.Is(err, errdefs.ErrFailedPrecondition) {
				notes = append(notes, fmt.Sprintf("the disk grows to %s at the next start: %v", bytesize.Format(got.DiskBytes), err))
			} else if err != nil {
				return Info{}, store.Limits{}, nil, fmt.Errorf("container %q: grow its disk: %w", name, err)
			}
		}
	}
	rec.Limits = got
	// The LXC configuration holds the cgroup settings of the next start.
	if err := m.define(rec, m.treeOf(rec)); err != nil {
		return Info{}, store.Limits{}, nil, err
	}
	if _, err := m.update(name, func(r *store.Container) { r.Limits = got }); err != nil {
		return Info{}, store.Limits{}, nil, err
	}
	m.log.Info("limits changed", "container", name, "memory", got.MemoryBytes, "cpus", got.CPUs, "pids", got.Pids, "disk", got.DiskBytes, "notes", notes)
	i, err := m.info(rec)
	return i, got, notes, err
}
