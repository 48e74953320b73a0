package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/kopia/kopia/fs"
	"golang.org/x/sys/unix"
)

// This file is kopia's fs.Entry, fs.Directory, fs.File and fs.Symlink over descriptors:
// the volume side of a backup (see the package comment for the rules).

// resolveBeneath confines every lookup to one component below a directory descriptor:
// no symlink, no magic link, no "..", no other file system.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// testHook, set only by tests, runs before a directory ("dir") or a file ("file") is
// opened, with its path in the volume: where a test swaps entries.
var testHook func(op, rel string)

// errChanged reports an entry that changed while the backup read it.
var errChanged = errors.New("changed while the backup ran")

// volumeWalk gathers, for one volume, what kopia's snapshot cannot hold.
type volumeWalk struct {
	volume string

	mu       sync.Mutex
	links    map[inode][]string // regular files with more than one link, by inode
	specials []Special
}

type inode struct{ dev, ino uint64 }

func (w *volumeWalk) addLink(st *unix.Stat_t, rel string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := inode{st.Dev, st.Ino}
	w.links[k] = append(w.links[k], rel)
}

func (w *volumeWalk) addSpecial(st *unix.Stat_t, rel, kind string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Special{
		Volume: w.volume, Path: rel, Kind: kind,
		Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		MTime: st.Mtim.Nano(),
	}
	if kind == "char" || kind == "block" {
		s.Rdev = st.Rdev
	}
	w.specials = append(w.specials, s)
}

// linkGroups lists the paths of each file seen under more than one name, each group
// sorted and the groups sorted by their first path.
func (w *volumeWalk) linkGroups() [][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var groups [][]string
	for _, paths := range w.links {
		if len(paths) > 1 {
			g := append([]string(nil), paths...)
			sort.Strings(g)
			groups = append(groups, g)
		}
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i][0] < groups[j][0] })
	return groups
}

func (w *volumeWalk) sortedSpecials() []Special {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := append([]Special(nil), w.specials...)
	sort.Slice(s, func(i, j int) bool { return s[i].Path < s[j].Path })
	return s
}

// entry is what all our entries share: the stat of the name when it was listed.
type entry struct {
	walk   *volumeWalk
	parent *dir // nil for a volume's root
	name   string
	rel    string // path in the volume, "" for its root
	st     unix.Stat_t
}

func (e *entry) Name() string                { return e.name }
func (e *entry) Size() int64                 { return e.st.Size }
func (e *entry) Mode() os.FileMode           { return fileMode(e.st.Mode) }
func (e *entry) ModTime() time.Time          { return time.Unix(e.st.Mtim.Unix()) }
func (e *entry) IsDir() bool                 { return e.st.Mode&unix.S_IFMT == unix.S_IFDIR }
func (e *entry) Sys() any                    { return nil }
func (e *entry) Owner() fs.OwnerInfo         { return fs.OwnerInfo{UserID: e.st.Uid, GroupID: e.st.Gid} }
func (e *entry) Device() fs.DeviceInfo       { return fs.DeviceInfo{Dev: e.st.Dev, Rdev: e.st.Rdev} }
func (e *entry) LocalFilesystemPath() string { return "" } // never a path: nothing may use one
func (e *entry) Close()                      {}

// where names the entry in errors.
func (e *entry) where() string {
	return fmt.Sprintf("volume %s: %q", e.walk.volume, "/"+e.rel)
}

// same reports whether st is the inode that was listed.
func (e *entry) same(st *unix.Stat_t) bool {
	return st.Dev == e.st.Dev && st.Ino == e.st.Ino && st.Mode&unix.S_IFMT == e.st.Mode&unix.S_IFMT
}

// openPath opens the entry O_PATH, without following it, beneath its parent, and checks
// that it is still the listed inode.
func (e *entry) openPath() (int, error) {
	fd, err := unix.Openat2(e.parent.fd, e.name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: resolveBeneath,
	})
	if err != nil {
		return -1, e.openError(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %w", e.where(), err)
	}
	if !e.same(&st) {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %w", e.where(), errChanged)
	}
	return fd, nil
}

func (e *entry) openError(err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR),
		errors.Is(err, unix.EXDEV), errors.Is(err, unix.EAGAIN):
		return fmt.Errorf("%s: %w (%v)", e.where(), errChanged, err)
	}
	return fmt.Errorf("%s: %w", e.where(), err)
}

// fileMode turns a stat mode into Go's.
func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		mode |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= os.ModeSocket
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	}
	return mode
}

// unixMode turns Go's permission bits back into a stat mode's.
func unixMode(m os.FileMode) uint32 {
	mode := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		mode |= unix.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		mode |= unix.S_ISVTX
	}
	return mode
}

// dir is a directory of a volume. Its descriptor is opened when kopia first lists it
// and closed by Close, which kopia calls once the directory and all below it are done.
type dir struct {
	entry
	mu sync.Mutex
	fd int // -1 until opened
}

var _ fs.Directory = (*dir)(nil)

