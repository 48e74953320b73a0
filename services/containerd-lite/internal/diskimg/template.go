package diskimg

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/errdefs"
)

// templateFormat names the way a template becomes an image (superblock.go, copySparse).
// Change it when that changes, so that no template made for the old way is used.
const templateFormat = "1"

// DefaultKeep is how many templates Templates keeps: packages mostly share a few disk
// sizes, and a template takes a few MiB of host space (about 4 MiB for 8 GiB).
const DefaultKeep = 4

// Templates makes images by copying a template: mkfs.ext4 runs once per size and owner,
// and each image is a sparse copy of the template's metadata, with a UUID and a directory
// hash seed of its own written into its superblocks. An 8 GiB image takes about 5 ms
// where mkfs.ext4 takes 14-19: what is left is writing and syncing the 4 MiB that mke2fs
// writes at any size (the group descriptor blocks reserved for growth), the floor of
// either way on a file system that cannot share blocks between files.
//
// The templates live in a directory of their own, the host's alone (0700); it must not be
// reachable from a container. A template is made like an image (a temporary name, synced,
// renamed), so a crash never leaves a half-made one under a template's name, and its name
// holds its size, its owner and a digest of how it is made (mkfsArgs, the mkfs.ext4
// binary, mke2fs's configuration, templateFormat), so a template made otherwise is never
// used. A template under the right name whose superblocks do not describe that file system
// is removed and made again. Only the keep most recently used templates are kept.
//
// With spares on (WithSpares), each template also has one image made ahead beside it,
// after each image made from it, in the background: the next image of that size and owner
// is that spare, renamed into place (a rename and two directory syncs, where a copy writes
// and syncs 4 MiB). A spare is made as any image is (a temporary name, synced, renamed),
// with a UUID and hash seed of its own, so a crash leaves it whole or not there; a
// half-made one is removed when the next is made, or by the next prune.
//
// The spare that replaces a spare taken is made once the image taken was first mounted
// (Mounted), or fillDelay after the take, whichever comes first: an image is taken to be
// mounted soon (a container's create, then its start), and a spare made meanwhile slowed
// that first mount by ~1.6 ms of its 2.2 (its sync and the mount's flush of the image
// through the loop device queue on the same disk).
type Templates struct {
	dir    string
	keep   int
	log    *slog.Logger
	mu     sync.Mutex // serialises making and pruning templates, taking spares, filling
	made   bool       // dir is made
	spares bool
	// filling names the spares being made now (by file name), so that a prune leaves
	// their temporaries alone and a spare is made once at a time.
	filling map[string]bool
	filled  *sync.Cond     // on mu: a spare being made is done
	wg      sync.WaitGroup // the spares being made, and those deferred
	// deferred are the spares to make after a take, by the path of the image taken: see
	// Templates. Each holds a count of wg until it runs.
	deferred  map[string]*deferredFill
	fillDelay time.Duration
}

// fillDelay is how long after a take its spare is made when the image taken is not
// mounted before.
const fillDelay = time.Second

type deferredFill struct {
	timer *time.Timer
	fill  func()
}

// spareSuffix ends the file name of a template's spare: <template name>.spare.
const spareSuffix = ".spare"

// WithSpares turns spares on (see Templates) and returns t.
func (t *Templates) WithSpares() *Templates {
	t.spares = true
	return t
}

// Wait makes the spares deferred now, and waits for the spares being made.
func (t *Templates) Wait() {
	t.mu.Lock()
	paths := slices.Collect(maps.Keys(t.deferred))
	t.mu.Unlock()
	for _, p := range paths {
		t.Mounted(p)
	}
	t.wg.Wait()
}

// Mounted says that the image at path was mounted: the spare deferred after it was taken
// (if it was one) is made now.
func (t *Templates) Mounted(path string) {
	t.mu.Lock()
	d := t.deferred[path]
	delete(t.deferred, path)
	t.mu.Unlock()
	if d == nil {
		return
	}
	d.timer.Stop()
	d.fill()
	t.wg.Done()
}

