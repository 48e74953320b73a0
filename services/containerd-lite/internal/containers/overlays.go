package containers

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/containerd-lite/internal/hostfs"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Paths inside the container.
const (
	ImagesDir        = hostfs.ImagesDir
	SubcontainersDir = hostfs.SubcontainersDir
)

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

// runningRecord reads a running container's record (callers changing it hold its state lock).
func (m *Manager) runningRecord(name string) (store.Container, error) {
	return m.recordIn(name, lxcrt.Running, "start it first")
}

// recordIn reads the record of a container that is in state want, or says what to do.
func (m *Manager) recordIn(name string, want lxcrt.State, fix string) (store.Container, error) {
	rec, err := m.opts.Records.GetContainer(name)
	if err != nil {
		return rec, err
	}
	st, _, err := m.opts.Runtime.State(name)
	if err != nil {
		return rec, err
	}
	if st != want {
		return rec, fmt.Errorf("container %q is %s: %s: %w", name, st, fix, errdefs.ErrFailedPrecondition)
	}
	return rec, nil
}

// CreateOverlay mounts an overlay of the container's image (lower) and a fresh upper
// layer at /media/hearth/subcontainers/<overlay>. It is idempotent for the same image. A
// container has at most MaxOverlays at once.
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
		return OverlayInfo{}, fmt.Errorf("container %q has no image %q (it has: %s): %w", container, image, strings.Join(sortedKeys(rec.Images), ", "), errdefs.ErrNotFound)
	}
	if o, ok := rec.Overlays[overlay]; ok {
		if o.Image != image {
			return OverlayInfo{}, fmt.Errorf("overlay %q exists over image %q, not %q: destroy it first: %w", overlay, o.Image, image, errdefs.ErrAlreadyExists)
		}
		return overlayInfo(overlay, o), nil
	}
	if len(rec.Overlays) >= m.opts.MaxOverlays {
		return OverlayInfo{}, fmt.Errorf("container %q has %d overlays, the most one container may have: destroy some first: %w", container, len(rec.Overlays), errdefs.ErrResourceExhausted)
	}
	o := store.Overlay{Image: image}
	if err := m.treeOf(rec).MountOverlay(overlay, image); err != nil {
		return OverlayInfo{}, err
	}
	if rec.Overlays == nil {
		rec.Overlays = map[string]store.Overlay{}
	}
	rec.Overlays[overlay] = o
	if err := m.opts.Records.PutContainer(rec); err != nil {
		return OverlayInfo{}, err
	}
	m.log.Info("overlay created", "container", container, "overlay", overlay, "image", image)
	return overlayInfo(overlay, o), nil
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
	if len(o.Binds) >= m.opts.MaxOverlays {
		return OverlayInfo{}, fmt.Errorf("overlay %q has %d volume binds, the most allowed: %w", sub, len(o.Binds), errdefs.ErrResourceExhausted)
	}
	if err := m.treeOf(rec).BindVolume(sub, volume, clean, readOnly); err != nil {
		return OverlayInfo{}, err
	}
	o.Binds = append(o.Binds, b)
	rec.Overlays[sub] = o
	if err := m.opts.Records.PutContainer(rec); err != nil {
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
	if len(p) > 4096 {
		return "", fmt.Errorf("path of %d bytes: too long: %w", len(p), errdefs.ErrInvalidArgument)
	}
	c := path.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("path %q: a volume cannot replace the subcontainer's root: %w", p, errdefs.ErrInvalidArgument)
	}
	return c, nil
}

// DestroyOverlay unmounts an overlay with everything bound into it and drops its upper
// layer. A missing overlay is not an error, and removes nothing.
func (m *Manager) DestroyOverlay(ctx context.Context, container, overlay string) error {
	if err := validItem("overlay", overlay); err != nil {
		return err
	}
	defer m.slock(container)()
	rec, err := m.opts.Records.GetContainer(container)
	if err != nil {
		return err
	}
	if _, ok := rec.Overlays[overlay]; !ok {
		return nil
	}
	if err := m.treeOf(rec).DestroyOverlay(overlay); err != nil {
		return err
	}
	delete(rec.Overlays, overlay)
	if err := m.opts.Records.PutContainer(rec); err != nil {
		return err
	}
	m.log.Info("overlay destroyed", "container", container, "overlay", overlay)
	return nil
}

// ListOverlays reports the container's overlays.
func (m *Manager) ListOverlays(ctx context.Context, container string) ([]OverlayInfo, error) {
	rec, err := m.opts.Records.GetContainer(container)
	if err != nil {
		return nil, err
	}
	var out []OverlayInfo
	for _, n := range slices.Sorted(maps.Keys(rec.Overlays)) {
		out = append(out, overlayInfo(n, rec.Overlays[n]))
	}
	return out, nil
}
