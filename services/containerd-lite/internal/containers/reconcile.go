package containers

import (
	"context"
	"maps"

	"hearth.dev/services/containerd-lite/internal/store"
	"os"
	"path/filepath"
	"slices"

	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/mounts"
)

// Reconcile compares the stored records with the containers LXC knows and the mounts
// that exist, and repairs the difference: running containers are adopted (their
// host.sock served again), stopped ones lose leftover mounts, and LXC definitions or
// directories without a record are removed when stopped. It logs every repair.
func (m *Manager) Reconcile(ctx context.Context) error {
	recs, err := m.opts.Store.ListContainers()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, rec := range recs {
		known[rec.Name] = true
		st, pid, err := m.opts.Runtime.State(rec.Name)
		if err != nil {
			return err
		}
		switch st {
		case lxcrt.Running:
			if err := m.serveHost(rec.Name); err != nil {
				return err
			}
			if err := m.remount(rec); err != nil {
				m.log.Error("reconcile: restore mounts", "container", rec.Name, "error", err)
			}
			if addr, err := m.attach(ctx, rec.Name); err != nil {
				m.log.Error("reconcile: attach to netd", "container", rec.Name, "error", err)
			} else if addr != rec.Address {
				if _, err := m.update(rec.Name, func(r *store.Container) { r.Address = addr }); err != nil {
					return err
				}
			}
			m.log.Info("reconcile: adopted running container", "container", rec.Name, "init_pid", pid, "overlays", len(rec.Overlays))
		case lxcrt.Stopped:
			if done, err := mounts.UnmountAll(m.paths(rec.Name).dir); err != nil {
				m.log.Error("reconcile: unmount leftovers", "container", rec.Name, "error", err)
			} else if len(done) > 0 {
				m.log.Warn("reconcile: removed mounts of a stopped container", "container", rec.Name, "targets", done)
			}
			removeSockets(m.paths(rec.Name).rpc)
		case lxcrt.Missing:
			m.log.Error("reconcile: container has a record but no LXC definition; delete it and create it again", "container", rec.Name)
		default:
			m.log.Warn("reconcile: container in transition", "container", rec.Name, "state", st)
		}
	}
	// Definitions and directories nobody recorded: a crash between steps of Create or Delete.
	orphans := slices.Clone(m.opts.Runtime.Defined())
	if ents, err := os.ReadDir(filepath.Join(m.opts.StateDir, "containers")); err == nil {
		for _, e := range ents {
			if !slices.Contains(orphans, e.Name()) {
				orphans = append(orphans, e.Name())
			}
		}
	}
	for _, name := range orphans {
		if known[name] {
			continue
		}
		st, _, err := m.opts.Runtime.State(name)
		if err != nil {
			return err
		}
		if st != lxcrt.Stopped && st != lxcrt.Missing {
			m.log.Error("reconcile: a container without a record is running; stop it with lxc-stop, then restart containerd-lite", "container", name, "lxc_path", m.opts.Runtime.Path)
			continue
		}
		if err := m.remove(name); err != nil {
			m.log.Error("reconcile: remove unrecorded container", "container", name, "error", err)
			continue
		}
		m.log.Warn("reconcile: removed a container that had no record", "container", name)
	}
	return nil
}

// remount restores a running container's image and overlay mounts that are missing, and
// removes overlay mounts no record knows; mounts already there are left as they are.
func (m *Manager) remount(rec store.Container) error {
	defer m.slock(rec.Name)()
	p := m.paths(rec.Name)
	before, err := mounts.Under(p.dir)
	if err != nil {
		return err
	}
	if err := m.mountImages(rec.Name, rec); err != nil {
		return err
	}
	for _, n := range slices.Sorted(maps.Keys(rec.Overlays)) {
		if err := m.mountOverlay(p, n, rec.Overlays[n]); err != nil {
			return err
		}
	}
	if ents, err := os.ReadDir(filepath.Join(p.media, "subcontainers")); err == nil {
		for _, e := range ents {
			if _, ok := rec.Overlays[e.Name()]; ok {
				continue
			}
			if ok, _ := mounts.IsMounted(filepath.Join(p.media, "subcontainers", e.Name())); ok {
				if err := m.unmountOverlay(p, e.Name()); err != nil {
					return err
				}
				m.log.Warn("reconcile: removed an overlay without a record", "container", rec.Name, "overlay", e.Name())
			}
		}
	}
	after, err := mounts.Under(p.dir)
	if err != nil {
		return err
	}
	if len(after) != len(before) {
		m.log.Warn("reconcile: repaired mounts", "container", rec.Name, "before", len(before), "after", len(after))
	}
	return nil
}