// fillAfter defers fill until the image at path is mounted or fillDelay passed.
func (t *Templates) fillAfter(path string, fill func()) {
	delay := t.fillDelay
	if delay == 0 {
		delay = fillDelay
	}
	t.mu.Lock()
	if t.deferred == nil {
		t.deferred = map[string]*deferredFill{}
	}
	old := t.deferred[path]
	t.wg.Add(1)
	t.deferred[path] = &deferredFill{timer: time.AfterFunc(delay, func() { t.Mounted(path) }), fill: fill}
	t.mu.Unlock()
	if old != nil {
		// An image made again at the same path before the last was mounted: the last
		// one's spare is made now.
		old.timer.Stop()
		old.fill()
		t.wg.Done()
	}
}

// NewTemplates returns the templates kept in dir, which is made (0700) when the first
// template is. keep bounds how many are kept; 0 or less means DefaultKeep.
func NewTemplates(dir string, keep int, log *slog.Logger) *Templates {
	if keep <= 0 {
		keep = DefaultKeep
	}
	if log == nil {
		log = slog.Default()
	}
	return &Templates{dir: dir, keep: keep, log: log}
}

// openDir makes the template directory if it is not yet, host-only whatever the umask,
// and opens it.
func (t *Templates) openDir() (int, error) {
	if !t.made {
		if err := os.Mkdir(t.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return -1, fmt.Errorf("disk image templates: %w", kind(err))
		}
		if err := os.Chmod(t.dir, 0o700); err != nil {
			return -1, fmt.Errorf("disk image templates: %w", kind(err))
		}
		t.made = true
	}
	fd, err := unix.Open(t.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("disk image templates %s: %w", t.dir, kind(err))
	}
	return fd, nil
}

// Create makes the image Create would, from a template: same size, same owner, same
// options, same contract (a temporary name beside path, synced, renamed into place only
// when complete; an existing path is an error), a file system of its own.
func (t *Templates) Create(path string, size int64, uid, gid int) error {
	size, mkfs, err := checkCreate(path, size, uid, gid)
	if err != nil {
		return err
	}
	if t.spares {
		name, err := templateName(mkfs, size, uid, gid)
		if err != nil {
			return err
		}
		fill := func() { t.fill(name, mkfs, size, uid, gid) }
		took, err := t.takeSpare(name+spareSuffix, path, size)
		switch {
		case took && err == nil:
			t.fillAfter(path, fill)
			return nil
		case took || err != nil:
			fill()
			return err
		}
		defer fill()
	}
	return create(path, size, t.copyInto(mkfs, size, uid, gid))
}

// copyInto returns create's fill for a copy of the template for size and uid:gid.
func (t *Templates) copyInto(mkfs string, size int64, uid, gid int) func(*os.File) error {
	return func(f *os.File) error {
		src, sbs, err := t.open(mkfs, size, uid, gid)
		if err != nil {
			return err
		}
		defer src.Close()
		if err := copySparse(src, f, size); err != nil {
			return fmt.Errorf("copy template %s: %w", src.Name(), err)
		}
		return relabel(f, sbs)
	}
}

// takeSpare renames the spare named spare to path, if there is one of size bytes, and
// reports whether it did. A spare being made is waited for: it is further along than a
// copy begun now. Like create, it never replaces a file at path, and syncs both
// directories: the image is at path, whole, or still a spare, whatever happens.
func (t *Templates) takeSpare(spare, path string, size int64) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.filling[spare] {
		t.filled.Wait()
	}
	dirFD, err := t.openDir()
	if err != nil {
		return false, err
	}
	defer unix.Close(dirFD)
	var st unix.Stat_t
	if err := unix.Fstatat(dirFD, spare, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, nil // none (or none readable: a copy is made instead)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != size {
		t.log.Warn("disk image template: a spare that is not a file of its size: removing it", "spare", spare)
		t.remove(dirFD, spare)
		return false, nil
	}
	toFD, _, err := openParent(path)
	if err != nil {
		return false, err
	}
	defer unix.Close(toFD)
	if err := place(dirFD, spare, toFD, path); err != nil {
		return false, err
	}
	if err := unix.Fsync(toFD); err != nil {
		return true, fmt.Errorf("disk image %s: sync its directory: %w", path, err)
	}
	if err := unix.Fsync(dirFD); err != nil {
		return true, fmt.Errorf("disk image %s: sync the templates' directory: %w", path, err)
	}
	return true, nil
}

