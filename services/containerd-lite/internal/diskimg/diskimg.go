// Package diskimg gives a package a disk of its own: an ext4 file system in a sparse image
// file, attached to a loop device and mounted, so that the kernel enforces the package's
// disk limit. Writing past it gets ENOSPC inside the image; the host file system and the
// other packages never see it. containerd-lite keeps a package's writable layer, its
// subcontainers' upper layers, its volumes and its logs in that image.
//
// Why loop images: the kernels Hearth runs on are not all built with ext4 project quotas
// (CONFIG_QFMT_V2) or XFS quotas, and a limit that depends on how the host's state file
// system was made and mounted is no limit. A loop device needs neither.
//
// The life of an image:
//   - Create makes the file (mode 0600, sparse) and formats it with mkfs.ext4: 4 KiB
//     blocks, no reserved blocks, inode tables left for the kernel, the root directory
//     owned by the package's root. Templates.Create makes the same image from a template
//     formatted once per size and owner: a sparse copy given a UUID and a directory hash
//     seed of its own (template.go).
//   - Mount attaches it to a free loop device with LOOP_CONFIGURE and LO_FLAGS_AUTOCLEAR
//     (so the device goes when the last mount of the file system goes) and mounts it
//     nodev,nosuid. It keeps exec: containers run binaries from their writable layer and
//     their volumes. Mounting an image already mounted at its target does nothing; an image
//     still attached (a mount detached lazily while files were open in it, or kept alive
//     by a container's copy) is mounted from the device it is on, never attached twice,
//     which would put two file systems on one file.
//   - Grow raises the limit while the image is mounted: the file grows, LOOP_SET_CAPACITY
//     tells the loop device and EXT4_IOC_RESIZE_FS tells ext4. The kernel allows that ioctl
//     only with CAP_SYS_RESOURCE; a host without it (a capability bounding set that drops
//     it) grows images with GrowOffline while they are not mounted. Nothing shrinks.
//   - Usage reads what df shows; Unmount unmounts, and the loop device detaches itself.
//
// Images are sparse: a file takes host space only as the package writes, so the sum of the
// packages' limits may exceed the host's free space (overcommit). The limit stops one
// package from filling the host; the host's free space is containerd-lite's to watch, and
// it keeps a reserve below which no package starts.
//
// The image file is opened with O_NOFOLLOW and handed to mkfs.ext4, e2fsck and resize2fs
// as an inherited descriptor, so a name swapped between a check and its use cannot point
// them at another file. The images and their mount points live in host-only directories;
// callers serialise the calls for one image (containerd-lite's per-container lock).
package diskimg

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/bytesize"
	"hearth.dev/internal/errdefs"
)

const (
	// MinSize is the smallest image Create makes: below it the journal and the metadata
	// take most of the space.
	MinSize = 16 << 20

	// BlockSize is the file system's block size; image sizes are rounded down to it.
	BlockSize = 4096

	// Label is the ext4 label of every image.
	Label = "hearth-disk"

	// inodeRatio is bytes per inode: half ext4's usual 16 KiB, because writable layers
	// and volumes hold many small files (package caches, node_modules), and running out of
	// inodes with free space left is an ENOSPC nobody can explain from df.
	inodeRatio = 8192
)

// Create makes a sparse image of size bytes (rounded down to BlockSize) at path, mode
// 0600, formatted ext4 with its root directory owned by uid:gid. The image is formatted
// under a temporary name beside path and renamed to path only when complete and synced, so
// path never names a half-made image. An existing path is an error.
//
// Create runs mkfs.ext4 for the image; Templates.Create makes the same image by copying a
// template formatted once, which is several times faster.
//
// The journal and the inode tables come out of size: df shows about 91% of a 64 MiB image
// and 96% of a 10 GiB one as the file system's size.
func Create(path string, size int64, uid, gid int) error {
	size, mkfs, err := checkCreate(path, size, uid, gid)
	if err != nil {
		return err
	}
	return create(path, size, func(f *os.File) error { return format(mkfs, f, uid, gid) })
}

// checkCreate refuses what Create cannot make, and returns size rounded down to BlockSize
// and the mkfs.ext4 that formats it.
func checkCreate(path string, size int64, uid, gid int) (int64, string, error) {
	if size-size%BlockSize < MinSize {
		return 0, "", fmt.Errorf("disk image %s: size %d bytes is below the minimum of %s: give a larger disk limit: %w",
			path, size, bytesize.Format(MinSize), errdefs.ErrInvalidArgument)
	}
	if uid < 0 || gid < 0 {
		return 0, "", fmt.Errorf("disk image %s: owner %d:%d is not a valid uid:gid: %w", path, uid, gid, errdefs.ErrInvalidArgument)
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return 0, "", fmt.Errorf("disk image %s: mkfs.ext4 not found: install e2fsprogs: %w", path, errdefs.ErrFailedPrecondition)
	}
	return size - size%BlockSize, mkfs, nil
}

