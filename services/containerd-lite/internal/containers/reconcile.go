package containers

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Reconcile compares the stored records with the containers LXC knows, the disks and the
// mounts that exist, and repairs the difference: running containers are adopted (their
// host.sock served again, missing mounts restored), stopped ones lose leftover mounts,
// and LXC definitions, directories or disks without a record are removed when stopped.
// It logs every repair.
func (m *Manager) Reconcile(ctx context.Context) error {
	recs, err := m.opts.Records.ListContainers()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, rec := range recs {
		known[rec.Name] = true
	}
	// Containers are reconciled side by side: adopting one is mostly waiting (on LXC's
	// command socket, on netd), and containerd-lite serves only once all are done.
	start := time.Now()
	sem := make(chan struct{}, reconcileWorkers())
	var wg sync.WaitGroup
	for _, rec := range recs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// One container's trouble (anything its root planted) must not keep
			// containerd-lite from serving the others.
			if err := m.reconcileOne(ctx, rec); err != nil {
				m.log.Error("reconcile: container left as it is", "container", rec.Name, "error", err)
			}
		}()
	}
	wg.Wait()
	m.log.Info("reconcile: containers done", "containers", len(recs), "workers", cap(sem), "took", time.Since(start).Round(time.Millisecond))
	kept, err := m.opts.Records.ListKept()
	if err != nil {
		return err
	}
	for _, k := range kept {
		if known[k.Name] {
			// A delete stopped between its steps; the record wins.
			m.log.Warn("reconcile: kept volumes of a container that exists; forgetting the kept record", "container", k.Name)
			if err := m.opts.Records.DeleteKept(k.Name); err != nil {
				return err
			}
			continue
		}
		known[k.Name] = true
		if err := m.opts.Disks.Close(k.Name); err != nil {
			m.log.Warn("reconcile: unmount a kept disk", "container", k.Name, "error", err)
		}
	}
	// Definitions, directories and disks nobody recorded: a crash between steps of Create
	// or Delete.
	orphans := slices.Clone(m.opts.Runtime.Defined())
	if ents, err := os.ReadDir(filepath.Join(m.opts.StateDir, "containers")); err == nil {
		for _, e := range ents {
			orphans = append(orphans, e.Name())
		}
	}
	if names, err := m.opts.Disks.Names(); err == nil {
		orphans = append(orphans, names...)
	} else {
		m.log.Error("reconcile: list disks", "error", err)
	}
	slices.Sort(orphans)
	for _, name := range slices.Compact(orphans) {
		if known[name] {
			continue
		}
		st, _, err := m.opts.Runtime.State(name)
		if err != nil {
			return err
		}
		if st != lxcrt.Stopped && st != lxcrt.Missing {
			m.log.Error("reconcile: a container without a record is running; stop it with lxc-stop, then restart containerd-lite", "container", name)
			continue
		}
		// Its id range is unknown; a tree of the lowest range is enough to unmount and remove.
		if err := m.remove(store.Container{Name: name}); err != nil {
			m.log.Error("reconcile: remove unrecorded container", "container", name, "error", err)
			continue
		}
		if err := m.opts.Disks.Purge(name); err != nil {
			m.log.Error("reconcile: remove an unrecorded disk", "container", name, "error", err)
			continue
		}
		m.log.Warn("reconcile: removed a container that had no record", "container", name)
	}
	return nil
}

// reconcileWorkers is how many containers Reconcile handles at once.
func reconcileWorkers() int { return max(4, 4*runtime.NumCPU()) }

func (m *Manager) reconcileOne(ctx context.Context, rec store.Container) error {
	sp := newSteps()
	t := m.treeOf(rec)
	// The LXC configuration is written without waiting for the disk (lxcrt.Define): a
	// power cut may have left it old or empty. The record says what it is.
	if ok, err := m.opts.Runtime.Current(m.lxcConfig(rec, t)); err != nil || !ok {
		if err := m.define(rec, t); err != nil {
			return err
		}
		m.log.Warn("reconcile: wrote the container's LXC configuration again: it was not what its record says (the machine stopped before it reached the disk)", "container", rec.Name)
	}
	sp.done("definition")
	st, pid, err := m.opts.Runtime.State(rec.Name)
	if err != nil {
		return err
	}
	sp.done("state")
	if st == lxcrt.Frozen {
		// Frozen by a backup that did not finish (containerd-lite died reading it).
		if err := m.opts.Runtime.Unfreeze(rec.Name); err != nil {
			return err
		}
		m.log.Warn("reconcile: thawed a container a backup had frozen", "container", rec.Name)
		st = lxcrt.Running
	}
	switch st {
	case lxcrt.Running:
		if _, err := m.opts.Disks.Open(rec.Name, rec.Limits.DiskBytes, ids(rec)); err != nil {
			m.log.Error("reconcile: disk of a running container", "container", rec.Name, "error", err)
		}
		sp.done("disk")
		if err := m.opts.Hosts.Serve(rec.Name, t.HostSocket(), ids(rec).RootUID()); err != nil {
			return err
		}
		sp.done("host_sock")
		if err := m.remount(rec, t); err != nil {
			m.log.Error("reconcile: restore mounts", "container", rec.Name, "error", err)
		}
		sp.done("mounts")
		addr, err := m.attach(ctx, rec, pid)
		sp.done("attach")
		if err != nil {
			m.log.Error("reconcile: attach to netd", "container", rec.Name, "error", err)
		} else {
			m.expose(ctx, rec)
			if addr != rec.Address {
				if _, err := m.update(rec.Name, func(r *store.Container) { r.Address = addr }); err != nil {
					return err
				}
			}
		}
		sp.done("expose")
		m.log.Info("reconcile: adopted running container", append([]any{"container", rec.Name, "init_pid", pid, "overlays", len(rec.Overlays)}, sp.log()...)...)
	case lxcrt.Stopped:
		before, _ := t.Mounted()
		m.teardown(rec)
		if len(before) > 0 {
			m.log.Warn("reconcile: removed mounts of a stopped container", "container", rec.Name, "targets", before)
		}
	case lxcrt.Missing:
		m.log.Error("reconcile: container has a record but no LXC definition; delete it and create it again", "container", rec.Name)
	default:
		m.log.Warn("reconcile: container in transition", "container", rec.Name, "state", st)
	}
	return nil
}

// remount restores a running container's image and overlay mounts that are missing, and
// removes overlay mounts no record knows; mounts already there are left as they are.
func (m *Manager) remount(rec store.Container, t Tree) error {
	defer m.slock(rec.Name)()
	if err := m.mountAll(rec, t, newSteps()); err != nil {
		return err
	}
	repaired := 0
	for _, n := range sortedKeys(rec.Overlays) {
		o := rec.Overlays[n]
		if ok, _ := t.OverlayMounted(n); !ok {
			repaired++
		}
		if err := t.MountOverlay(n, o.Image); err != nil {
			return err
		}
		for _, b := range o.Binds {
			if err := t.BindVolume(n, b.Volume, b.Path, b.ReadOnly); err != nil {
				return err
			}
		}
	}
	mounted, err := t.MountedOverlays()
	if err != nil {
		return err
	}
	for _, n := range mounted {
		if _, ok := rec.Overlays[n]; ok {
			continue
		}
		if err := t.DestroyOverlay(n); err != nil {
			return err
		}
		m.log.Warn("reconcile: removed an overlay without a record", "container", rec.Name, "overlay", n)
	}
	if repaired > 0 {
		m.log.Warn("reconcile: remounted overlays", "container", rec.Name, "overlays", repaired)
	}
	return nil
}