// fill makes the spare of the template name in the background, unless it is there or
// being made.
func (t *Templates) fill(name, mkfs string, size int64, uid, gid int) {
	spare := name + spareSuffix
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.filling[spare] {
		return
	}
	var st unix.Stat_t
	if unix.Lstat(filepath.Join(t.dir, spare), &st) == nil {
		return
	}
	if t.filling == nil {
		t.filling, t.filled = map[string]bool{}, sync.NewCond(&t.mu)
	}
	t.filling[spare] = true
	t.wg.Go(func() {
		err := create(filepath.Join(t.dir, spare), size, t.copyInto(mkfs, size, uid, gid))
		t.mu.Lock()
		delete(t.filling, spare)
		t.filled.Broadcast()
		t.mu.Unlock()
		if err != nil {
			t.log.Warn("disk image template: make a spare", "spare", spare, "error", err)
		}
	})
}

// open opens the template for size and uid:gid, making it if there is none or if the one
// there is unusable, and returns it with its superblocks.
func (t *Templates) open(mkfs string, size int64, uid, gid int) (*os.File, []superblock, error) {
	name, err := templateName(mkfs, size, uid, gid)
	if err != nil {
		return nil, nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	dirFD, err := t.openDir()
	if err != nil {
		return nil, nil, err
	}
	defer unix.Close(dirFD)

	f, sbs, err := openTemplate(dirFD, t.dir, name, size)
	if err == nil {
		t.used(dirFD, name)
		return f, sbs, nil
	}
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.log.Warn("disk image template unusable: making it again", "template", name, "error", err)
		if err := unix.Unlinkat(dirFD, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, nil, fmt.Errorf("remove unusable template %s: %w", name, err)
		}
	}
	if err := create(filepath.Join(t.dir, name), size, func(f *os.File) error { return format(mkfs, f, uid, gid) }); err != nil {
		return nil, nil, fmt.Errorf("make template: %w", err)
	}
	t.prune(dirFD, name)
	f, sbs, err = openTemplate(dirFD, t.dir, name, size)
	if err != nil {
		return nil, nil, fmt.Errorf("mkfs.ext4 made a template that cannot be copied: %w", err)
	}
	return f, sbs, nil
}

// templateName is the file name of the template for size and uid:gid made by mkfs. It
// holds a digest of everything that decides what mkfs makes, so a change to any of it
// (an upgrade of e2fsprogs, its configuration) leads to a new template.
func templateName(mkfs string, size int64, uid, gid int) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "format %s\nargs %q\n", templateFormat, mkfsArgs(uid, gid))
	fi, err := os.Stat(mkfs)
	if err != nil {
		return "", fmt.Errorf("mkfs.ext4 %s: %w", mkfs, kind(err))
	}
	fmt.Fprintf(h, "mkfs %s %d %d\n", mkfs, fi.Size(), fi.ModTime().UnixNano())
	conf := os.Getenv("MKE2FS_CONFIG")
	if conf == "" {
		conf = "/etc/mke2fs.conf"
	}
	b, err := os.ReadFile(conf)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("mke2fs configuration %s: %w", conf, err)
	}
	fmt.Fprintf(h, "conf %s %q\n", conf, b)
	return fmt.Sprintf("ext4-%d-%d.%d-%s.img", size, uid, gid, hex.EncodeToString(h.Sum(nil)[:8])), nil
}

// openTemplate opens the template name in dirFD and checks that it is the file system
// it should be; ErrNotFound if there is none.
func openTemplate(dirFD int, dir, name string, size int64) (*os.File, []superblock, error) {
	fd, err := unix.Openat(dirFD, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("template %s: %w", name, kind(err))
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, name))
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("template %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != size {
		f.Close()
		return nil, nil, fmt.Errorf("template %s is not a file of %d bytes: %w", name, size, errdefs.ErrFailedPrecondition)
	}
	sbs, err := superblocks(f, size)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("template %s: %w", name, err)
	}
	return f, sbs, nil
}

