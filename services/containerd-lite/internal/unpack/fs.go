package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/beneath"
)

// openDir opens directory dir (relative to the root) beneath the root. With create,
// missing directories are made (0755, root-owned), as tar tools do.
func (u *Unpacker) openDir(dir string, create bool) (int, error) {
	var owner *beneath.Owner
	if create {
		owner = &beneath.Owner{Mode: 0o755}
	}
	fd, err := beneath.OpenDir(u.root, dir, beneath.Beneath, owner)
	switch {
	case errors.Is(err, beneath.ErrEscapes):
		return -1, refuse("path %q leads out of the image root through a symlink", dir)
	case errors.Is(err, beneath.ErrNotDir):
		return -1, refuse("a parent of %q is not a directory", dir)
	}
	return fd, err
}

// parentOf returns an O_PATH descriptor of directory dir, an entry's parent, made when
// missing. The descriptor belongs to the Unpacker: it stays open for the
// next entry in the same directory, until forgetParent. Only whiteouts and opaque
// markers remove paths other than their entry's own, so only they forget it; an entry
// never replaces its own parent.
func (u *Unpacker) parentOf(dir string) (int, error) {
	if u.parent >= 0 && u.parentDir == dir {
		return u.parent, nil
	}
	u.forgetParent()
	fd, err := u.openDir(dir, true)
	if err != nil {
		return -1, err
	}
	u.parent, u.parentDir = fd, dir
	return fd, nil
}

func (u *Unpacker) forgetParent() {
	if u.parent >= 0 {
		unix.Close(u.parent)
		u.parent, u.parentDir = -1, ""
	}
}

// replacing runs mk, which creates name in directory fd; when something is there
// already (EEXIST), it is removed, whatever it is, and mk runs once more.
func replacing(fd int, name string, mk func() error) error {
	err := mk()
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	if err := removeAt(fd, name); err != nil {
		return err
	}
	return mk()
}

// setMetaOpen sets owner, mode, xattrs and times on the regular file or directory open
// (not O_PATH) at fd. Set-id bits survive: chmod comes after chown, which clears them.
func setMetaOpen(fd int, hdr *tar.Header) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
	}
	mode := uint32(hdr.Mode & 0o7777)
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("chmod %o: %w", mode, err)
	}
	if err := eachXattr(hdr, func(attr string, v []byte) error { return unix.Fsetxattr(fd, attr, v, 0) }); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		return nil
	}
	ts := unix.NsecToTimespec(hdr.ModTime.UnixNano())
	times := [2]unix.Timespec{ts, ts}
	// utimensat with no path sets the times of fd itself.
	if _, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&times[0])), 0, 0, 0); errno != 0 {
		return fmt.Errorf("set times: %w", errno)
	}
	return nil
}

// eachXattr calls set with each extended attribute the entry carries.
func eachXattr(hdr *tar.Header, set func(attr string, v []byte) error) error {
	for k, v := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if err := set(attr, []byte(v)); err != nil {
			return fmt.Errorf("xattr %s: %w", attr, err)
		}
	}
	return nil
}

// setMeta does what setMetaOpen does, through an O_PATH descriptor (of the root, for
// name "") or for name in directory fd, never following a symlink: for what cannot be
// opened for reading or writing, such as symlinks, fifos and device nodes.
func (u *Unpacker) setMeta(fd int, name string, hdr *tar.Header) error {
	if name != "" {
		pfd, err := unix.Openat(fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(pfd)
		fd = pfd
	}
	// The descriptor's magic link reaches the file itself, even for O_PATH descriptors.
	proc := fmt.Sprintf("/proc/self/fd/%d", fd)
	if err := unix.Fchownat(fd, "", hdr.Uid, hdr.Gid, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
	}
	if hdr.Typeflag != tar.TypeSymlink {
		mode := uint32(hdr.Mode & 0o7777)
		if err := unix.Fchmodat(unix.AT_FDCWD, proc, mode, 0); err != nil {
			return fmt.Errorf("chmod %o: %w", mode, err)
		}
	}
	if err := eachXattr(hdr, func(attr string, v []byte) error { return unix.Setxattr(proc, attr, v, 0) }); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeDir && hdr.Typeflag != tar.TypeSymlink {
		return setTimes(proc, hdr.ModTime)
	}
	return nil
}

func setTimes(path string, mtime time.Time) error {
	ts := unix.NsecToTimespec(mtime.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, 0); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

func (u *Unpacker) setDirTimes(dir string, mtime time.Time) error {
	fd, err := u.openDir(dir, false)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return setTimes(fmt.Sprintf("/proc/self/fd/%d", fd), mtime)
}

// whiteout removes target from directory dir.
func (u *Unpacker) whiteout(dir, target string) error {
	parent, err := u.openDir(dir, false)
	if errors.Is(err, unix.ENOENT) {
		return nil // nothing below to hide
	}
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	return removeAt(parent, target)
}

// opaque empties directory dir of everything lower layers put there.
func (u *Unpacker) opaque(dir string, written map[string]bool) error {
	parent, err := u.openDir(dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	names, err := readDirNames(parent)
	if err != nil {
		return err
	}
	for _, n := range names {
		p := n
		if dir != "" {
			p = dir + "/" + n
		}
		if written[p] {
			continue
		}
		if err := removeAt(parent, n); err != nil {
			return err
		}
	}
	return nil
}

// readDirNames lists a directory given as an O_PATH or open descriptor.
func readDirNames(fd int) ([]string, error) {
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	var names []string
	buf := make([]byte, 32*1024)
	for {
		n, err := unix.Getdents(dfd, buf)
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// removeAt removes name in directory fd and, for a directory, all below it, never
// following a symlink. A missing name is not an error.
func removeAt(fd int, name string) error {
	err := unix.Unlinkat(fd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("remove %q: %w", name, err)
	}
	child, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("remove %q: %w", name, err)
	}
	names, err := readDirNames(child)
	if err == nil {
		for _, n := range names {
			if err = removeAt(child, n); err != nil {
				break
			}
		}
	}
	unix.Close(child)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(fd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove directory %q: %w", name, err)
	}
	return nil
}
