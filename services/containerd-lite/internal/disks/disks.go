// Package disks keeps each package's disk: an ext4 image (diskimg) at <dir>/<name>.img,
// mounted at <dir>/<name> while the package exists, holding its writable layer,
// subcontainer layers, volumes and logs. The directory is the host's alone (0700). New
// disks are copies of templates kept in <dir>/.templates, host-only too: a name no
// package can have (package names start with a letter or a digit), and no container's
// mount reaches it. One disk of each template is made ahead there (a spare), so that a
// new disk is most often a rename.
package disks

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/containerd-lite/internal/diskimg"
	"hearth.dev/services/containerd-lite/internal/idmap"
)

// Disks are the packages' disks under one directory.
type Disks struct {
	dir       string
	templates *diskimg.Templates
}

// templatesDir is where, under the disks' directory, the disk templates are kept.
const templatesDir = ".templates"

// New returns the disks kept in dir, which is made if missing. log is told of templates
// found unusable.
func New(dir string, log *slog.Logger) (*Disks, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	tpl := diskimg.NewTemplates(filepath.Join(dir, templatesDir), diskimg.DefaultKeep, log).WithSpares()
	return &Disks{dir: dir, templates: tpl}, nil
}

// Wait waits for the disks being made ahead (the templates' spares) in the background.
func (d *Disks) Wait() { d.templates.Wait() }

func (d *Disks) image(name string) string { return filepath.Join(d.dir, name+".img") }

// Dir is where the package's disk is mounted.
func (d *Disks) Dir(name string) string { return filepath.Join(d.dir, name) }

// Exists reports whether the package has a disk.
func (d *Disks) Exists(name string) bool {
	_, err := os.Lstat(d.image(name))
	return err == nil
}

// Open makes the package's disk of size bytes if it has none, grows it to size when it is
// smaller, mounts it, and returns where. Growth is online when the disk is mounted and the
// kernel lets containerd-lite resize a mounted ext4 (CAP_SYS_RESOURCE); otherwise the disk
// is unmounted and grown offline, which needs its container stopped. The disk's root
// belongs to the host; the container's root owns what is made in it for it.
func (d *Disks) Open(name string, size int64, _ idmap.Mapping) (string, error) {
	img, mnt := d.image(name), d.Dir(name)
	if err := d.Make(name, size); err != nil {
		return "", err
	}
	if err := os.Mkdir(mnt, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	if d.smaller(name, size) {
		err := d.Grow(name, size)
		if errors.Is(err, errdefs.ErrPermissionDenied) || errors.Is(err, errdefs.ErrFailedPrecondition) {
			if err := diskimg.Unmount(mnt); err != nil {
				return "", fmt.Errorf("grow the disk of %s offline: %w", name, err)
			}
			err = diskimg.GrowOffline(img, size)
		}
		if err != nil {
			return "", err
		}
	}
	if _, err := diskimg.Mount(img, mnt); err != nil {
		return "", err
	}
	d.templates.Mounted(img) // the spare after it, if it was one, is made now
	return mnt, nil
}

// Make makes the package's disk of size bytes if it has none, and leaves it unmounted.
func (d *Disks) Make(name string, size int64) error {
	if d.Exists(name) {
		return nil
	}
	return d.templates.Create(d.image(name), size, 0, 0)
}

// smaller reports whether the disk's image is smaller than size.
func (d *Disks) smaller(name string, size int64) bool {
	fi, err := os.Stat(d.image(name))
	return err == nil && size-size%diskimg.BlockSize > fi.Size()
}

// Grow makes a mounted disk size bytes, online. It fails with errdefs.ErrPermissionDenied
// where the kernel refuses that to containerd-lite (no CAP_SYS_RESOURCE), and with
// ErrFailedPrecondition when the disk is not mounted: Open grows it then.
func (d *Disks) Grow(name string, size int64) error {
	img, mnt := d.image(name), d.Dir(name)
	if !d.smaller(name, size) {
		return nil
	}
	if _, _, err := diskimg.LoopDevice(mnt); err != nil {
		return fmt.Errorf("the disk of %s is not mounted; it grows when it is next opened: %w", name, errdefs.ErrFailedPrecondition)
	}
	return diskimg.Grow(img, mnt, size)
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
