package containers

import (
	"context"

	"hearth.dev/services/containerd-lite/internal/idmap"
	"hearth.dev/services/containerd-lite/internal/limits"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
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
	// DiskUsed and DiskSize are the package disk's, in bytes; DiskError says why they
	// could not be read.
	DiskUsed, DiskSize int64
	DiskError          string
	// IDs is the container's range of host ids.
	IDs idmap.Mapping
}

// ImageMount is one of the container's images.
type ImageMount struct {
	Name, Digest, Path string
	Mounted            bool
}

// VolumeInfo is one of the container's volumes.
type VolumeInfo struct{ Name, HostPath string }

// Details reports images, volumes, overlays, limits, the disk's usage and, for a running
// container, what its cgroup holds and uses.
func (m *Manager) Details(ctx context.Context, i Info) Details {
	t := m.treeOf(i.Container)
	d := Details{Limits: i.Limits, IDs: ids(i.Container)}
	for _, n := range sortedKeys(i.Images) {
		d.Images = append(d.Images, ImageMount{Name: n, Digest: i.Images[n], Path: ImagesDir + "/" + n, Mounted: i.State == lxcrt.Running && t.ImageMounted(n)})
	}
	for _, v := range i.Volumes {
		d.Volumes = append(d.Volumes, VolumeInfo{Name: v, HostPath: t.VolumePath(v)})
	}
	for _, n := range sortedKeys(i.Overlays) {
		d.Overlays = append(d.Overlays, overlayInfo(n, i.Overlays[n]))
	}
	var err error
	if i.State != lxcrt.Running {
		d.DiskSize, d.DiskError = i.Limits.DiskBytes, "the disk is mounted, and its usage measured, while the container runs"
	} else if d.DiskUsed, d.DiskSize, err = m.opts.Disks.Usage(i.Name); err != nil {
		d.DiskError = err.Error()
	}
	if i.State == lxcrt.Running {
		read := func(key string) (string, error) { return m.opts.Runtime.CgroupItem(i.Name, key) }
		if d.Cgroup, d.Usage, err = limits.ReadBack(read, m.opts.CgroupV2); err != nil {
			d.CgroupError = err.Error()
		}
	}
	return d
}
