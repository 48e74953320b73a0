package containers

import (
	"context"
	"maps"
	"path/filepath"
	"slices"

	"hearth.dev/services/containerd-lite/internal/limits"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/mounts"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Details is what inspect shows of a container beyond Info.
type Details struct {
	Images   []ImageMount
	Volumes  []VolumeInfo
	Overlays []OverlayInfo
	Limits   store.Limits
	// Cgroup and Usage are read from the running container's cgroup (zero when stopped).
	Cgroup store.Limits
	Usage  limits.Usage
	// CgroupError says why the cgroup could not be read.
	CgroupError string
}

// ImageMount is one of the container's images.
type ImageMount struct {
	Name, Digest, Path string
	Mounted            bool
}

// VolumeInfo is one of the container's volumes.
type VolumeInfo struct{ Name, HostPath string }

// Details reports images, volumes, overlays, limits and, for a running container, what
// its cgroup holds and uses.
func (m *Manager) Details(ctx context.Context, i Info) Details {
	p := m.paths(i.Name)
	d := Details{Limits: i.Limits}
	for _, n := range slices.Sorted(maps.Keys(i.Images)) {
		ok, _ := mounts.IsMounted(filepath.Join(p.media, "images", n))
		d.Images = append(d.Images, ImageMount{Name: n, Digest: i.Images[n], Path: ImagesDir + "/" + n, Mounted: ok})
	}
	for _, v := range i.Volumes {
		d.Volumes = append(d.Volumes, VolumeInfo{Name: v, HostPath: m.VolumePath(i.Name, v)})
	}
	for _, n := range slices.Sorted(maps.Keys(i.Overlays)) {
		d.Overlays = append(d.Overlays, overlayInfo(n, i.Overlays[n]))
	}
	if i.State == lxcrt.Running {
		read := func(key string) (string, error) { return m.opts.Runtime.CgroupItem(i.Name, key) }
		var err error
		if d.Cgroup, d.Usage, err = limits.ReadBack(read, m.opts.CgroupV2); err != nil {
			d.CgroupError = err.Error()
		}
	}
	return d
}