// openVolume opens a volume's root directory by the path the caller gave (its last
// component must not be a symlink).
func openVolume(name, hostDir string) (*dir, error) {
	fd, err := unix.Open(hostDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("volume %s: open %s: %w", name, hostDir, err)
	}
	d := &dir{entry: entry{walk: &volumeWalk{volume: name, links: map[inode][]string{}}, name: name}, fd: fd}
	if err := unix.Fstat(fd, &d.st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("volume %s: %w", name, err)
	}
	return d, nil
}

func (d *dir) open() (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd >= 0 {
		return d.fd, nil
	}
	if testHook != nil {
		testHook("dir", d.rel)
	}
	fd, err := unix.Openat2(d.parent.fd, d.name, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: resolveBeneath,
	})
	if err != nil {
		return -1, d.openError(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %w", d.where(), err)
	}
	if !d.same(&st) {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %w", d.where(), errChanged)
	}
	d.fd = fd
	return fd, nil
}

func (d *dir) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
}

func (d *dir) SupportsMultipleIterations() bool { return true }

func (d *dir) Child(ctx context.Context, name string) (fs.Entry, error) {
	fd, err := d.open()
	if err != nil {
		return nil, err
	}
	e, err := d.child(fd, name)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, fs.ErrEntryNotFound
	}
	return e, nil
}

func (d *dir) Iterate(ctx context.Context) (fs.DirectoryIterator, error) {
	fd, err := d.open()
	if err != nil {
		return nil, err
	}
	// A descriptor of its own for reading entries, so that iterations are independent.
	lfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.where(), err)
	}
	return &dirIter{d: d, fd: fd, f: os.NewFile(uintptr(lfd), d.rel)}, nil
}

// child stats name in the directory (without following it) and makes its entry; nil
// for an entry that is only recorded (a FIFO, a socket, a device, a mount point) or
// that is gone.
func (d *dir) child(fd int, name string) (fs.Entry, error) {
	e := entry{walk: d.walk, parent: d, name: name, rel: path.Join(d.rel, name)}
	err := unix.Fstatat(fd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil // removed since it was listed: not in the snapshot
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.where(), err)
	}
	switch e.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if e.st.Dev != d.st.Dev {
			d.walk.addSpecial(&e.st, e.rel, "mount")
			return nil, nil
		}
		return &dir{entry: e, fd: -1}, nil
	case unix.S_IFREG:
		if e.st.Nlink > 1 {
			d.walk.addLink(&e.st, e.rel)
		}
		return &file{e}, nil
	case unix.S_IFLNK:
		return &symlink{e}, nil
	case unix.S_IFIFO:
		d.walk.addSpecial(&e.st, e.rel, "fifo")
	case unix.S_IFSOCK:
		d.walk.addSpecial(&e.st, e.rel, "socket")
	case unix.S_IFCHR:
		d.walk.addSpecial(&e.st, e.rel, "char")
	case unix.S_IFBLK:
		d.walk.addSpecial(&e.st, e.rel, "block")
	default:
		return nil, fmt.Errorf("%s: unknown file type %#o", e.where(), e.st.Mode&unix.S_IFMT)
	}
	return nil, nil
}

type dirIter struct {
	d     *dir
	fd    int
	f     *os.File
	names []string
	done  bool
}

func (it *dirIter) Next(ctx context.Context) (fs.Entry, error) {
	for {
		if len(it.names) == 0 {
			if it.done {
				return nil, nil
			}
			names, err := it.f.Readdirnames(512)
			if errors.Is(err, io.EOF) || (err == nil && len(names) == 0) {
				it.done = true
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("%s: list: %w", it.d.where(), err)
			}
			it.names = names
		}
		name := it.names[0]
		it.names = it.names[1:]
		e, err := it.d.child(it.fd, name)
		if err != nil {
			return nil, err
		}
		if e != nil {
			return e, nil
		}
	}
}

func (it *dirIter) Close() { it.f.Close() }

// file is a regular file of a volume.
type file struct{ entry }

var _ fs.File = (*file)(nil)

// Open opens the file for reading: O_PATH first, checked to be the listed regular file,
// then reopened through that descriptor, so that nothing else is ever opened.
func (f *file) Open(ctx context.Context) (fs.Reader, error) {
	if testHook != nil {
		testHook("file", f.rel)
	}
	pfd, err := f.openPath()
	if err != nil {
		return nil, err
	}
	defer unix.Close(pfd)
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: open: %w", f.where(), err)
	}
	return &fileReader{File: os.NewFile(uintptr(fd), f.rel), f: f}, nil
}

type fileReader struct {
	*os.File
	f *file
}

func (r *fileReader) Entry() (fs.Entry, error) { return r.f, nil }

// symlink is a symbolic link of a volume: stored as its target text, never followed.
type symlink struct{ entry }

var _ fs.Symlink = (*symlink)(nil)

func (s *symlink) Readlink(ctx context.Context) (string, error) {
	fd, err := s.openPath()
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", fmt.Errorf("%s: readlink: %w", s.where(), err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
		if size > unix.PathMax {
			return "", fmt.Errorf("%s: readlink: target longer than %d bytes", s.where(), unix.PathMax)
		}
	}
}

func (s *symlink) Resolve(ctx context.Context) (fs.Entry, error) {
	return nil, fmt.Errorf("%s: symlinks of a volume are never followed", s.where())
}
