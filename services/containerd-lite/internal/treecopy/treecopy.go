// Package treecopy copies a directory tree that its owner may have made hostile (a
// package's volume): every entry is reached through a descriptor of its parent, opened
// with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) and O_NOFOLLOW, and copied as what it
// is: a symlink as a symlink (its text, never followed), a regular file by its content
// read from the descriptor that was checked to be a regular file (a reflink where the file
// system can share blocks, a copy otherwise), a directory by
// recursion. FIFOs and sockets are made again empty; device nodes are skipped (a package
// cannot make them, and none is made for it). Hard links within the tree stay hard links.
// Owners, modes and modification times are kept. The destination is written the same
// way, below a directory the caller names that must not exist yet.
package treecopy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Stats counts what a copy did.
type Stats struct {
	Files, Dirs, Symlinks, Specials, Skipped int
	Bytes                                    int64
}

const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// Copy copies the tree at src (a directory; its own path is the caller's, the entries
// below it are not trusted) to dst, which is created: it must not exist, and its parent
// must be a directory the caller trusts.
func Copy(src, dst string) (Stats, error) {
	var st Stats
	s, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return st, fmt.Errorf("open %s: %w", src, err)
	}
	defer unix.Close(s)
	var sst unix.Stat_t
	if err := unix.Fstat(s, &sst); err != nil {
		return st, err
	}
	parent, err := unix.Open(filepath.Dir(dst), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return st, fmt.Errorf("open %s: %w", filepath.Dir(dst), err)
	}
	defer unix.Close(parent)
	name := filepath.Base(dst)
	if err := unix.Mkdirat(parent, name, 0o700); err != nil {
		return st, fmt.Errorf("create %s: %w", dst, err)
	}
	d, err := unix.Openat2(parent, name, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolve})
	if err != nil {
		return st, fmt.Errorf("open %s: %w", dst, err)
	}
	defer unix.Close(d)
	c := &copier{links: map[[2]uint64]link{}, stats: &st, dev: sst.Dev}
	if err := c.dir(s, d, src); err != nil {
		return st, err
	}
	st.Dirs++
	return st, c.attrs(d, "", &sst, false)
}

type link struct {
	dir  int // a descriptor of the destination directory holding the first copy (kept open)
	name string
}

type copier struct {
	links map[[2]uint64]link
	stats *Stats
	dev   uint64
	fds   []int
}

// dir copies the entries of the open source directory s into the open destination d.
func (c *copier) dir(s, d int, where string) error {
	defer func() {
		for _, fd := range c.fds {
			unix.Close(fd)
		}
		c.fds = nil
	}()
	return c.walk(s, d, where)
}

func (c *copier) walk(s, d int, where string) error {
	names, err := readNames(s)
	if err != nil {
		return fmt.Errorf("read %s: %w", where, err)
	}
	for _, n := range names {
		p := where + "/" + n
		var st unix.Stat_t
		if err := unix.Fstatat(s, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // gone meanwhile
			}
			return fmt.Errorf("stat %s: %w", p, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if st.Dev != c.dev {
				c.stats.Skipped++ // a mount point: not the tree's
				continue
			}
			sub, err := unix.Openat2(s, n, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolve})
			if err != nil {
				if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EXDEV) {
					c.stats.Skipped++ // swapped for something else while copied
					continue
				}
				return fmt.Errorf("open %s: %w", p, err)
			}
			err = func() error {
				defer unix.Close(sub)
				if err := unix.Mkdirat(d, n, 0o700); err != nil {
					return fmt.Errorf("create %s: %w", p, err)
				}
				dsub, err := unix.Openat2(d, n, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolve})
				if err != nil {
					return err
				}
				defer unix.Close(dsub)
				var got unix.Stat_t
				if err := unix.Fstat(sub, &got); err != nil {
					return err
				}
				if err := c.walk(sub, dsub, p); err != nil {
					return err
				}
				c.stats.Dirs++
				return c.attrs(dsub, "", &got, false)
			}()
			if err != nil {
				return err
			}
		case unix.S_IFREG:
			if err := c.file(s, d, n, p, &st); err != nil {
				return err
			}
		case unix.S_IFLNK:
			buf := make([]byte, unix.PathMax)
			k, err := unix.Readlinkat(s, n, buf)
			if err != nil {
				return fmt.Errorf("read link %s: %w", p, err)
			}
			if err := unix.Symlinkat(string(buf[:k]), d, n); err != nil {
				return fmt.Errorf("create link %s: %w", p, err)
			}
			c.stats.Symlinks++
			if err := c.attrs(d, n, &st, true); err != nil {
				return err
			}
		case unix.S_IFIFO, unix.S_IFSOCK:
			if err := unix.Mknodat(d, n, st.Mode&(unix.S_IFMT|0o777), 0); err != nil {
				return fmt.Errorf("create %s: %w", p, err)
			}
			c.stats.Specials++
			if err := c.attrs(d, n, &st, true); err != nil {
				return err
			}
		default:
			c.stats.Skipped++ // device nodes
		}
	}
	return nil
}

