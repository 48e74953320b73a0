package diskimg

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/errdefs"
)

// attachTries bounds the race for a free loop device: LOOP_CTL_GET_FREE names a device
// another process may configure first (LOOP_CONFIGURE then fails with EBUSY).
const attachTries = 32

// attach puts the image open in img on a free loop device with LO_FLAGS_AUTOCLEAR, and
// returns the device's path and a descriptor that holds it: closing that descriptor before
// anything else holds the device (a mount) detaches it again.
func attach(img *os.File) (string, int, error) {
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, fmt.Errorf("open loop control: %w", err)
	}
	defer unix.Close(ctl)
	cfg := unix.LoopConfig{Fd: uint32(img.Fd()), Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}}
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], filepath.Base(img.Name()))
	for range attachTries {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", -1, fmt.Errorf("find a free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", -1, fmt.Errorf("open %s: %w", dev, err)
		}
		err = unix.IoctlLoopConfigure(fd, &cfg)
		if err == nil {
			return dev, fd, nil
		}
		unix.Close(fd)
		if !errors.Is(err, unix.EBUSY) {
			return "", -1, fmt.Errorf("attach %s to %s: %w", img.Name(), dev, err)
		}
	}
	return "", -1, fmt.Errorf("attach %s: every free loop device was taken by another process %d times in a row: %w",
		img.Name(), attachTries, errdefs.ErrUnavailable)
}

// backs reports whether the loop device at dev is attached to the file st describes.
// A device that is not attached (or is detaching) backs nothing.
func backs(dev string, st *unix.Stat_t) (bool, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
			return false, nil
		}
		return false, fmt.Errorf("open %s: %w", dev, err)
	}
	defer unix.Close(fd)
	info, err := unix.IoctlLoopGetStatus64(fd)
	if err != nil {
		if errors.Is(err, unix.ENXIO) {
			return false, nil
		}
		return false, fmt.Errorf("status of %s: %w", dev, err)
	}
	return info.Device == uint64(st.Dev) && info.Inode == st.Ino && info.Offset == 0, nil
}

// holdLoop opens the loop device dev, so that autoclear cannot detach it while the
// descriptor is open, and checks that it is still attached to the file st describes. It
// returns -1 when it no longer is (or is going away): attach a new device then.
func holdLoop(dev string, st *unix.Stat_t) (int, error) {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
			return -1, nil
		}
		return -1, fmt.Errorf("open %s: %w", dev, err)
	}
	info, err := unix.IoctlLoopGetStatus64(fd)
	if err != nil || info.Device != uint64(st.Dev) || info.Inode != st.Ino || info.Offset != 0 {
		unix.Close(fd)
		if err != nil && !errors.Is(err, unix.ENXIO) {
			return -1, fmt.Errorf("status of %s: %w", dev, err)
		}
		return -1, nil
	}
	return fd, nil
}

// findLoop returns the loop device the file st describes is attached to, or "".
func findLoop(st *unix.Stat_t) (string, error) {
	names, err := attachedLoops()
	if err != nil {
		return "", err
	}
	for _, name := range names {
		ok, err := backs("/dev/"+name, st)
		if err != nil {
			return "", err
		}
		if ok {
			return "/dev/" + name, nil
		}
	}
	return "", nil
}

// partitions is the kernel's list of the block devices that have a size.
var partitions = "/proc/partitions"

// attachedLoops names the loop devices that may have a file attached. /sys/block lists
// every loop device made since boot, and a host that ran many containers keeps a hundred
// or more, most of them free: a look at each cost ~0.7 ms of every disk's mount. A loop
// device is in /proc/partitions only while it has a size, that is while a file is
// attached (disk images are never empty). Without it, every loop device in /sys/block
// that says it is attached is named.
func attachedLoops() ([]string, error) {
	if data, err := os.ReadFile(partitions); err == nil {
		return loopsIn(data), nil
	}
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "loop") {
			continue
		}
		// The loop directory is there only while the device is attached.
		if _, err := os.Stat(filepath.Join("/sys/block", name, "loop")); err == nil {
			out = append(out, name)
		}
	}
	return out, nil
}

// loopsIn returns the loop devices (loop<N>) of a /proc/partitions text: "major minor
// #blocks name" lines under a header. Partitions of a loop device (loop0p1) are not loop
// devices.
func loopsIn(partitions []byte) []string {
	var out []string
	for line := range strings.Lines(string(partitions)) {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		n, ok := strings.CutPrefix(f[3], "loop")
		if !ok || n == "" || strings.Trim(n, "0123456789") != "" {
			continue
		}
		out = append(out, f[3])
	}
	return out
}

// mountState is what is mounted at a target.
type mountState struct {
	mounted bool   // the target is the root of a mount
	loop    string // the loop device under that mount, "" if it is not on one
	fsRoot  bool   // the mount shows its file system's root, not a directory in it
}

// ext4RootIno is the inode number of an ext4 file system's root directory.
const ext4RootIno = 2

// probe tells what is mounted at the directory open at fd (any descriptor, O_PATH too).
func probe(fd int) (mountState, error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_INO, &stx); err != nil {
		return mountState{}, fmt.Errorf("statx: %w", err)
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return mountState{}, fmt.Errorf("this kernel does not tell mount roots (statx STATX_ATTR_MOUNT_ROOT, Linux 5.8): %w", errdefs.ErrUnimplemented)
	}
	if stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return mountState{}, nil
	}
	s := mountState{mounted: true, fsRoot: stx.Ino == ext4RootIno}
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", stx.Dev_major, stx.Dev_minor))
	if err != nil {
		return s, nil // not a block device: tmpfs, overlay, proc...
	}
	name := filepath.Base(link)
	if _, err := os.Stat(filepath.Join("/sys/block", name, "loop")); strings.HasPrefix(name, "loop") && err == nil {
		s.loop = "/dev/" + name
	}
	return s, nil
}

// probePath is probe for a path; a path that does not exist has nothing mounted.
func probePath(path string) (mountState, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return mountState{}, nil
		}
		return mountState{}, fmt.Errorf("%s: %w", path, kind(err))
	}
	defer unix.Close(fd)
	s, err := probe(fd)
	if err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// LoopDevice returns the loop device (/dev/loopN) under the mount at target, and the path
// of the file it is attached to as the kernel shows it. It is an error if target is not
// the root of a mount on a loop device.
func LoopDevice(target string) (dev, backingFile string, err error) {
	s, err := probePath(target)
	if err != nil {
		return "", "", err
	}
	if s.loop == "" {
		return "", "", fmt.Errorf("no disk image is mounted at %s: %w", target, errdefs.ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(s.loop), "loop", "backing_file"))
	if err != nil {
		return "", "", fmt.Errorf("backing file of %s: %w", s.loop, err)
	}
	return s.loop, strings.TrimSuffix(string(b), "\n"), nil
}
