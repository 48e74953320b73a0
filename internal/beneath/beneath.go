// Package beneath opens and creates directories below a root directory descriptor with
// openat2, so that no "..", symlink or magic link can lead outside it: the kernel
// enforces the confinement, and a path checked is the path used (no races).
package beneath

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Resolution modes.
const (
	// Beneath fails a lookup that would leave the root (EXDEV): for untrusted archives.
	Beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS
	// InRoot resolves as if the root were "/" (absolute symlinks and ".." stay inside):
	// for paths inside a chroot, as its processes would see them.
	InRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS
)

// ErrEscapes reports a path that would lead out of the root.
var ErrEscapes = errors.New("leads out of the root through a symlink or '..'")

// ErrNotDir reports a path with a component that is not a directory.
var ErrNotDir = errors.New("a component is not a directory")

// Owner is the owner and mode of directories OpenDir creates.
type Owner struct {
	UID, GID int
	Mode     uint32
}

// OpenDir opens directory dir (relative to root, "" for the root itself) as an O_PATH
// descriptor. With create non-nil, missing components are made one by one, each beneath
// the last, with that owner and mode.
func OpenDir(root int, dir string, resolve uint64, create *Owner) (int, error) {
	dir = strings.Trim(dir, "/")
	if dir == "" {
		return unix.Dup(root)
	}
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolve}
	fd, err := unix.Openat2(root, dir, how)
	if err == nil {
		return fd, nil
	}
	if e := classify(dir, err); !errors.Is(err, unix.ENOENT) || create == nil {
		return -1, e
	}
	cur, err := unix.Dup(root)
	if err != nil {
		return -1, err
	}
	for _, part := range strings.Split(dir, "/") {
		next, err := unix.Openat2(cur, part, how)
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(cur, part, create.Mode); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(cur)
				return -1, fmt.Errorf("mkdir %q in %q: %w", part, dir, err)
			}
			if err := unix.Fchownat(cur, part, create.UID, create.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				unix.Close(cur)
				return -1, fmt.Errorf("chown %q in %q: %w", part, dir, err)
			}
			next, err = unix.Openat2(cur, part, how)
		}
		unix.Close(cur)
		if err != nil {
			return -1, classify(dir, err)
		}
		cur = next
	}
	return cur, nil
}

func classify(dir string, err error) error {
	switch {
	case errors.Is(err, unix.EXDEV), errors.Is(err, unix.ELOOP):
		return fmt.Errorf("path %q %w", dir, ErrEscapes)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("path %q: %w", dir, ErrNotDir)
	}
	return fmt.Errorf("open directory %q: %w", dir, err)
}