// create makes the file at path of size bytes, mode 0600, and has fill write the file
// system into it. It works on a temporary name beside path, removes one a crash left
// there, and renames it to path only once fill is done and the file is synced.
func create(path string, size int64, fill func(*os.File) error) error {
	dirFD, base, err := openParent(path)
	if err != nil {
		return err
	}
	defer unix.Close(dirFD)
	var st unix.Stat_t
	if err := unix.Fstatat(dirFD, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return fmt.Errorf("disk image %s already exists: %w", path, errdefs.ErrAlreadyExists)
	} else if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("disk image %s: %w", path, err)
	}

	// A temporary left by a crash is ours: remove it and start again.
	tmp := base + ".mkfs-tmp"
	if err := unix.Unlinkat(dirFD, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("disk image %s: remove leftover %s: %w", path, tmp, err)
	}
	fd, err := unix.Openat(dirFD, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("disk image %s: create: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(filepath.Dir(path), tmp))
	defer f.Close()
	done := false
	defer func() {
		if !done {
			_ = unix.Unlinkat(dirFD, tmp, 0)
		}
	}()
	if err := f.Chmod(0o600); err != nil { // whatever the umask
		return fmt.Errorf("disk image %s: %w", path, err)
	}
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("disk image %s: size it to %s: %w", path, bytesize.Format(size), err)
	}
	if err := fill(f); err != nil {
		return fmt.Errorf("disk image %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("disk image %s: sync: %w", path, err)
	}
	if err := place(dirFD, tmp, dirFD, path); err != nil {
		return err
	}
	done = true
	if err := unix.Fsync(dirFD); err != nil {
		return fmt.Errorf("disk image %s: sync its directory: %w", path, err)
	}
	return nil
}

// openParent opens the directory path is in, and returns it with path's base name.
func openParent(path string) (int, string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("disk image %s: open its directory: %w", path, kind(err))
	}
	return fd, base, nil
}

// place renames the file from, in the directory fromFD, to path (whose directory is open
// at toFD), never over a file already there.
func place(fromFD int, from string, toFD int, path string) error {
	if err := unix.Renameat2(fromFD, from, toFD, filepath.Base(path), unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("disk image %s already exists: %w", path, errdefs.ErrAlreadyExists)
		}
		return fmt.Errorf("disk image %s: name it (from %s): %w", path, from, err)
	}
	return nil
}

// mkfsArgs are mkfs.ext4's arguments for an image with its root owned by uid:gid, less
// the device. They are part of a template's name: a template made with other arguments is
// never used.
//
// -m 0: no blocks reserved for root, the package's root is the only user.
// -e remount-ro: damage found in the file system stops the package's writes there instead
// of letting them go on over it.
// -O metadata_csum,metadata_csum_seed: the metadata checksums are seeded from a field of
// their own, not from the UUID, so a copy of a template gets a UUID of its own by a
// rewrite of its superblocks alone (see relabel).
// lazy_itable_init, lazy_journal_init: the file is new and sparse, so it reads as zeroes
// already; mke2fs punches it (discard) and marks the inode tables zeroed, which also keeps
// the kernel's lazy init thread from writing them. Formatting stays milliseconds and the
// file stays sparse at any size.
func mkfsArgs(uid, gid int) []string {
	return []string{"-q", "-F",
		"-b", fmt.Sprint(BlockSize), "-i", fmt.Sprint(inodeRatio), "-m", "0", "-e", "remount-ro", "-L", Label,
		"-O", "metadata_csum,metadata_csum_seed",
		"-E", fmt.Sprintf("lazy_itable_init=1,lazy_journal_init=1,root_owner=%d:%d", uid, gid)}
}

// format runs mkfs over f, handed to it as an inherited descriptor.
func format(mkfs string, f *os.File, uid, gid int) error {
	cmd := exec.Command(mkfs, append(mkfsArgs(uid, gid), "/proc/self/fd/3")...)
	cmd.ExtraFiles = []*os.File{f}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// openImage opens the image at path for reading and writing, refusing a symlink and
// anything but a regular file.
func openImage(path string) (*os.File, *unix.Stat_t, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, nil, fmt.Errorf("disk image %s is a symlink: give the image file itself: %w", path, errdefs.ErrInvalidArgument)
		}
		return nil, nil, fmt.Errorf("disk image %s: %w", path, kind(err))
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("disk image %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, nil, fmt.Errorf("disk image %s is not a regular file: %w", path, errdefs.ErrInvalidArgument)
	}
	return f, &st, nil
}

// kind adds the error kind a caller can act on to a system call's error.
func kind(err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EISDIR), errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w: %w", err, errdefs.ErrPermissionDenied)
	}
	return err
}
