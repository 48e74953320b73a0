package hostfs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/errdefs"
)

// DialGuest connects to guestd.sock in the container's rpc directory. The container owns
// that directory and may put anything there, so the socket is opened through a
// descriptor of the directory without following any symlink, must be a socket owned by
// the container's root, and is connected to through /proc/self/fd: a symlink to another
// container's socket or to a host daemon's, a FIFO or a file is refused.
func (t Tree) DialGuest(ctx context.Context) (net.Conn, error) {
	dir, err := openHostOnly(t.RPCDir())
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	name := filepath.Base(GuestSocket)
	fd, err := unix.Openat2(dir, name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("guestd of %s has no socket yet: %w", t.Name(), errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("open guestd's socket of %s: %w: %w", t.Name(), err, errdefs.ErrUnavailable)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return nil, fmt.Errorf("%s/%s of container %s is a symbolic link, not guestd's socket: %w", t.RPCDir(), name, t.Name(), errdefs.ErrFailedPrecondition)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("%s/%s of container %s is not a socket (mode %#o): %w", t.RPCDir(), name, t.Name(), st.Mode, errdefs.ErrFailedPrecondition)
	}
	if int(st.Uid) != t.IDs.RootUID() {
		return nil, fmt.Errorf("%s/%s of container %s belongs to host uid %d, not the container's root (%d): %w", t.RPCDir(), name, t.Name(), st.Uid, t.IDs.RootUID(), errdefs.ErrFailedPrecondition)
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", fmt.Sprintf("/proc/self/fd/%d", fd))
}
