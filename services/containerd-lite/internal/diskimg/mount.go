package diskimg

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/containerd-lite/internal/mounts"
)

// Mount mounts the image at path on the directory target (nodev, nosuid, exec) and returns
// the loop device it is on. An image already mounted at target is left as it is. An image
// still attached to a loop device but mounted nowhere here (its mount was detached lazily
// while files were open in it) is mounted from that device: the kernel hands back the same
// file system. An image mounted at another target is refused.
func Mount(path, target string) (string, error) {
	img, st, err := openImage(path)
	if err != nil {
		return "", err
	}
	defer img.Close()
	tfd, err := unix.Open(target, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("mount point %s: %w", target, kind(err))
	}
	defer unix.Close(tfd)

	s, err := probe(tfd)
	if err != nil {
		return "", fmt.Errorf("mount point %s: %w", target, err)
	}
	if s.mounted {
		if s.loop != "" && s.fsRoot {
			ok, err := backs(s.loop, st)
			if err != nil {
				return "", err
			}
			if ok {
				return s.loop, nil
			}
		}
		return "", fmt.Errorf("mount point %s already has another file system mounted: unmount it first: %w", target, errdefs.ErrFailedPrecondition)
	}

	dev, err := findLoop(st)
	if err != nil {
		return "", fmt.Errorf("disk image %s: look for its loop device: %w", path, err)
	}
	if dev != "" {
		if where, err := mountedAt(dev); err != nil {
			return "", err
		} else if where != "" {
			return "", fmt.Errorf("disk image %s is already mounted at %s (on %s): unmount it there first: %w",
				path, where, dev, errdefs.ErrFailedPrecondition)
		}
		// A device still attached but mounted nowhere is most often one whose last
		// (lazily detached) mount is going away: when that mount lets go of it, autoclear
		// detaches it, and a mount made on it meanwhile fails with I/O errors. Hold it
		// open first, so that autoclear waits for us, and check it is still ours.
		hold, err := holdLoop(dev, st)
		if err != nil {
			return "", fmt.Errorf("disk image %s: %w", path, err)
		}
		if hold < 0 {
			dev = ""
		} else {
			defer unix.Close(hold)
		}
	}
	if dev == "" {
		var hold int
		dev, hold, err = attach(img)
		if err != nil {
			return "", fmt.Errorf("disk image %s: %w", path, err)
		}
		// Once mounted, the mount holds the device; before, this descriptor does, and
		// closing it on failure lets autoclear detach the device.
		defer unix.Close(hold)
	}
	if err := mountExt4(dev, tfd); err != nil {
		return "", fmt.Errorf("disk image %s: mount %s at %s: %w", path, dev, target, err)
	}
	return dev, nil
}

// mountExt4 mounts the ext4 file system on dev at the directory open at targetFD with the
// new mount API, so the mount lands on the directory checked, whatever its path does.
func mountExt4(dev string, targetFD int) error {
	fsfd, err := unix.Fsopen("ext4", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen ext4: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "source", dev); err != nil {
		return fmt.Errorf("source: %w%s", err, fsLog(fsfd))
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("it holds no ext4 file system the kernel can mount (the kernel log says why)%s: %w",
				fsLog(fsfd), errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("%w%s", err, fsLog(fsfd))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID)
	if err != nil {
		return fmt.Errorf("fsmount: %w%s", err, fsLog(fsfd))
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", targetFD, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// fsLog reads the messages the kernel left on a file system context ("e ext4: ..."), to
// say why a mount failed.
func fsLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 16 {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (" + strings.Join(msgs, "; ") + ")"
}

// mountedAt returns a target where dev is mounted in this mount namespace, or "".
func mountedAt(dev string) (string, error) {
	all, err := mounts.List()
	if err != nil {
		return "", fmt.Errorf("read the mount table: %w", err)
	}
	for _, m := range all {
		if m.Source == dev {
			return m.Target, nil
		}
	}
	return "", nil
}

// Unmount unmounts the disk image mounted at target; its loop device detaches itself once
// no mount of the file system is left. Nothing mounted at target (or no target) is not an
// error; another kind of mount there is, and a busy one is ErrUnavailable.
func Unmount(target string) error {
	s, err := probePath(target)
	if err != nil {
		return err
	}
	if !s.mounted {
		return nil
	}
	if s.loop == "" {
		return fmt.Errorf("%s is a mount of something other than a disk image: leaving it: %w", target, errdefs.ErrFailedPrecondition)
	}
	if err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW); err != nil {
		switch {
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil // unmounted meanwhile
		case errors.Is(err, unix.EBUSY):
			return fmt.Errorf("unmount disk image at %s: still in use: stop what runs from it first: %w", target, errdefs.ErrUnavailable)
		}
		return fmt.Errorf("unmount disk image at %s: %w", target, err)
	}
	return nil
}

// Usage returns the bytes used and the size of the disk image mounted at target, as df
// shows them (the size leaves out what ext4 keeps for itself: the journal, the inode
// tables).
func Usage(target string) (used, size int64, err error) {
	fd, err := unix.Open(target, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("disk usage at %s: %w", target, kind(err))
	}
	defer unix.Close(fd)
	s, err := probe(fd)
	if err != nil {
		return 0, 0, fmt.Errorf("disk usage at %s: %w", target, err)
	}
	if s.loop == "" {
		return 0, 0, fmt.Errorf("no disk image is mounted at %s: %w", target, errdefs.ErrNotFound)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", target, err)
	}
	unit := fs.Frsize
	if unit == 0 {
		unit = fs.Bsize
	}
	return int64(fs.Blocks-fs.Bfree) * unit, int64(fs.Blocks) * unit, nil
}
