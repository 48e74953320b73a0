package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"strings"
	"time"

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

// setMeta sets owner, mode, xattrs and times on the file open at fd (name "") or on
// name in directory fd, never following a symlink. Set-id bits survive: chmod comes
// after chown, which clears them.
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
	for k, v := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if err := unix.Setxattr(proc, attr, []byte(v), 0); err != nil {
			return fmt.Errorf("xattr %s: %w", attr, err)
		}
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
