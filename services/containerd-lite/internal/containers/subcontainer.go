package containers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/beneath"
	"hearth.dev/internal/errdefs"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/mounts"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Paths inside the container.
const (
	ImagesDir        = "/media/hearth/images"
	SubcontainersDir = "/media/hearth/subcontainers"
)

// openMedia opens the host side of the container's /media/hearth. Everything the host
// mounts for the container goes below it through descriptors opened beneath it, so a
// symlink the container plants there cannot send a mount anywhere else.
func openMedia(p paths) (int, error) {
	fd, err := unix.Open(p.media, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", p.media, err)
	}
	return fd, nil
}

// mountImages mounts each of the container's images twice: idmapped through a user
// namespace with the containers' mapping at a host-only path (the lower layer of its
// overlays), and bound from there, read-only, at /media/hearth/images/<name>. Mounts
// already there stay.
func (m *Manager) mountImages(name string, rec store.Container) error {
	if len(rec.Images) == 0 {
		return nil
	}
	userns := m.opts.Userns
	p := m.paths(name)
	media, err := openMedia(p)
	if err != nil {
		return err
	}
	defer unix.Close(media)
	if err := os.MkdirAll(p.images, 0o700); err != nil {
		return err
	}
	for _, img := range slices.Sorted(maps.Keys(rec.Images)) {
		hostT := filepath.Join(p.images, img)
		if err := os.MkdirAll(hostT, 0o755); err != nil {
			return err
		}
		if ok, err := mounts.IsMounted(hostT); err != nil {
			return err
		} else if !ok {
			if err := mounts.BindIDMapped(m.opts.Images.Rootfs(rec.Images[img]), hostT, userns, true); err != nil {
				return fmt.Errorf("container %q image %s: %w", name, img, err)
			}
		}
		inside := filepath.Join(p.media, "images", img)
		if ok, err := mounts.IsMounted(inside); err != nil {
			return err
		} else if ok {
			continue
		}
		t, err := beneath.OpenDir(media, "images/"+img, beneath.InRoot, &beneath.Owner{UID: m.opts.IDMap.RootUID(), GID: m.opts.IDMap.RootUID(), Mode: 0o755})
		if err != nil {
			return fmt.Errorf("container %q image %s: %w", name, img, err)
		}
		err = mounts.BindAt(hostT, t, true)
		unix.Close(t)
		if err != nil {
			return fmt.Errorf("container %q image %s: %w", name, img, err)
		}
	}
	return nil
}

// OverlayInfo is an overlay as the API reports it.
type OverlayInfo struct {
	Name string
	store.Overlay
	// Path inside the container.
	Path string
}

func overlayInfo(name string, o store.Overlay) OverlayInfo {
	return OverlayInfo{Name: name, Overlay: o, Path: SubcontainersDir + "/" + name}
}

// runningRecord reads a running container's record; callers hold its state lock.
func (m *Manager) runningRecord(name string) (store.Container, error) {
	rec, err := m.opts.Store.GetContainer(name)
	if err != nil {
		return rec, err
	}
	st, _, err := m.opts.Runtime.State(name)
	if err != nil {
		return rec, err
	}
	if st != lxcrt.Running {
		return rec, fmt.Errorf("container %q is %s: %w", name, st, errdefs.ErrFailedPrecondition)
	}
	return rec, nil
}

