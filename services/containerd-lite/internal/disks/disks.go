// Package disks keeps each package's disk: an ext4 image (diskimg) at <dir>/<name>.img,
// mounted at <dir>/<name> while the package exists, holding its writable layer,
// subcontainer layers, volumes and logs. The directory is the host's alone (0700).
package disks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/containerd-lite/internal/diskimg"
	"hearth.dev/services/containerd-lite/internal/idmap"
)

// Disks are the packages' disks under one directory.
type Disks struct {
	dir string
}

// New returns the disks kept in dir, which is made if missing.
func New(dir string) (*Disks, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	return &Disks{dir: dir}, nil
}

func (d *Disks) image(name string) string { return filepath.Join(d.dir, name+".img") }

// Dir is where the package's disk is mounted.
func (d *Disks) Dir(name string) string { return filepath.Join(d.dir, name) }

// Exists reports whether the package has a disk.
func (d *Disks) Exists(name string) bool {
	_, err := os.Lstat(d.image(name))
	return err == nil
}

// Open makes the package's disk of size bytes if it has none, grows it to size when it is
// smaller (offline when the kernel refuses to grow it mounted: the package must then be
// stopped), mounts it, and returns where. The disk's root belongs to the host; the
// container's root owns what is made in it for it.
func (d *Disks) Open(name string, size int64, _ idmap.Mapping) (string, error) {
	img, mnt := d.image(name), d.Dir(name)
	if !d.Exists(name) {
		if err := diskimg.Create(img, size, 0, 0); err != nil {
			return "", err
		}
	}
	if err := os.Mkdir(mnt, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	if fi, err := os.Stat(img); err == nil && size > fi.Size()+diskimg.BlockSize-1 {
		if err := d.grow(name, size); err != nil {
			return "", err
		}
	}
	if _, err := diskimg.Mount(img, mnt); err != nil {
		return "", err
	}
	return mnt, nil
}

// Grow makes the disk size bytes: online while mounted, or, on a host whose kernel
// refuses that to containerd-lite (no CAP_SYS_RESOURCE), offline, which needs the disk
// unmounted (so its container stopped).
func (d *Disks) Grow(name string, size int64) error { return d.grow(name, size) }

func (d *Disks) grow(name string, size int64) error {
	img, mnt := d.image(name), d.Dir(name)
	if _, _, err := diskimg.LoopDevice(mnt); err == nil {
		err := diskimg.Grow(img, mnt, size)
		if err == nil || !errors.Is(err, errdefs.ErrPermissionDenied) {
			return err
		}
		// Offline then: unmount, grow, and mount again below (Open) or here.
		if err := diskimg.Unmount(mnt); err != nil {
			return fmt.Errorf("grow the disk of %s: %w", name, err)
		}
		if err := diskimg.GrowOffline(img, size); err != nil {
			if _, merr := diskimg.Mount(img, mnt); merr != nil {
				return errors.Join(err, merr)
			}
			return fmt.Errorf("grow the disk of %s (stop it first if it runs): %w", name, err)
		}
		_, err = diskimg.Mount(img, mnt)
		return err
	}
	return diskimg.GrowOffline(img, size)
}

// Usage reports the bytes used and the size of a mounted disk.
func (d *Disks) Usage(name string) (used, size int64, err error) {
	return diskimg.Usage(d.Dir(name))
}

// Close unmounts the package's disk.
func (d *Disks) Close(name string) error { return diskimg.Unmount(d.Dir(name)) }

// Purge unmounts and deletes the package's disk with everything on it.
func (d *Disks) Purge(name string) error {
	if err := diskimg.Unmount(d.Dir(name)); err != nil {
		return err
	}
	if err := os.Remove(d.image(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(d.Dir(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the mount point of %s's disk: %w", name, err)
	}
	return nil
}

// Names lists the packages that have disks.
func (d *Disks) Names() ([]string, error) {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".img"); ok && e.Type().IsRegular() {
			out = append(out, n)
		}
	}
	return out, nil
}
