package diskimg

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/bytesize"
	"hearth.dev/internal/errdefs"
)

// ext4IocResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64): grow a mounted ext4 file
// system to the given number of blocks.
const ext4IocResizeFS = 0x40086610

// Grow raises the size of the image at path, mounted at target, to newSize bytes (rounded
// down to BlockSize) while it stays mounted and in use: the file grows, the loop device
// learns its new capacity, and ext4 adds the space. Asking for the size it has is a no-op
// that finishes a growth cut short; asking for less is refused, images do not shrink.
//
// The kernel lets only a holder of CAP_SYS_RESOURCE resize ext4 (ErrPermissionDenied
// without it, before anything changes); GrowOffline needs no such capability.
func Grow(path, target string, newSize int64) error {
	img, st, err := openForGrowth(path, newSize)
	if err != nil {
		return err
	}
	defer img.Close()
	newSize -= newSize % BlockSize

	tfd, err := unix.Open(target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("grow disk image %s: mount point %s: %w", path, target, kind(err))
	}
	defer unix.Close(tfd)
	s, err := probe(tfd)
	if err != nil {
		return fmt.Errorf("grow disk image %s: mount point %s: %w", path, target, err)
	}
	mounted := false
	if s.loop != "" && s.fsRoot {
		if mounted, err = backs(s.loop, st); err != nil {
			return fmt.Errorf("grow disk image %s: %w", path, err)
		}
	}
	if !mounted {
		return fmt.Errorf("grow disk image %s: it is not what is mounted at %s: mount it there, or grow it with GrowOffline while it is not mounted: %w",
			path, target, errdefs.ErrFailedPrecondition)
	}
	if ok, err := hasCapSysResource(); err != nil {
		return fmt.Errorf("grow disk image %s: %w", path, err)
	} else if !ok {
		return fmt.Errorf("grow disk image %s while mounted: the kernel resizes a mounted ext4 only for a holder of CAP_SYS_RESOURCE, which this process lacks (is it dropped from the capability bounding set?): grow it while its package is stopped: %w",
			path, errdefs.ErrPermissionDenied)
	}

	if newSize > st.Size {
		if err := img.Truncate(newSize); err != nil {
			return fmt.Errorf("grow disk image %s to %s: %w", path, bytesize.Format(newSize), err)
		}
	}
	// Read-only is enough with CAP_SYS_ADMIN, and a kernel that refuses writers on a
	// mounted block device (BLK_DEV_WRITE_MOUNTED=n) still allows it.
	lfd, err := unix.Open(s.loop, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("grow disk image %s: open %s: %w", path, s.loop, err)
	}
	defer unix.Close(lfd)
	if err := unix.IoctlSetInt(lfd, unix.LOOP_SET_CAPACITY, 0); err != nil {
		return fmt.Errorf("grow disk image %s: set the capacity of %s: %w", path, s.loop, err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(tfd, &fs); err != nil {
		return fmt.Errorf("grow disk image %s: statfs %s: %w", path, target, err)
	}
	blocks := uint64(newSize) / uint64(fs.Bsize)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(tfd), ext4IocResizeFS, uintptr(unsafe.Pointer(&blocks))); errno != 0 {
		return fmt.Errorf("grow disk image %s: resize ext4 at %s to %d blocks: %w", path, target, blocks, kind(errno))
	}
	return nil
}

// GrowOffline raises the size of the image at path, which must not be mounted (nor
// attached to a loop device), to newSize bytes (rounded down to BlockSize), with e2fsck
// and resize2fs. Asking for the size it has is a no-op that finishes a growth cut short;
// asking for less is refused.
func GrowOffline(path string, newSize int64) error {
	img, st, err := openForGrowth(path, newSize)
	if err != nil {
		return err
	}
	defer img.Close()
	newSize -= newSize % BlockSize
	if dev, err := detachedSoon(st); err != nil {
		return fmt.Errorf("grow disk image %s: look for its loop device: %w", path, err)
	} else if dev != "" {
		return fmt.Errorf("grow disk image %s: it is in use on %s: unmount it first, or grow it mounted with Grow: %w",
			path, dev, errdefs.ErrFailedPrecondition)
	}
	fsck, err1 := exec.LookPath("e2fsck")
	resize, err2 := exec.LookPath("resize2fs")
	if err1 != nil || err2 != nil {
		return fmt.Errorf("grow disk image %s: e2fsck or resize2fs not found: install e2fsprogs: %w", path, errdefs.ErrFailedPrecondition)
	}
	if newSize > st.Size {
		if err := img.Truncate(newSize); err != nil {
			return fmt.Errorf("grow disk image %s to %s: %w", path, bytesize.Format(newSize), err)
		}
	}
	// resize2fs wants a file system checked since it was last mounted. -p repairs what is
	// safe to repair alone; exit codes 0 and 1 mean clean or repaired.
	cmd := exec.Command(fsck, "-f", "-p", "/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{img}
	if out, err := cmd.CombinedOutput(); err != nil && cmd.ProcessState.ExitCode() != 1 {
		return fmt.Errorf("grow disk image %s: e2fsck: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	cmd = exec.Command(resize, "/proc/self/fd/3", fmt.Sprintf("%dK", newSize>>10))
	cmd.ExtraFiles = []*os.File{img}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("grow disk image %s: resize2fs: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	if err := img.Sync(); err != nil {
		return fmt.Errorf("grow disk image %s: sync: %w", path, err)
	}
	return nil
}

// openForGrowth opens the image at path and checks that newSize does not shrink it.
func openForGrowth(path string, newSize int64) (*os.File, *unix.Stat_t, error) {
	img, st, err := openImage(path)
	if err != nil {
		return nil, nil, err
	}
	if newSize-newSize%BlockSize < st.Size {
		img.Close()
		return nil, nil, fmt.Errorf("disk image %s is %s: shrinking it to %s is not supported: give a size of at least %s: %w",
			path, bytesize.Format(st.Size), bytesize.Format(newSize), bytesize.Format(st.Size), errdefs.ErrInvalidArgument)
	}
	return img, st, nil
}

// hasCapSysResource reports whether this process holds CAP_SYS_RESOURCE now.
func hasCapSysResource() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // version 3 fills two
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("capget: %w", err)
	}
	return data[unix.CAP_SYS_RESOURCE/32].Effective&(1<<(unix.CAP_SYS_RESOURCE%32)) != 0, nil
}

// detachWait bounds how long GrowOffline waits for the loop device of an image unmounted
// a moment ago: autoclear detaches it only once the last mount has let go of it.
const detachWait = 3 * time.Second

// detachedSoon returns the loop device the image st describes is still attached to, after
// waiting (up to detachWait) for one that is mounted nowhere to detach itself.
func detachedSoon(st *unix.Stat_t) (string, error) {
	deadline := time.Now().Add(detachWait)
	for {
		dev, err := findLoop(st)
		if err != nil || dev == "" {
			return dev, err
		}
		if where, err := mountedAt(dev); err != nil || where != "" || time.Now().After(deadline) {
			return dev, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
