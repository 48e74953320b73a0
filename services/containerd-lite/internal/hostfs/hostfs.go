// Package hostfs is the host's side of a container's file trees: the directories
// containerd-lite makes for a container, what it mounts into it, and their removal.
//
// A container's root may change anything it can write, at any moment, so every path is
// one of two kinds, and the host acts on each kind only in the ways listed here.
//
// Host-only (owned by the host's root, not writable by any container id; a container can
// neither create, rename, replace nor remove an entry in them):
//
//	<dir>/                          the container's directory (0711: LXC's path to the root)
//	<dir>/rootfs                    mount point of the root overlay
//	<dir>/base                      mount point of the base rootfs, idmapped (the overlay's lower)
//	<dir>/images/<image>            the images, idmapped (lowers of the overlays)
//	<dir>/media/                    brought in at /media/hearth (rbind, rslave); shared on the host
//	<dir>/media/host/               host.sock and package.json, for the container's root group
//	<dir>/media/{rpc,images/<i>,subcontainers/<o>}   mount points
//	<data>/ <data>/layer <data>/overlays <data>/volumes   the package's data (its disk)
//
// Container-writable: <dir>/rpc/ (guestd's sockets; brought in at /media/hearth/rpc), the
// root overlay's upper layer (<data>/layer/upper), each subcontainer's upper layer
// (<data>/overlays/<o>/upper) and everything seen through the overlays, and the contents
// of each volume (<data>/volumes/<v>/...).
//
// Operations, all of them:
//   - mkdir, chown, chmod, create and write files, bind a socket: host-only paths only,
//     by path (package.json is written aside and renamed; host.sock is bound in media/host).
//   - mount: the root overlay, the idmapped base and images, and the shared media bind at
//     host-only paths; images and overlays attached to mount points in media/ through
//     descriptors; a volume bound into a subcontainer at a path the container chose,
//     through a descriptor opened with openat2(RESOLVE_IN_ROOT) from the overlay's root,
//     so the path resolves as the subcontainer sees it and never leaves it.
//   - unmount: lazy (MNT_DETACH, UMOUNT_NOFOLLOW) of host-only mount points only; mounts
//     made inside a container-writable tree go with the mount they are in, never by a
//     path the container could have changed.
//   - remove: os.RemoveAll of host-only directories once nothing is mounted below them
//     (it walks with openat and unlinkat and never follows a symlink, so a link the
//     container planted in an upper layer or a volume is removed, not followed).
//   - the rpc directory: sockets are removed with unlinkat on a descriptor of it, and
//     guestd.sock is reached only by opening it through that descriptor with
//     openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), checking that it is a socket owned by
//     the container's root, and connecting to /proc/self/fd/N: a symlink, a FIFO or another
//     container's socket planted there is refused.
package hostfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/atomicfile"
	"hearth.dev/internal/beneath"
	"hearth.dev/internal/errdefs"
	"hearth.dev/services/containerd-lite/internal/idmap"
	"hearth.dev/services/containerd-lite/internal/mounts"
)

// Names inside the container.
const (
	// Media is where <dir>/media appears inside.
	Media = "/media/hearth"
	// ImagesDir and SubcontainersDir hold images and overlays inside.
	ImagesDir        = Media + "/images"
	SubcontainersDir = Media + "/subcontainers"
	// HostSocket and Bundle are in the host-only directory.
	HostSocket = Media + "/host/host.sock"
	Bundle     = Media + "/host/package.json"
	// GuestSocket is guestd's, in the container's rpc directory.
	GuestSocket = Media + "/rpc/guestd.sock"
	// Assets are the package's assets, read-only.
	Assets = Media + "/assets"
)

// Tree is one container's trees on the host.
type Tree struct {
	// Dir is the container's directory; Data its data (the package's disk).
	Dir, Data string
	// IDs is the container's id mapping.
	IDs idmap.Mapping
}

// Name is the container's name.
func (t Tree) Name() string { return filepath.Base(t.Dir) }

// Paths on the host.
func (t Tree) Rootfs() string     { return filepath.Join(t.Dir, "rootfs") }
func (t Tree) MediaDir() string   { return filepath.Join(t.Dir, "media") }
func (t Tree) HostDir() string    { return filepath.Join(t.Dir, "media", "host") }
func (t Tree) RPCDir() string     { return filepath.Join(t.Dir, "rpc") }
func (t Tree) LXCLog() string     { return filepath.Join(t.Dir, "lxc.log") }
func (t Tree) ConsoleLog() string { return filepath.Join(t.Dir, "console.log") }
func (t Tree) HostSocket() string { return filepath.Join(t.HostDir(), filepath.Base(HostSocket)) }
func (t Tree) base() string       { return filepath.Join(t.Dir, "base") }
func (t Tree) upper() string      { return filepath.Join(t.Data, "layer", "upper") }
func (t Tree) work() string       { return filepath.Join(t.Data, "layer", "work") }
func (t Tree) image(n string) string {
	return filepath.Join(t.Dir, "images", n)
}
func (t Tree) overlayLayers(n string) string { return filepath.Join(t.Data, "overlays", n) }

