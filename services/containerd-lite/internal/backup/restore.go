package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/restore"
	"github.com/kopia/kopia/snapshot/snapshotfs"
	"golang.org/x/sys/unix"

	"hearth.dev/internal/errdefs"
)

// Restore restores the volumes of snapshot id named in into (volume name -> an empty
// directory the caller made; its own owner, mode and time become the volume root's)
// and returns the snapshot's Meta. Every volume named must be in the snapshot (the
// snapshot's others are left out). Nothing is written before every target has been
// opened and found empty.
//
// Restore reads the repository as it writes: should it meet damage, what it wrote so far
// stays in the targets, for the caller to remove. To find damage before writing
// anything, run Verify first.
func (r *Repo) Restore(ctx context.Context, id string, into map[string]string, progress func(Progress)) (Meta, error) {
	if err := r.check(); err != nil {
		return Meta{}, err
	}
	unlock, err := r.lock(ctx, unix.LOCK_SH)
	if err != nil {
		return Meta{}, err
	}
	defer unlock()
	snap, err := r.openSnapshot(ctx, r.rep, id)
	if err != nil {
		return Meta{}, err
	}
	what := "restore " + snap.man.Source.Path + " snapshot " + id

	names := make([]string, 0, len(into))
	for name := range into {
		names = append(names, name)
	}
	sort.Strings(names)
	type target struct {
		name  string
		fd    int
		src   fs.Directory
		mtime time.Time
		vi    *volumeIndex
	}
	var targets []target
	defer func() {
		for _, t := range targets {
			unix.Close(t.fd)
		}
	}()
	for _, name := range names {
		vi, ok := snap.idx.Volumes[name]
		if !ok {
			return Meta{}, fmt.Errorf("%s: no volume %q in the snapshot (it has %s): %w",
				what, name, strings.Join(snap.volumeNames(), ", "), errdefs.ErrNotFound)
		}
		src, mtime, err := snap.volume(ctx, r.rep, name)
		if err != nil {
			return Meta{}, classify(err, r.dir, what)
		}
		fd, err := openTarget(into[name])
		if err != nil {
			return Meta{}, fmt.Errorf("%s: volume %s: %w", what, name, err)
		}
		targets = append(targets, target{name, fd, src, mtime, vi})
	}

	rep := &reporter{cb: progress}
	defer rep.report(true)
	for _, t := range targets {
		if err := r.restoreVolume(ctx, t.src, t.mtime, t.fd, t.name, t.vi, rep); err != nil {
			return Meta{}, fmt.Errorf("%s: %w", what, err)
		}
	}
	return snap.idx.Meta, nil
}

// openTarget opens a restore target: a directory (not a symlink to one), empty.
func openTarget(p string) (int, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("target %s: %w (make it an empty directory): %w", p, err, errdefs.ErrInvalidArgument)
	}
	dfd, err := unix.Dup(fd)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	f := os.NewFile(uintptr(dfd), p)
	names, err := f.Readdirnames(1)
	f.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		unix.Close(fd)
		return -1, fmt.Errorf("target %s: %w", p, err)
	}
	if len(names) > 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("target %s %w (found %q): restore into an empty directory: %w",
			p, errNotEmpty, names[0], errdefs.ErrFailedPrecondition)
	}
	return fd, nil
}

// restoreVolume writes the tree src below the directory root (through descriptors
// only), then makes the links and FIFOs of vi, then sets the directories' owners,
// modes and times, deepest first.
func (r *Repo) restoreVolume(ctx context.Context, src fs.Directory, rootTime time.Time, root int, volume string, vi *volumeIndex, rep *reporter) error {
	out := &restoreOutput{root: root, volume: volume, rep: rep, linked: map[string]string{},
		repo: r.rep, mtimes: map[string]time.Time{"": rootTime}}
	for _, g := range vi.Links {
		for _, p := range g[1:] {
			out.linked[p] = g[0]
		}
	}
	_, err := restore.Entry(ctx, r.rep, out, src, restore.Options{
		Parallel:               r.opts.Parallel,
		RestoreDirEntryAtDepth: math.MaxInt32,
	})
	if err != nil {
		var w *writeError
		if errors.As(err, &w) {
			return w
		}
		return classify(err, r.dir, "volume "+volume)
	}
	for _, g := range vi.Links {
		for _, p := range g[1:] {
			if err := out.link(g[0], p); err != nil {
				return err
			}
		}
	}
	for _, s := range vi.Special {
		if s.Kind != "fifo" {
			continue
		}
		if err := out.mkfifo(s); err != nil {
			return err
		}
	}
	return out.finishDirs()
}