// CreateOverlay mounts an overlay of the container's image (lower) and a fresh upper
// layer at /media/hearth/subcontainers/<overlay>. It is idempotent for the same image.
func (m *Manager) CreateOverlay(ctx context.Context, container, image, overlay string) (OverlayInfo, error) {
	if err := validItem("overlay", overlay); err != nil {
		return OverlayInfo{}, err
	}
	defer m.slock(container)()
	rec, err := m.runningRecord(container)
	if err != nil {
		return OverlayInfo{}, err
	}
	if _, ok := rec.Images[image]; !ok {
		return OverlayInfo{}, fmt.Errorf("container %q has no image %q (it has: %s): %w", container, image, strings.Join(slices.Sorted(maps.Keys(rec.Images)), ", "), errdefs.ErrNotFound)
	}
	if o, ok := rec.Overlays[overlay]; ok {
		if o.Image != image {
			return OverlayInfo{}, fmt.Errorf("overlay %q exists over image %q, not %q: destroy it first: %w", overlay, o.Image, image, errdefs.ErrAlreadyExists)
		}
		return overlayInfo(overlay, o), nil
	}
	o := store.Overlay{Image: image}
	if err := m.mountOverlay(m.paths(container), overlay, o); err != nil {
		return OverlayInfo{}, err
	}
	if rec.Overlays == nil {
		rec.Overlays = map[string]store.Overlay{}
	}
	rec.Overlays[overlay] = o
	if err := m.opts.Store.PutContainer(rec); err != nil {
		return OverlayInfo{}, err
	}
	m.log.Info("overlay created", "container", container, "overlay", overlay, "image", image)
	return overlayInfo(overlay, o), nil
}

// mountOverlay mounts overlay o (and its binds) unless it is mounted already.
func (m *Manager) mountOverlay(p paths, name string, o store.Overlay) error {
	target := filepath.Join(p.media, "subcontainers", name)
	if ok, err := mounts.IsMounted(target); err != nil {
		return err
	} else if !ok {
		root := m.opts.IDMap.RootUID()
		dir := filepath.Join(p.overlays, name)
		upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
		for _, d := range []string{upper, work} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		if err := os.Chown(upper, root, root); err != nil {
			return err
		}
		media, err := openMedia(p)
		if err != nil {
			return err
		}
		defer unix.Close(media)
		t, err := beneath.OpenDir(media, "subcontainers/"+name, beneath.InRoot, &beneath.Owner{UID: root, GID: root, Mode: 0o755})
		if err != nil {
			return fmt.Errorf("overlay %q: %w", name, err)
		}
		defer unix.Close(t)
		if err := mounts.OverlayAt(filepath.Join(p.images, o.Image), upper, work, t); err != nil {
			return fmt.Errorf("overlay %q: %w", name, err)
		}
	}
	for _, b := range o.Binds {
		if err := m.bind(p, name, b); err != nil {
			return err
		}
	}
	return nil
}

// BindVolume binds the container's volume at path inside overlay sub. Symlinks in path
// resolve inside the subcontainer, as its processes see them; missing directories are made.
func (m *Manager) BindVolume(ctx context.Context, container, volume, sub, target string, readOnly bool) (OverlayInfo, error) {
	clean, err := checkInsidePath(target)
	if err != nil {
		return OverlayInfo{}, err
	}
	defer m.slock(container)()
	rec, err := m.runningRecord(container)
	if err != nil {
		return OverlayInfo{}, err
	}
	if !slices.Contains(rec.Volumes, volume) {
		return OverlayInfo{}, fmt.Errorf("container %q has no volume %q (it has: %s): %w", container, volume, strings.Join(rec.Volumes, ", "), errdefs.ErrNotFound)
	}
	o, ok := rec.Overlays[sub]
	if !ok {
		return OverlayInfo{}, fmt.Errorf("container %q has no overlay %q: create it first: %w", container, sub, errdefs.ErrNotFound)
	}
	b := store.Bind{Volume: volume, Path: clean, ReadOnly: readOnly}
	for _, have := range o.Binds {
		if have.Path == clean {
			if have != b {
				return OverlayInfo{}, fmt.Errorf("overlay %q already has volume %q at %s: %w", sub, have.Volume, clean, errdefs.ErrAlreadyExists)
			}
			return overlayInfo(sub, o), nil
		}
	}
	if err := m.bind(m.paths(container), sub, b); err != nil {
		return OverlayInfo{}, err
	}
	o.Binds = append(o.Binds, b)
	rec.Overlays[sub] = o
	if err := m.opts.Store.PutContainer(rec); err != nil {
		return OverlayInfo{}, err
	}
	m.log.Info("volume bound", "container", container, "volume", volume, "overlay", sub, "path", clean)
	return overlayInfo(sub, o), nil
}