// VolumePath is the host directory of one of the container's volumes.
func (t Tree) VolumePath(v string) string { return filepath.Join(t.Data, "volumes", v) }

// ImageMountPoint and OverlayMountPoint are host paths of mount points in media/.
func (t Tree) ImageMountPoint(n string) string {
	return filepath.Join(t.MediaDir(), "images", n)
}
func (t Tree) OverlayMountPoint(n string) string {
	return filepath.Join(t.MediaDir(), "subcontainers", n)
}

type dirSpec struct {
	path      string
	mode      os.FileMode
	uid, gid  int
	mustBeNew bool
}

// Create makes the container's directory on the host. Its data (the package's disk) gets
// its directories from MakeData, when the disk is mounted.
func (t Tree) Create() error {
	root := t.IDs.RootUID()
	return makeDirs([]dirSpec{
		// LXC reaches the root file system as the container's root: traversable.
		{t.Dir, 0o711, 0, 0, true},
		{t.Rootfs(), 0o755, 0, 0, false},
		{t.base(), 0o755, 0, 0, false},
		{filepath.Join(t.Dir, "images"), 0o700, 0, 0, false},
		{t.MediaDir(), 0o755, 0, 0, false},
		// The container's root reaches host.sock through its group.
		{t.HostDir(), 0o750, 0, root, false},
		{filepath.Join(t.MediaDir(), "rpc"), 0o755, 0, 0, false},
		{filepath.Join(t.MediaDir(), "assets"), 0o755, 0, 0, false},
		{filepath.Join(t.MediaDir(), "images"), 0o755, 0, 0, false},
		{filepath.Join(t.MediaDir(), "subcontainers"), 0o755, 0, 0, false},
		{t.RPCDir(), 0o750, root, root, false},
	}, true)
}

// MakeData makes the directories of the container's data that are missing: its writable
// layer, its overlays' layers and its volumes' parent. The data directory itself must exist
// (the caller mounts the package's disk). Those there already are left as they are: the
// writable layer's root is the container's root directory, its owner and mode the
// container's. Paths are safe here: every directory on them is the host's (the disks'
// directory, 0700, the disk's root, and layer/, overlays/, volumes/, root's and 0700; none
// is mounted in the container), so the container can change what is inside its writable
// layer and volumes, never which directory is at these names.
func (t Tree) MakeData() error {
	return makeDirs([]dirSpec{
		{filepath.Join(t.Data, "layer"), 0o700, 0, 0, false},
		{t.upper(), 0o755, t.IDs.RootUID(), t.IDs.RootUID(), false},
		{t.work(), 0o700, 0, 0, false},
		{filepath.Join(t.Data, "overlays"), 0o700, 0, 0, false},
		{filepath.Join(t.Data, "volumes"), 0o700, 0, 0, false},
	}, false)
}