// writeError is an error met writing a target (not reading the repository).
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// restoreOutput is kopia's restore.Output writing below a directory descriptor.
type restoreOutput struct {
	root   int
	volume string
	rep    *reporter
	linked map[string]string // path -> the path it is a link to (made after the tree)

	// kopia's snapshot reader gives a directory the newest time found below it; the
	// directories' own times are read from their parents' listings, by path.
	repo repo.Repository

	mu     sync.Mutex
	dirs   []dirMeta
	mtimes map[string]time.Time
}

// dirTimes reads the modification times of the directories listed in directory object
// d (by name), as stored.
func dirTimes(ctx context.Context, rep repo.Repository, d fs.Directory) (map[string]time.Time, error) {
	h, ok := d.(object.HasObjectID)
	if !ok {
		return nil, fmt.Errorf("directory %q has no object", d.Name())
	}
	rd, err := rep.OpenObject(ctx, h.ObjectID())
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var dm snapshot.DirManifest
	if err := json.NewDecoder(rd).Decode(&dm); err != nil {
		return nil, fmt.Errorf("directory %q: %w", d.Name(), err)
	}
	out := map[string]time.Time{}
	for _, e := range dm.Entries {
		if e.Type == snapshot.EntryTypeDirectory {
			out[e.Name] = e.ModTime.ToTime()
		}
	}
	return out, nil
}

type dirMeta struct {
	rel      string
	uid, gid uint32
	mode     uint32
	mtime    time.Time
}

var _ restore.Output = (*restoreOutput)(nil)

func (o *restoreOutput) fail(rel, op string, err error) error {
	return &writeError{fmt.Errorf("volume %s: %s %q: %w", o.volume, op, "/"+rel, err)}
}

// parent opens the parent directory of rel O_PATH below the root (no symlink, no
// "..", no magic link, no other file system) and returns it with rel's last component.
func (o *restoreOutput) parent(rel string) (int, string, error) {
	for _, c := range strings.Split(rel, "/") {
		if c == "" || c == "." || c == ".." {
			return -1, "", o.fail(rel, "check", fmt.Errorf("invalid path in snapshot: %w", errdefs.ErrInvalidArgument))
		}
	}
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	fd, err := unix.Openat2(o.root, dir, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: resolveBeneath,
	})
	if err != nil {
		return -1, "", o.fail(rel, "open parent of", err)
	}
	return fd, base, nil
}

func (o *restoreOutput) Parallelizable() bool { return true }

func (o *restoreOutput) BeginDirectory(ctx context.Context, rel string, e fs.Directory) error {
	times, err := dirTimes(ctx, o.repo, e)
	if err != nil {
		return fmt.Errorf("volume %s: read %q: %w", o.volume, "/"+rel, err)
	}
	o.mu.Lock()
	for name, t := range times {
		o.mtimes[path.Join(rel, name)] = t
	}
	o.mu.Unlock()
	if rel == "" {
		return nil // the target itself
	}
	pfd, base, err := o.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
		return o.fail(rel, "mkdir", err)
	}
	return nil
}

func (o *restoreOutput) FinishDirectory(ctx context.Context, rel string, e fs.Directory) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.mtimes[rel]
	if !ok {
		return fmt.Errorf("volume %s: %q: no time in its parent's listing", o.volume, "/"+rel)
	}
	o.dirs = append(o.dirs, dirMeta{rel: rel, uid: e.Owner().UserID, gid: e.Owner().GroupID,
		mode: unixMode(e.Mode()), mtime: t})
	return nil
}

func (o *restoreOutput) WriteDirEntry(ctx context.Context, rel string, de *snapshot.DirEntry, e fs.Directory) error {
	return o.fail(rel, "write", errors.New("shallow restore is not supported"))
}

