// Package unpack applies image layers (tar streams) onto a directory safely: no entry can
// write outside the root — not through "..", an absolute name, a symlink (in the entry's
// path or as a hardlink's target) or a whiteout — device nodes are refused, limits on
// size and entry count hold, and ownership, modes (set-id bits too), xattrs and times are
// kept. Every file operation is relative to a directory descriptor opened with
// openat2(RESOLVE_BENEATH), so the kernel, not string checks, guarantees the confinement.
package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Whiteout markers of the OCI image layer format.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// Limits bound what layers may write. Zero fields take the defaults.
type Limits struct {
	// MaxBytes bounds the sum of regular file sizes over all layers.
	MaxBytes int64
	// MaxEntries bounds the number of tar entries over all layers.
	MaxEntries int64
	// AllowDevices lets character and block device nodes through (refused by default).
	AllowDevices bool
}

// Defaults for Limits.
const (
	DefaultMaxBytes   = 16 << 30
	DefaultMaxEntries = 2_000_000
)

// ErrRefused marks an entry refused as unsafe or over a limit.
var ErrRefused = errors.New("refused")

// EntryError names the layer and entry that could not be applied.
type EntryError struct {
	Layer int
	Entry string
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("layer %d, entry %q: %v", e.Layer+1, e.Entry, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

func refuse(format string, a ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), ErrRefused)
}

// Stats counts what was applied.
type Stats struct {
	Entries int64
	Bytes   int64
}

// Unpacker applies layers, in order, onto one root directory.
type Unpacker struct {
	root   int // O_PATH descriptor of the root
	limits Limits
	stats  Stats
	layer  int
	// The parent directory of the last entry, kept open: a tar lists a directory's
	// entries together, so most entries need no path walk. Whiteouts forget it: they
	// may remove it (see parentOf).
	parent    int
	parentDir string
	buf       []byte // copy buffer, reused
	// Progress, when set, is called with the bytes written so far, at most every 256 KiB (copyBuffer).
	Progress func(Stats)
}

// New opens root (an existing, empty directory) for unpacking.
func New(root string, limits Limits) (*Unpacker, error) {
	if limits.MaxBytes == 0 {
		limits.MaxBytes = DefaultMaxBytes
	}
	if limits.MaxEntries == 0 {
		limits.MaxEntries = DefaultMaxEntries
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open unpack root %s: %w", root, err)
	}
	return &Unpacker{root: fd, limits: limits, parent: -1}, nil
}

// Close releases the root descriptor.
func (u *Unpacker) Close() error {
	u.forgetParent()
	return unix.Close(u.root)
}

// Stats reports what was applied so far.
func (u *Unpacker) Stats() Stats { return u.stats }

type dirTime struct {
	name  string
	mtime time.Time
}

// Apply applies one layer (an uncompressed tar stream) on top of what is there.
func (u *Unpacker) Apply(r io.Reader) error {
	layer := u.layer
	u.layer++
	tr := tar.NewReader(r)
	written := map[string]bool{} // paths this layer wrote, which its opaque markers spare
	var dirs []dirTime
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("layer %d: read tar: %w", layer+1, err)
		}
		name, err := u.apply(hdr, tr, written)
		if err != nil {
			return &EntryError{Layer: layer, Entry: hdr.Name, Err: err}
		}
		if hdr.Typeflag == tar.TypeDir && name != "" {
			dirs = append(dirs, dirTime{name, hdr.ModTime})
		}
	}
	// Directory times last: writing into a directory changes its mtime.
	for _, d := range dirs {
		_ = u.setDirTimes(d.name, d.mtime)
	}
	return nil
}

// clean turns an entry name into a path relative to the root, refusing absolute names
// and any ".." component.
func clean(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", refuse("name contains a NUL byte")
	}
	if strings.HasPrefix(name, "/") {
		return "", refuse("absolute path")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", refuse("'..' in path")
		}
	}
	p := path.Clean(name)
	if p == "." {
		return "", nil
	}
	return p, nil
}