// used marks the template name as just used: prune keeps the most recently used.
func (t *Templates) used(dirFD int, name string) {
	now := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_NOW}}
	if err := unix.UtimesNanoAt(dirFD, name, now, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.log.Warn("disk image template: mark it used", "template", name, "error", err)
	}
}

// prune removes all but the keep most recently used templates, never keep (the one just
// made), and the temporaries of templates a crash left half-made.
func (t *Templates) prune(dirFD int, keep string) {
	ents, err := os.ReadDir(t.dir)
	if err != nil {
		t.log.Warn("disk image templates: list them", "error", err)
		return
	}
	type tpl struct {
		name  string
		mtime int64
	}
	var tpls []tpl
	var spares []string
	for _, e := range ents {
		name := e.Name()
		var st unix.Stat_t
		switch {
		case strings.HasSuffix(name, ".mkfs-tmp"):
			if !t.filling[strings.TrimSuffix(name, ".mkfs-tmp")] {
				t.remove(dirFD, name)
			}
		case strings.HasSuffix(name, spareSuffix):
			spares = append(spares, name)
		case name == keep || !strings.HasSuffix(name, ".img"):
		case unix.Fstatat(dirFD, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil:
			tpls = append(tpls, tpl{name, st.Mtim.Nano()})
		}
	}
	slices.SortFunc(tpls, func(a, b tpl) int { return cmp.Compare(b.mtime, a.mtime) })
	kept := map[string]bool{keep: true}
	for i, tp := range tpls {
		if i >= t.keep-1 {
			t.remove(dirFD, tp.name)
		} else {
			kept[tp.name] = true
		}
	}
	// The spares of templates removed (a spare being made is not listed yet).
	for _, sp := range spares {
		if !kept[strings.TrimSuffix(sp, spareSuffix)] {
			t.remove(dirFD, sp)
		}
	}
}

func (t *Templates) remove(dirFD int, name string) {
	if err := unix.Unlinkat(dirFD, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		t.log.Warn("disk image templates: remove one", "template", name, "error", err)
	}
}

// copySparse copies the size bytes of src to dst, which is size bytes of holes already,
// extent by extent: the data src holds is copied in the kernel (copy_file_range, which
// may share the blocks on a file system that can), and its holes stay holes in dst.
func copySparse(src, dst *os.File, size int64) error {
	return dataExtents(src, size, func(off, n int64) error { return copyRange(src, dst, off, n) })
}

// dataExtents calls fn for each extent of data of the first size bytes of f, in order, as
// SEEK_DATA and SEEK_HOLE find them: the holes between them read as zeroes.
func dataExtents(f *os.File, size int64, fn func(off, n int64) error) error {
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) { // only a hole is left
			return nil
		}
		if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		if data >= size {
			return nil
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		hole = min(hole, size)
		if err := fn(data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// copyRange copies n bytes at off from src to dst at the same offset with
// copy_file_range, or through a buffer where the kernel cannot copy between the two.
func copyRange(src, dst *os.File, off, n int64) error {
	sfd, dfd := int(src.Fd()), int(dst.Fd())
	roff, woff := off, off
	for n > 0 {
		c, err := unix.CopyFileRange(sfd, &roff, dfd, &woff, int(min(n, 1<<30)), 0)
		switch {
		case errors.Is(err, unix.EXDEV), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
			return copyRangeRW(src, dst, roff, n)
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("copy_file_range: %w", err)
		case c == 0:
			return fmt.Errorf("the template ended %d bytes early: %w", n, errdefs.ErrFailedPrecondition)
		}
		n -= int64(c)
	}
	return nil
}

// copyRangeRW is copyRange through a buffer.
func copyRangeRW(src, dst *os.File, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		b := buf[:min(n, int64(len(buf)))]
		if _, err := src.ReadAt(b, off); err != nil {
			return fmt.Errorf("read the template: %w", err)
		}
		if _, err := dst.WriteAt(b, off); err != nil {
			return err
		}
		off, n = off+int64(len(b)), n-int64(len(b))
	}
	return nil
}