// file copies a regular file, or links it to the copy of an earlier name of the same inode.
func (c *copier) file(s, d int, n, p string, st *unix.Stat_t) error {
	key := [2]uint64{st.Dev, st.Ino}
	if st.Nlink > 1 {
		if l, ok := c.links[key]; ok {
			if err := unix.Linkat(l.dir, l.name, d, n, 0); err != nil {
				return fmt.Errorf("link %s: %w", p, err)
			}
			c.stats.Files++
			return nil
		}
	}
	in, err := unix.Openat2(s, n, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK, Resolve: resolve})
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			c.stats.Skipped++
			return nil
		}
		return fmt.Errorf("open %s: %w", p, err)
	}
	src := os.NewFile(uintptr(in), p)
	defer src.Close()
	var got unix.Stat_t
	if err := unix.Fstat(in, &got); err != nil {
		return err
	}
	if got.Mode&unix.S_IFMT != unix.S_IFREG {
		c.stats.Skipped++ // swapped for something else while copied
		return nil
	}
	out, err := unix.Openat(d, n, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	dst := os.NewFile(uintptr(out), p)
	defer dst.Close()
	// A read-only descriptor of a regular file cannot block; drop O_NONBLOCK for io.Copy.
	if _, err := unix.FcntlInt(uintptr(in), unix.F_SETFL, 0); err != nil {
		return err
	}
	// A reflink where the file system shares blocks between files (btrfs, xfs); a copy
	// where it does not, or across file systems.
	var n64 int64
	if err := unix.IoctlFileClone(out, in); err == nil {
		n64 = got.Size
	} else if n64, err = io.Copy(dst, src); err != nil {
		return fmt.Errorf("copy %s: %w", p, err)
	}
	c.stats.Files++
	c.stats.Bytes += n64
	if err := c.attrs(out, "", &got, false); err != nil {
		return err
	}
	if got.Nlink > 1 {
		dup, err := unix.Dup(d)
		if err != nil {
			return err
		}
		c.fds = append(c.fds, dup)
		c.links[key] = link{dir: dup, name: n}
	}
	return nil
}

// attrs sets owner, mode and times on name in dir fd, or on fd itself when name is "".
func (c *copier) attrs(fd int, name string, st *unix.Stat_t, isLink bool) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if name == "" {
		if err := unix.Fchownat(fd, "", int(st.Uid), int(st.Gid), unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
		// After chown, which clears set-id bits.
		if err := unix.Fchmod(fd, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
		// Our own descriptor of what we made: its magic link leads to it.
		return unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), ts, 0)
	}
	if err := unix.Fchownat(fd, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %s: %w", name, err)
	}
	if !isLink {
		if err := unix.Fchmodat(fd, name, st.Mode&0o7777, 0); err != nil {
			return fmt.Errorf("chmod %s: %w", name, err)
		}
	}
	return unix.UtimesNanoAt(fd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// readNames lists a directory through its descriptor (a duplicate, so the caller's
// offset is untouched).
func readNames(fd int) ([]string, error) {
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}