func (o *restoreOutput) WriteFile(ctx context.Context, rel string, e fs.File, cb restore.FileWriteProgress) error {
	if _, ok := o.linked[rel]; ok {
		return nil // a link to another path, made after the tree
	}
	pfd, base, err := o.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return o.fail(rel, "create", err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	src, err := e.Open(ctx)
	if err != nil {
		return fmt.Errorf("volume %s: read %q: %w", o.volume, "/"+rel, err)
	}
	defer src.Close()
	n, err := io.Copy(f, &countingReader{r: src, rep: o.rep})
	if err != nil {
		var we *os.PathError
		if errors.As(err, &we) && we.Op == "write" {
			return o.fail(rel, "write", err)
		}
		return fmt.Errorf("volume %s: read %q: %w", o.volume, "/"+rel, err)
	}
	if n != e.Size() {
		return fmt.Errorf("volume %s: read %q: %d bytes where the snapshot says %d", o.volume, "/"+rel, n, e.Size())
	}
	if err := setMeta(fd, e); err != nil {
		return o.fail(rel, "set owner, mode and time of", err)
	}
	o.rep.files.Add(1)
	o.rep.report(false)
	return nil
}

// setMeta sets a new file's owner, then its mode (a chown clears setuid and setgid),
// then its times.
func setMeta(fd int, e fs.Entry) error {
	if err := unix.Fchown(fd, int(e.Owner().UserID), int(e.Owner().GroupID)); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, unixMode(e.Mode())); err != nil {
		return err
	}
	return futimes(fd, e.ModTime())
}

func futimes(fd int, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(fd, "", []unix.Timespec{ts, ts}, unix.AT_EMPTY_PATH)
}

func (o *restoreOutput) FileExists(ctx context.Context, rel string, e fs.File) bool { return false }

