// Package unixsock creates the Unix sockets Hearth's daemons serve on: the path length is
// checked, a live socket is never taken over, a stale one is removed, and the socket appears
// at its path already carrying its final owner and mode.
package unixsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// MaxPathLen is the longest path a Unix socket address can hold (sun_path less its NUL).
const MaxPathLen = 107

// Default modes: the directory admits owner and group, the socket lets both connect.
const (
	DirMode  os.FileMode = 0o750
	SockMode os.FileMode = 0o660
)

// Options set the owner of the socket and of a directory Listen creates. A negative
// UID or GID leaves that id as the process's own.
type Options struct {
	UID, GID int
}

// ErrInUse reports that another process answers on the socket.
var ErrInUse = errors.New("socket in use")

// Listen creates a Unix socket at path. A missing parent directory is created with mode
// 0750; the socket gets mode 0660 and the given owner before it becomes visible at path, so
// no caller ever sees it with looser permissions. A socket file nobody answers on is
// removed; one that answers is left alone and Listen fails with ErrInUse.
func Listen(path string, opts Options) (net.Listener, error) {
	if len(path) > MaxPathLen {
		return nil, fmt.Errorf("socket path %q is %d bytes, Unix sockets allow %d: use a shorter --run-dir or --socket", path, len(path), MaxPathLen)
	}
	if err := ensureDir(filepath.Dir(path), opts); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	// Bind under a temporary name, fix mode and owner, then rename into place.
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if len(tmp) > MaxPathLen {
		tmp = filepath.Join(filepath.Dir(path), fmt.Sprintf(".s%d", os.Getpid()))
	}
	_ = os.Remove(tmp)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		l.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Chmod(tmp, SockMode); err != nil {
		return fail(fmt.Errorf("chmod socket %s: %w", path, err))
	}
	if opts.UID >= 0 || opts.GID >= 0 {
		if err := os.Lchown(tmp, opts.UID, opts.GID); err != nil {
			return fail(fmt.Errorf("chown socket %s to %d:%d: %w", path, opts.UID, opts.GID, err))
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("move socket into place at %s: %w", path, err))
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(fmt.Errorf("stat socket %s: %w", path, err))
	}
	return &listener{UnixListener: l, path: path, ino: inode(fi)}, nil
}

func ensureDir(dir string, opts Options) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("socket directory %s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("socket directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("create socket directory %s: %w", dir, err)
	}
	// MkdirAll applies the umask; set the mode we promise.
	if err := os.Chmod(dir, DirMode); err != nil {
		return fmt.Errorf("chmod socket directory %s: %w", dir, err)
	}
	if opts.UID >= 0 || opts.GID >= 0 {
		if err := os.Chown(dir, opts.UID, opts.GID); err != nil {
			return fmt.Errorf("chown socket directory %s: %w", dir, err)
		}
	}
	return nil
}

// removeStale removes a socket at path that no process answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket: move it away or choose another --socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another process is serving on it: %w", path, ErrInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("probe existing socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// listener removes its socket file on Close, unless another listener has replaced it.
type listener struct {
	*net.UnixListener
	path string
	ino  uint64
	once sync.Once
}

func (l *listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *listener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && inode(fi) == l.ino {
			os.Remove(l.path)
		}
	})
	return err
}