func (u *Unpacker) apply(hdr *tar.Header, r io.Reader, written map[string]bool) (string, error) {
	u.stats.Entries++
	if u.stats.Entries > u.limits.MaxEntries {
		return "", refuse("more than %d entries in the image", u.limits.MaxEntries)
	}
	name, err := clean(hdr.Name)
	if err != nil {
		return "", err
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")

	// Whiteouts delete from lower layers; they never create anything.
	if base == opaqueMarker || strings.HasPrefix(base, whiteoutPrefix) {
		u.forgetParent() // it may be what they delete
	}
	if base == opaqueMarker {
		return "", u.opaque(dir, written)
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		target := strings.TrimPrefix(base, whiteoutPrefix)
		if target == "" || target == "." || target == ".." {
			return "", refuse("whiteout of %q", target)
		}
		return "", u.whiteout(dir, target)
	}
	if name == "" {
		// The root itself: take its metadata.
		if hdr.Typeflag != tar.TypeDir {
			return "", refuse("the root entry is not a directory")
		}
		return "", u.setMeta(u.root, "", hdr)
	}

	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		if hdr.Size < 0 || hdr.Size > u.limits.MaxBytes-u.stats.Bytes {
			return "", refuse("declared size %d bytes exceeds the remaining limit of %d (of %d) bytes", hdr.Size, u.limits.MaxBytes-u.stats.Bytes, u.limits.MaxBytes)
		}
	case tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	case tar.TypeChar, tar.TypeBlock:
		if !u.limits.AllowDevices {
			return "", refuse("device node (%c %d:%d); images may not carry devices", hdr.Typeflag, hdr.Devmajor, hdr.Devminor)
		}
	case tar.TypeXGlobalHeader:
		return "", nil
	default:
		return "", refuse("unsupported entry type %q", hdr.Typeflag)
	}

	parent, err := u.parentOf(dir)
	if err != nil {
		return "", err
	}
	written[name] = true

	if hdr.Typeflag == tar.TypeDir {
		var st unix.Stat_t
		err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := removeAt(parent, base); err != nil {
				return "", err
			}
			err = unix.ENOENT
		}
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(parent, base, 0o700); err != nil {
				return "", fmt.Errorf("mkdir: %w", err)
			}
		} else if err != nil {
			return "", err
		}
		fd, err := unix.Openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("open directory: %w", err)
		}
		defer unix.Close(fd)
		return name, setMetaOpen(fd, hdr)
	}

	// Anything else replaces what is at the path: made anew, what was there removed
	// first (each maker below fails with EEXIST when something was).
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		fd := -1
		err := replacing(parent, base, func() (err error) {
			fd, err = unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			return err
		})
		if err != nil {
			return "", fmt.Errorf("create: %w", err)
		}
		err = u.copyInto(fd, r, hdr.Size)
		if err == nil {
			err = setMetaOpen(fd, hdr)
		}
		if cerr := unix.Close(fd); err == nil {
			err = cerr
		}
		return name, err
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return "", refuse("symlink with an empty target")
		}
		if err := replacing(parent, base, func() error { return unix.Symlinkat(hdr.Linkname, parent, base) }); err != nil {
			return "", fmt.Errorf("symlink: %w", err)
		}
		return name, u.setMeta(parent, base, hdr)
	case tar.TypeLink:
		target, err := clean(hdr.Linkname)
		if err != nil {
			return "", refuse("hardlink target %q: %v", hdr.Linkname, err)
		}
		if target == "" {
			return "", refuse("hardlink to the root")
		}
		if target == name {
			return "", refuse("hardlink to itself")
		}
		tdir, tbase := path.Split(target)
		tparent, err := u.openDir(strings.TrimSuffix(tdir, "/"), false)
		if err != nil {
			return "", refuse("hardlink target %q: %v", hdr.Linkname, err)
		}
		defer unix.Close(tparent)
		var st unix.Stat_t
		if err := unix.Fstatat(tparent, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return "", refuse("hardlink target %q does not exist in the image", hdr.Linkname)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return "", refuse("hardlink to directory %q", hdr.Linkname)
		}
		if err := replacing(parent, base, func() error { return unix.Linkat(tparent, tbase, parent, base, 0) }); err != nil {
			return "", fmt.Errorf("link: %w", err)
		}
		return name, nil
	case tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
		mode := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		if err := replacing(parent, base, func() error { return unix.Mknodat(parent, base, mode|0o600, dev) }); err != nil {
			return "", fmt.Errorf("mknod: %w", err)
		}
		return name, u.setMeta(parent, base, hdr)
	}
	return "", refuse("unsupported entry type %q", hdr.Typeflag)
}

// copyBuffer is the most copyInto writes at once.
const copyBuffer = 256 << 10

// copyInto writes exactly size bytes from r into fd, counting them against the limit.
func (u *Unpacker) copyInto(fd int, r io.Reader, size int64) error {
	if u.buf == nil {
		u.buf = make([]byte, copyBuffer)
	}
	buf := u.buf
	var done int64
	for done < size {
		n, err := r.Read(buf[:min(int64(len(buf)), size-done)])
		if n > 0 {
			if _, werr := writeAll(fd, buf[:n]); werr != nil {
				return fmt.Errorf("write: %w", werr)
			}
			done += int64(n)
			u.stats.Bytes += int64(n)
			if u.Progress != nil {
				u.Progress(u.stats)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
	}
	if done != size {
		return fmt.Errorf("truncated: %d of %d bytes", done, size)
	}
	return nil
}

func writeAll(fd int, b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return total, err
		}
		total += n
		b = b[n:]
	}
	return total, nil
}