// checkInsidePath accepts an absolute path without "..", other than "/".
func checkInsidePath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("path %q: give an absolute path inside the subcontainer: %w", p, errdefs.ErrInvalidArgument)
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		return "", fmt.Errorf("path %q: '..' is not allowed: %w", p, errdefs.ErrInvalidArgument)
	}
	c := path.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("path %q: a volume cannot replace the subcontainer's root: %w", p, errdefs.ErrInvalidArgument)
	}
	return c, nil
}

func (m *Manager) bind(p paths, sub string, b store.Bind) error {
	media, err := openMedia(p)
	if err != nil {
		return err
	}
	defer unix.Close(media)
	subFD, err := beneath.OpenDir(media, "subcontainers/"+sub, beneath.InRoot, nil)
	if err != nil {
		return fmt.Errorf("overlay %q: %w", sub, err)
	}
	defer unix.Close(subFD)
	root := m.opts.IDMap.RootUID()
	t, err := beneath.OpenDir(subFD, b.Path, beneath.InRoot, &beneath.Owner{UID: root, GID: root, Mode: 0o755})
	if err != nil {
		return fmt.Errorf("bind volume %q at %s: %w: %w", b.Volume, b.Path, err, errdefs.ErrInvalidArgument)
	}
	defer unix.Close(t)
	// Where the path really leads (symlinks resolved in the subcontainer): bound already?
	if real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", t)); err == nil {
		if ok, err := mounts.IsMounted(real); err != nil {
			return err
		} else if ok {
			return nil
		}
	}
	vol := m.VolumePath(p.container(), b.Volume)
	if err := mounts.BindAt(vol, t, b.ReadOnly); err != nil {
		return fmt.Errorf("bind volume %q at %s: %w", b.Volume, b.Path, err)
	}
	return nil
}

// DestroyOverlay unmounts an overlay with everything bound into it and drops its upper
// layer. A missing overlay is not an error.
func (m *Manager) DestroyOverlay(ctx context.Context, container, overlay string) error {
	if err := validItem("overlay", overlay); err != nil {
		return err
	}
	defer m.slock(container)()
	rec, err := m.opts.Store.GetContainer(container)
	if err != nil {
		return err
	}
	p := m.paths(container)
	if err := m.unmountOverlay(p, overlay); err != nil {
		return err
	}
	if _, ok := rec.Overlays[overlay]; ok {
		delete(rec.Overlays, overlay)
		if err := m.opts.Store.PutContainer(rec); err != nil {
			return err
		}
		m.log.Info("overlay destroyed", "container", container, "overlay", overlay)
	}
	return nil
}

func (m *Manager) unmountOverlay(p paths, overlay string) error {
	target := filepath.Join(p.media, "subcontainers", overlay)
	if _, err := mounts.UnmountAll(target); err != nil {
		return err
	}
	if left, err := mounts.Under(target); err != nil {
		return err
	} else if len(left) > 0 {
		return fmt.Errorf("overlay %q: %v still mounted (is something inside the container using it?): %w", overlay, left, errdefs.ErrFailedPrecondition)
	}
	if err := os.RemoveAll(filepath.Join(p.overlays, overlay)); err != nil {
		return err
	}
	// The empty mount point, inside the container's own layer; Remove never follows a symlink.
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		m.log.Warn("remove overlay mount point", "path", target, "error", err)
	}
	return nil
}

// ListOverlays reports the container's overlays.
func (m *Manager) ListOverlays(ctx context.Context, container string) ([]OverlayInfo, error) {
	rec, err := m.opts.Store.GetContainer(container)
	if err != nil {
		return nil, err
	}
	var out []OverlayInfo
	for _, n := range slices.Sorted(maps.Keys(rec.Overlays)) {
		out = append(out, overlayInfo(n, rec.Overlays[n]))
	}
	return out, nil
}