func (o *restoreOutput) CreateSymlink(ctx context.Context, rel string, e fs.Symlink) error {
	target, err := e.Readlink(ctx)
	if err != nil {
		return fmt.Errorf("volume %s: read %q: %w", o.volume, "/"+rel, err)
	}
	pfd, base, err := o.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Symlinkat(target, pfd, base); err != nil {
		return o.fail(rel, "symlink", err)
	}
	if err := unix.Fchownat(pfd, base, int(e.Owner().UserID), int(e.Owner().GroupID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return o.fail(rel, "chown", err)
	}
	ts := unix.NsecToTimespec(e.ModTime().UnixNano())
	if err := unix.UtimesNanoAt(pfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return o.fail(rel, "set time of", err)
	}
	return nil
}

func (o *restoreOutput) SymlinkExists(ctx context.Context, rel string, e fs.Symlink) bool {
	return false
}

func (o *restoreOutput) Close(ctx context.Context) error { return nil }

// link makes rel a hard link to first, both below the root, following neither.
func (o *restoreOutput) link(first, rel string) error {
	ofd, obase, err := o.parent(first)
	if err != nil {
		return err
	}
	defer unix.Close(ofd)
	nfd, nbase, err := o.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(nfd)
	if err := unix.Linkat(ofd, obase, nfd, nbase, 0); err != nil {
		return o.fail(rel, "link to "+first+":", err)
	}
	return nil
}

// mkfifo makes a FIFO as recorded (never a device node).
func (o *restoreOutput) mkfifo(s Special) error {
	pfd, base, err := o.parent(s.Path)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Mknodat(pfd, base, unix.S_IFIFO|0o600, 0); err != nil {
		return o.fail(s.Path, "mkfifo", err)
	}
	if err := unix.Fchownat(pfd, base, int(s.UID), int(s.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return o.fail(s.Path, "chown", err)
	}
	if err := unix.Fchmodat(pfd, base, s.Mode&0o7777, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return o.fail(s.Path, "chmod", err)
	}
	ts := unix.NsecToTimespec(s.MTime)
	if err := unix.UtimesNanoAt(pfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return o.fail(s.Path, "set time of", err)
	}
	return nil
}

// finishDirs sets the directories' owners, modes and times, deepest first (so that
// nothing written below a directory changes its time afterwards).
func (o *restoreOutput) finishDirs() error {
	sort.Slice(o.dirs, func(i, j int) bool {
		return strings.Count(o.dirs[i].rel, "/") > strings.Count(o.dirs[j].rel, "/")
	})
	for _, d := range o.dirs {
		fd := o.root
		if d.rel != "" {
			pfd, base, err := o.parent(d.rel)
			if err != nil {
				return err
			}
			fd, err = unix.Openat2(pfd, base, &unix.OpenHow{
				Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
				Resolve: resolveBeneath,
			})
			unix.Close(pfd)
			if err != nil {
				return o.fail(d.rel, "open", err)
			}
		}
		err := unix.Fchown(fd, int(d.uid), int(d.gid))
		if err == nil {
			err = unix.Fchmod(fd, d.mode)
		}
		if err == nil {
			err = futimes(fd, d.mtime)
		}
		if fd != o.root {
			unix.Close(fd)
		}
		if err != nil {
			return o.fail(d.rel, "set owner, mode and time of", err)
		}
	}
	return nil
}

type countingReader struct {
	r   io.Reader
	rep *reporter
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.rep.bytes.Add(int64(n))
	return n, err
}

// openedSnapshot is a snapshot of ours, with its hearth.json read.
type openedSnapshot struct {
	man  *snapshot.Manifest
	root fs.Directory
	idx  index
}

// openSnapshot loads snapshot id and its hearth.json through the connection rep.
func (r *Repo) openSnapshot(ctx context.Context, rep repo.Repository, id string) (*openedSnapshot, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") {
		return nil, fmt.Errorf("snapshot id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	man, err := snapshot.LoadSnapshot(ctx, rep, manifest.ID(id))
	if errors.Is(err, snapshot.ErrSnapshotNotFound) {
		if r.marked(id) {
			return nil, damaged("snapshot %s was made in %s and not pruned, but the repository no longer finds it: "+
				"the repository is damaged (an index file is missing or corrupt)", id, r.dir)
		}
		return nil, fmt.Errorf("no snapshot %s in %s (list them with backup ls): %w", id, r.dir, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, classify(err, r.dir, "snapshot "+id)
	}
	if man.Source.Host != kopiaHost || man.Source.UserName != kopiaUser || man.IncompleteReason != "" {
		return nil, fmt.Errorf("snapshot %s in %s is not a finished package backup: %w", id, r.dir, errdefs.ErrNotFound)
	}
	what := "snapshot " + id + " of " + man.Source.Path
	ent, err := snapshotfs.SnapshotRoot(rep, man)
	if err != nil {
		return nil, classify(err, r.dir, what)
	}
	root, ok := ent.(fs.Directory)
	if !ok {
		return nil, damaged("%s in %s: its root is not a directory", what, r.dir)
	}
	s := &openedSnapshot{man: man, root: root}
	b, err := s.readIndex(ctx)
	if err != nil {
		return nil, classify(err, r.dir, what)
	}
	if err := json.Unmarshal(b, &s.idx); err != nil {
		return nil, damaged("%s in %s: %s: %v", what, r.dir, indexName, err)
	}
	if s.idx.Format != indexFormat {
		return nil, fmt.Errorf("%s in %s: %s format %d, this Hearth reads %d: update Hearth: %w",
			what, r.dir, indexName, s.idx.Format, indexFormat, errdefs.ErrFailedPrecondition)
	}
	for name, vi := range s.idx.Volumes {
		if vi == nil || checkName("volume", name) != nil {
			return nil, damaged("%s in %s: %s: bad volume %q", what, r.dir, indexName, name)
		}
		for _, g := range vi.Links {
			if len(g) < 2 {
				return nil, damaged("%s in %s: %s: bad link group in volume %q", what, r.dir, indexName, name)
			}
		}
	}
	return s, nil
}

func (s *openedSnapshot) readIndex(ctx context.Context) ([]byte, error) {
	e, err := s.root.Child(ctx, indexName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", indexName, err)
	}
	f, ok := e.(fs.File)
	if !ok {
		return nil, fmt.Errorf("%s is not a file", indexName)
	}
	rd, err := f.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", indexName, err)
	}
	defer rd.Close()
	b, err := io.ReadAll(io.LimitReader(rd, maxMeta+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", indexName, err)
	}
	if len(b) > maxMeta {
		return nil, fmt.Errorf("%s: larger than %d bytes", indexName, maxMeta)
	}
	return b, nil
}

// volume finds volume name in the snapshot, with the time of its root directory.
func (s *openedSnapshot) volume(ctx context.Context, rep repo.Repository, name string) (fs.Directory, time.Time, error) {
	v, err := s.root.Child(ctx, volumesName)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", volumesName, err)
	}
	vd, ok := v.(fs.Directory)
	if !ok {
		return nil, time.Time{}, fmt.Errorf("%s is not a directory", volumesName)
	}
	e, err := vd.Child(ctx, name)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s/%s: %w", volumesName, name, err)
	}
	d, ok := e.(fs.Directory)
	if !ok {
		return nil, time.Time{}, fmt.Errorf("%s/%s is not a directory", volumesName, name)
	}
	times, err := dirTimes(ctx, rep, vd)
	if err != nil {
		return nil, time.Time{}, err
	}
	return d, times[name], nil
}

func (s *openedSnapshot) volumeNames() []string {
	names := make([]string, 0, len(s.idx.Volumes))
	for n := range s.idx.Volumes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