// makeDirs makes dirs in order, each owned and with the mode of its spec; one there
// already must be a directory, and gets its spec's owner and mode too if fixExisting.
func makeDirs(dirs []dirSpec, fixExisting bool) error {
	for _, d := range dirs {
		err := os.Mkdir(d.path, d.mode)
		if errors.Is(err, os.ErrExist) && !d.mustBeNew {
			if fi, lerr := os.Lstat(d.path); lerr != nil || !fi.IsDir() {
				return fmt.Errorf("%s exists and is not a directory", d.path)
			}
			if !fixExisting {
				continue
			}
		} else if err != nil {
			return fmt.Errorf("create %s: %w", d.path, err)
		}
		if err := os.Chown(d.path, d.uid, d.gid); err != nil {
			return fmt.Errorf("chown %s: %w", d.path, err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return err
		}
	}
	return nil
}

// MountRoot mounts the base idmapped at <dir>/base, the root overlay (base below, the
// container's layer above) at <dir>/rootfs, and makes media/ a shared mount so that
// what is mounted below it later reaches the running container. Mounts already there stay.
func (t Tree) MountRoot(baseRootfs string, userns int) error {
	if err := mountOnce(t.base(), func() error { return mounts.BindIDMapped(baseRootfs, t.base(), userns, true) }); err != nil {
		return fmt.Errorf("container %s: base rootfs: %w", t.Name(), err)
	}
	if err := mountOnce(t.Rootfs(), func() error { return mounts.Overlay(t.base(), t.upper(), t.work(), t.Rootfs()) }); err != nil {
		return fmt.Errorf("container %s: root: %w", t.Name(), err)
	}
	return mountOnce(t.MediaDir(), func() error { return mounts.BindShared(t.MediaDir()) })
}

func mountOnce(target string, mount func() error) error {
	ok, err := mounts.IsMountPoint(target)
	if err != nil || ok {
		return err
	}
	return mount()
}

// MountImage mounts the image stored at src idmapped and read-only at a host-only path,
// the lower layer of its overlays, and binds it at /media/hearth/images/<name>.
func (t Tree) MountImage(name, src string, userns int) error {
	hostT := t.image(name)
	if err := os.Mkdir(hostT, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := mountOnce(hostT, func() error { return mounts.BindIDMapped(src, hostT, userns, true) }); err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	inside := t.ImageMountPoint(name)
	if err := os.Mkdir(inside, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return mountOnce(inside, func() error {
		fd, err := openHostOnly(inside)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return mounts.BindAt(hostT, fd, true)
	})
}

// MountAssets binds the package's assets (a host directory) read-only at
// /media/hearth/assets; assets already mounted stay.
func (t Tree) MountAssets(src string) error {
	target := filepath.Join(t.MediaDir(), "assets")
	if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return mountOnce(target, func() error {
		fd, err := openHostOnly(target)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return mounts.BindAt(src, fd, true)
	})
}

// ImageMounted reports whether the image is mounted inside.
func (t Tree) ImageMounted(name string) bool {
	ok, _ := mounts.IsMountPoint(t.ImageMountPoint(name))
	return ok
}

// openHostOnly opens a host-only directory for a mount onto it; a symlink is refused
// (none can be there, so one would be a bug worth failing on).
func openHostOnly(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	return fd, nil
}

// MountOverlay mounts a subcontainer root at /media/hearth/subcontainers/<name>: the
// container's image below and a fresh ephemeral layer in its data above. An overlay
// already mounted stays.
func (t Tree) MountOverlay(name, image string) error {
	target := t.OverlayMountPoint(name)
	if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return mountOnce(target, func() error {
		dir := t.overlayLayers(name)
		upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
		// A layer left by a run that ended without unmounting (a power cut) was never
		// synced: it is not to be trusted, and the next run starts fresh anyway.
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("overlay %q: drop the layer a previous run left: %w", name, err)
		}
		if err := os.MkdirAll(work, 0o700); err != nil {
			return err
		}
		if err := os.Mkdir(upper, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		root := t.IDs.RootUID()
		if err := os.Lchown(upper, root, root); err != nil {
			return err
		}
		fd, err := openHostOnly(target)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := mounts.OverlayAt(t.image(image), upper, work, fd); err != nil {
			return fmt.Errorf("overlay %q: %w", name, err)
		}
		return nil
	})
}

// OverlayMounted reports whether the overlay is mounted.
func (t Tree) OverlayMounted(name string) (bool, error) {
	return mounts.IsMountPoint(t.OverlayMountPoint(name))
}

// MountedOverlays lists the overlays mounted now.
func (t Tree) MountedOverlays() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(t.MediaDir(), "subcontainers"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if ok, _ := t.OverlayMounted(e.Name()); ok {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// BindVolume binds volume at path inside overlay sub. Symlinks in path resolve inside the
// subcontainer, as its processes see them; missing directories are made, owned by the
// container's root. A volume already bound where path leads stays.
func (t Tree) BindVolume(sub, volume, path string, readOnly bool) error {
	subFD, err := openHostOnly(t.OverlayMountPoint(sub))
	if err != nil {
		return fmt.Errorf("overlay %q: %w", sub, err)
	}
	defer unix.Close(subFD)
	if ok, err := mounts.IsMountRootFD(subFD); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("overlay %q is not mounted: %w", sub, errdefs.ErrFailedPrecondition)
	}
	root := t.IDs.RootUID()
	fd, err := beneath.OpenDir(subFD, path, beneath.InRoot, &beneath.Owner{UID: root, GID: root, Mode: 0o755})
	if err != nil {
		return fmt.Errorf("bind volume %q at %s: %w: %w", volume, path, err, errdefs.ErrInvalidArgument)
	}
	defer unix.Close(fd)
	if ok, err := mounts.IsMountRootFD(fd); err != nil {
		return err
	} else if ok {
		return nil
	}
	if err := mounts.BindAt(t.VolumePath(volume), fd, readOnly); err != nil {
		return fmt.Errorf("bind volume %q at %s: %w", volume, path, err)
	}
	return nil
}

// DestroyOverlay unmounts an overlay with everything bound into it and drops its layer.
// A missing overlay removes nothing.
func (t Tree) DestroyOverlay(name string) error {
	target := t.OverlayMountPoint(name)
	if err := mounts.Detach(target); err != nil {
		return err
	}
	if err := os.RemoveAll(t.overlayLayers(name)); err != nil {
		return err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove overlay mount point: %w", err)
	}
	return nil
}

// Unmount undoes every mount of a stopped container: media/ with the images, overlays
// and binds below it, then the images, the root and the base. The overlays' layers go
// too: they are ephemeral.
func (t Tree) Unmount() error {
	var errs []error
	// The mount points in media/ (host-only) first: they go with media/ when it is a
	// mount, but a failed start may have mounted them before it.
	var targets []string
	for _, sub := range []string{"subcontainers", "images"} {
		if ents, err := os.ReadDir(filepath.Join(t.MediaDir(), sub)); err == nil {
			for _, e := range ents {
				targets = append(targets, filepath.Join(t.MediaDir(), sub, e.Name()))
			}
		}
	}
	targets = append(targets, filepath.Join(t.MediaDir(), "assets"), t.MediaDir())
	if ents, err := os.ReadDir(filepath.Join(t.Dir, "images")); err == nil {
		for _, e := range ents {
			targets = append(targets, t.image(e.Name()))
		}
	}
	targets = append(targets, t.Rootfs(), t.base())
	for _, p := range targets {
		if err := mounts.Detach(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := t.clearOverlayLayers(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (t Tree) clearOverlayLayers() error {
	dir := filepath.Join(t.Data, "overlays")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	if ents, err := os.ReadDir(filepath.Join(t.MediaDir(), "subcontainers")); err == nil {
		for _, e := range ents {
			_ = os.Remove(t.OverlayMountPoint(e.Name())) // empty mount points
		}
	}
	return errors.Join(errs...)
}

// Mounted lists what is mounted at or below the container's directory.
func (t Tree) Mounted() ([]string, error) { return mounts.Under(t.Dir) }

// Remove deletes the container's directory and its layers (not its volumes), once
// nothing is mounted below it: removing through a mount would reach other trees.
func (t Tree) Remove() error {
	left, err := mounts.Under(t.Dir)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("container %s: %v still mounted; not removing its directory", t.Name(), left)
	}
	if err := os.RemoveAll(t.Dir); err != nil {
		return fmt.Errorf("remove %s: %w", t.Dir, err)
	}
	for _, d := range []string{filepath.Join(t.Data, "layer"), filepath.Join(t.Data, "overlays")} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove %s: %w", d, err)
		}
	}
	return nil
}

// WriteBundle puts the package for guestd in the host-only directory, readable by the
// container's root group; nil data removes it. Each start writes it again, just before
// the container's init reads it, so it is not waited for on the disk: after a crash of the
// machine the container is stopped, and its next start writes it anew.
func (t Tree) WriteBundle(data []byte) error {
	p := filepath.Join(t.HostDir(), filepath.Base(Bundle))
	if data == nil {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	return atomicfile.ReplaceOwned(p, data, 0o640, 0, t.IDs.RootUID())
}

// MakeVolume makes a volume owned by the container's root, so that ids inside map
// straight through (uid 999 inside is the range's 999th id here). It reports whether the
// volume was there already.
func (t Tree) MakeVolume(name string) (existed bool, err error) {
	p := t.VolumePath(name)
	err = os.Mkdir(p, 0o755)
	if errors.Is(err, os.ErrExist) {
		fi, lerr := os.Lstat(p)
		if lerr != nil || !fi.IsDir() {
			return false, fmt.Errorf("volume %s: %s is not a directory", name, p)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("create volume %s: %w", name, err)
	}
	root := t.IDs.RootUID()
	if err := os.Lchown(p, root, root); err != nil {
		return false, fmt.Errorf("chown volume %s: %w", name, err)
	}
	return false, nil
}

// ClearSockets removes the sockets left in the rpc directory, through a descriptor of it.
func (t Tree) ClearSockets() error {
	fd, err := unix.Open(t.RPCDir(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", t.RPCDir(), err)
	}
	dir := os.NewFile(uintptr(fd), t.RPCDir())
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFSOCK {
			if err := unix.Unlinkat(fd, n, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("remove %s/%s: %w", t.RPCDir(), n, err))
			}
		}
	}
	return errors.Join(errs...)
}
