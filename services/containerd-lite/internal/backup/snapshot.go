package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/content"
	"github.com/kopia/kopia/repo/content/indexblob"
	"github.com/kopia/kopia/repo/maintenance"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/policy"
	"github.com/kopia/kopia/snapshot/snapshotfs"
	"github.com/kopia/kopia/snapshot/snapshotgc"
	"github.com/kopia/kopia/snapshot/upload"
	"golang.org/x/sys/unix"

	"hearth.dev/internal/errdefs"
)

// Names in a snapshot's root.
const (
	indexName   = "hearth.json"
	volumesName = "volumes"
)

// Kopia tags of our snapshots.
const (
	tagVersion = "tag:hearth-version"
	tagVolumes = "tag:hearth-volumes"
)

// checkpointUser is the kopia user of the checkpoints kopia's uploader saves during a
// long backup (every 45 minutes): a source of their own, so that they are never taken
// for snapshots; Backup deletes its package's at the end, Prune all.
const checkpointUser = "hearth-checkpoint"

// index is hearth.json: what a restore needs besides the volumes' trees.
type index struct {
	Format  int                     `json:"format"`
	Meta    Meta                    `json:"meta"`
	Volumes map[string]*volumeIndex `json:"volumes"`
}

const indexFormat = 1

type volumeIndex struct {
	// Links holds the paths of each file that had several names in the volume, sorted:
	// the first is restored, the others are linked to it.
	Links [][]string `json:"links,omitempty"`
	// Special holds what was recorded and not stored as data.
	Special []Special `json:"special,omitempty"`
}

func source(pkg string) snapshot.SourceInfo {
	return snapshot.SourceInfo{Host: kopiaHost, UserName: kopiaUser, Path: pkg}
}

// compression for file data and metadata: zstd at its fastest level.
const compressor = "zstd-fastest"

func uploadPolicy() *policy.Tree {
	p := *policy.DefaultPolicy
	p.CompressionPolicy = policy.CompressionPolicy{CompressorName: compressor}
	p.MetadataCompressionPolicy = policy.MetadataCompressionPolicy{CompressorName: compressor}
	p.FilesPolicy = policy.FilesPolicy{} // no .kopiaignore files: every entry is kept
	return policy.BuildTree(nil, &p)
}

// Backup takes one snapshot of package pkg: meta and each volume (name -> host
// directory, read through descriptors: see the package comment). Files unchanged since
// the package's previous snapshot (size, times, mode, owner) are not read again, and
// data already in the repository is not written again. progress, if not nil, is called
// from time to time and once at the end.
func (r *Repo) Backup(ctx context.Context, pkg string, meta Meta, volumes map[string]string, progress func(Progress)) (Snapshot, error) {
	if err := checkName("package", pkg); err != nil {
		return Snapshot{}, fmt.Errorf("backup: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if b, _ := json.Marshal(meta); len(b) > maxMeta/2 {
		return Snapshot{}, fmt.Errorf("backup %s: meta takes %d bytes, more than %d: %w",
			pkg, len(b), maxMeta/2, errdefs.ErrInvalidArgument)
	}
	names := make([]string, 0, len(volumes))
	for name := range volumes {
		if err := checkName("volume", name); err != nil {
			return Snapshot{}, fmt.Errorf("backup %s: %w: %w", pkg, err, errdefs.ErrInvalidArgument)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	if err := r.check(); err != nil {
		return Snapshot{}, err
	}
	unlock, err := r.lock(ctx, unix.LOCK_SH)
	if err != nil {
		return Snapshot{}, err
	}
	defer unlock()

	// The volumes' roots, opened now: from here on nothing is looked up by path.
	roots := make([]*dir, 0, len(names))
	defer func() {
		for _, d := range roots {
			d.Close()
		}
	}()
	for _, name := range names {
		d, err := openVolume(name, volumes[name])
		if err != nil {
			return Snapshot{}, fmt.Errorf("backup %s: %w: %w", pkg, err, errdefs.ErrInvalidArgument)
		}
		roots = append(roots, d)
	}

	start := time.Now()
	prog := newUploadProgress(progress)
	var (
		snap  Snapshot
		cbErr error
	)
	err = repo.WriteSession(ctx, r.rep, repo.WriteSessionOptions{
		Purpose:  "hearth: backup " + pkg,
		OnUpload: func(n int64) { prog.stored.Add(n) },
	},
		func(ctx context.Context, w repo.RepositoryWriter) error {
			snap, cbErr = r.backup(ctx, w, pkg, meta, roots, prog, start)
			return cbErr
		})
	prog.report(true)
	if cbErr != nil {
		return Snapshot{}, cbErr
	}
	if err != nil { // writing the session's index
		return Snapshot{}, classify(err, r.dir, "backup "+pkg)
	}
	r.mark(snap.ID)
	return snap, nil
}

func (r *Repo) backup(ctx context.Context, w repo.RepositoryWriter, pkg string, meta Meta,
	roots []*dir, prog *uploadProgress, start time.Time) (Snapshot, error) {
	src := source(pkg)
	previous, err := r.previousVolumes(ctx, src)
	if err != nil {
		return Snapshot{}, err
	}

	entries := make([]fs.Entry, len(roots))
	for i, d := range roots {
		entries[i] = d
	}
	vols := &staticDir{name: volumesName, entries: entries, mtime: start}
	u := upload.NewUploader(w)
	u.Progress = prog
	u.FailFast = true
	u.DisableIgnoreRules = true
	u.EnableActions = false
	u.ParallelUploads = r.opts.Parallel
	ckpt := src
	ckpt.UserName = checkpointUser
	man, err := u.Upload(ctx, vols, uploadPolicy(), ckpt, previous...)
	if err := r.deleteSnapshots(ctx, w, ckpt); err != nil {
		return Snapshot{}, err
	}
	if err == nil && man.IncompleteReason != "" {
		err = fmt.Errorf("incomplete (%s)", man.IncompleteReason)
	}
	if err == nil && man.Stats.ErrorCount > 0 {
		err = fmt.Errorf("%d errors", man.Stats.ErrorCount)
	}
	if err != nil {
		if ctx.Err() != nil {
			return Snapshot{}, fmt.Errorf("backup %s: %w", pkg, ctx.Err())
		}
		if verr := prog.firstError(); verr != nil {
			if errors.Is(verr, errChanged) {
				return Snapshot{}, fmt.Errorf("backup %s: %w: freeze the package while it is backed up, or retry: %w",
					pkg, verr, errdefs.ErrAborted)
			}
			return Snapshot{}, fmt.Errorf("backup %s: %w", pkg, verr)
		}
		return Snapshot{}, classify(err, r.dir, "backup "+pkg)
	}

	// hearth.json, and the root: {hearth.json, volumes/}.
	idx := index{Format: indexFormat, Meta: meta, Volumes: map[string]*volumeIndex{}}
	snap := Snapshot{Package: pkg, Version: meta.Version, Time: start}
	for _, d := range roots {
		vi := &volumeIndex{Links: d.walk.linkGroups(), Special: d.walk.sortedSpecials()}
		idx.Volumes[d.name] = vi
		snap.Volumes = append(snap.Volumes, d.name)
		snap.Special = append(snap.Special, vi.Special...)
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return Snapshot{}, fmt.Errorf("backup %s: %w", pkg, err)
	}
	if len(b) > maxMeta {
		return Snapshot{}, fmt.Errorf("backup %s: meta and volume index take %d bytes, more than %d: %w",
			pkg, len(b), maxMeta, errdefs.ErrInvalidArgument)
	}
	ow := w.NewObjectWriter(ctx, object.WriterOptions{Description: "FILE:" + indexName, Compressor: compressor})
	defer ow.Close()
	if _, err := ow.Write(b); err != nil {
		return Snapshot{}, classify(err, r.dir, "backup "+pkg)
	}
	oid, err := ow.Result()
	if err != nil {
		return Snapshot{}, classify(err, r.dir, "backup "+pkg)
	}
	now := fs.UTCTimestampFromTime(start)
	var rb snapshotfs.DirManifestBuilder
	rb.AddEntry(&snapshot.DirEntry{
		Name: indexName, Type: snapshot.EntryTypeFile, Permissions: 0o600,
		FileSize: int64(len(b)), ModTime: now, ObjectID: oid,
	})
	volSummary := man.RootEntry.DirSummary
	rb.AddEntry(man.RootEntry)
	dm := rb.Build(now, "")
	rootOID, err := snapshotfs.WriteDirManifest(ctx, w, "", dm, compressor)
	if err != nil {
		return Snapshot{}, classify(err, r.dir, "backup "+pkg)
	}
	// The counts of the volumes alone (kopia's own count unchanged files' symlinks as
	// bytes, and ours would add hearth.json).
	if sum := volSummary; sum != nil {
		man.Stats.TotalFileCount = int32(sum.TotalFileCount)
		man.Stats.TotalFileSize = sum.TotalFileSize
		man.Stats.TotalDirectoryCount = int32(sum.TotalDirCount - 1) // not "volumes"
	}
	man.Source = src
	man.RootEntry = &snapshot.DirEntry{
		Name: pkg, Type: snapshot.EntryTypeDirectory, Permissions: 0o700,
		ModTime: now, ObjectID: rootOID, DirSummary: dm.Summary,
	}
	man.Tags = map[string]string{tagVolumes: strings.Join(snap.Volumes, ",")}
	if meta.Version != "" {
		man.Tags[tagVersion] = meta.Version
	}
	man.Description = "hearth backup of " + pkg
	id, err := snapshot.SaveSnapshot(ctx, w, man)
	if err != nil {
		return Snapshot{}, classify(err, r.dir, "backup "+pkg)
	}
	snap.ID = string(id)
	snap.Files = int64(man.Stats.TotalFileCount)
	snap.Dirs = int64(man.Stats.TotalDirectoryCount)
	snap.Bytes = man.Stats.TotalFileSize
	snap.Unchanged = int64(man.Stats.CachedFiles)
	return snap, nil
}

// previousVolumes gives kopia the volumes directory of the package's last snapshot, so
// that files unchanged since are not read again.
func (r *Repo) previousVolumes(ctx context.Context, src snapshot.SourceInfo) ([]*snapshot.Manifest, error) {
	prev, err := snapshot.FindPreviousManifests(ctx, r.rep, src, nil)
	if err != nil {
		return nil, classify(err, r.dir, "backup "+src.Path+": read the previous snapshot")
	}
	var out []*snapshot.Manifest
	for _, m := range prev {
		if m.IncompleteReason != "" || m.RootEntry == nil {
			continue
		}
		root, ok := snapshotfs.EntryFromDirEntry(r.rep, m.RootEntry).(fs.Directory)
		if !ok {
			continue
		}
		v, err := root.Child(ctx, volumesName)
		if err != nil {
			// A damaged previous snapshot only costs reading everything again.
			continue
		}
		if de, ok := v.(snapshot.HasDirEntry); ok {
			out = append(out, &snapshot.Manifest{RootEntry: de.DirEntry()})
		}
	}
	return out, nil
}

// deleteSnapshots deletes every snapshot manifest of a source.
func (r *Repo) deleteSnapshots(ctx context.Context, w repo.RepositoryWriter, src snapshot.SourceInfo) error {
	ids, err := snapshot.ListSnapshotManifests(ctx, w, &src, nil)
	if err != nil {
		return classify(err, r.dir, "list checkpoints of "+src.Path)
	}
	for _, id := range ids {
		if err := w.DeleteManifest(ctx, id); err != nil {
			return classify(err, r.dir, "delete checkpoint of "+src.Path)
		}
	}
	return nil
}

// List lists the snapshots of package pkg ("" for every package), oldest first.
func (r *Repo) List(ctx context.Context, pkg string) ([]Snapshot, error) {
	if pkg != "" {
		if err := checkName("package", pkg); err != nil {
			return nil, fmt.Errorf("list backups: %w: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	unlock, err := r.lock(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	mans, err := r.manifests(ctx, pkg)
	if err != nil {
		return nil, err
	}
	out := make([]Snapshot, 0, len(mans))
	for _, m := range mans {
		out = append(out, snapshotOf(m))
	}
	return out, nil
}

// manifests loads the snapshot manifests of pkg ("" for all of ours), oldest first.
func (r *Repo) manifests(ctx context.Context, pkg string) ([]*snapshot.Manifest, error) {
	labels := map[string]string{"type": "snapshot", "hostname": kopiaHost, "username": kopiaUser}
	if pkg != "" {
		labels["path"] = pkg
	}
	ents, err := r.rep.FindManifests(ctx, labels)
	if err != nil {
		return nil, classify(err, r.dir, "list backups")
	}
	ids := make([]manifest.ID, len(ents))
	for i, e := range ents {
		ids[i] = e.ID
	}
	mans, err := snapshot.LoadSnapshots(ctx, r.rep, ids)
	if err != nil {
		return nil, classify(err, r.dir, "list backups")
	}
	out := mans[:0]
	for _, m := range mans {
		if m != nil && m.IncompleteReason == "" {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartTime.Equal(out[j].StartTime) {
			return out[i].StartTime.Before(out[j].StartTime)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func snapshotOf(m *snapshot.Manifest) Snapshot {
	s := Snapshot{
		ID:      string(m.ID),
		Package: m.Source.Path,
		Version: m.Tags[tagVersion],
		Time:    m.StartTime.ToTime(),
		Files:   int64(m.Stats.TotalFileCount),
		Dirs:    int64(m.Stats.TotalDirectoryCount),
		Bytes:   m.Stats.TotalFileSize,
	}
	if v := m.Tags[tagVolumes]; v != "" {
		s.Volumes = strings.Split(v, ",")
	}
	return s
}

// Prune keeps the newest keep snapshots of package pkg and deletes the others, then
// runs kopia's full maintenance (garbage collection of what no snapshot uses, pack
// rewrite, index compaction) at once, under the repository's lock held alone; it
// returns how many snapshots it deleted. Maintenance work grows with the repository,
// not with the number of calls; ctx bounds it.
func (r *Repo) Prune(ctx context.Context, pkg string, keep int) (int, error) {
	if err := checkName("package", pkg); err != nil {
		return 0, fmt.Errorf("prune: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if keep < 1 {
		return 0, fmt.Errorf("prune %s: keep %d: keep at least one snapshot (to delete them all, delete the repository): %w",
			pkg, keep, errdefs.ErrInvalidArgument)
	}
	if err := r.check(); err != nil {
		return 0, err
	}
	unlock, err := r.lock(ctx, unix.LOCK_EX)
	if err != nil {
		return 0, err
	}
	defer unlock()
	mans, err := r.manifests(ctx, pkg)
	if err != nil {
		return 0, err
	}
	del := 0
	if len(mans) > keep {
		del = len(mans) - keep
	}
	err = repo.DirectWriteSession(ctx, r.rep, repo.WriteSessionOptions{Purpose: "hearth: prune " + pkg},
		func(ctx context.Context, w repo.DirectRepositoryWriter) error {
			if err := r.prune(ctx, w, pkg, mans[:del]); err != nil {
				return &kindedError{err}
			}
			return nil
		})
	var ke *kindedError
	if errors.As(err, &ke) {
		return 0, ke.err
	}
	if err != nil {
		return 0, classify(err, r.dir, "prune "+pkg)
	}
	for _, m := range mans[:del] {
		r.unmark(string(m.ID))
	}
	return del, nil
}

// kindedError carries an error that already has its kind through kopia's wrapping.
type kindedError struct{ err error }

func (e *kindedError) Error() string { return e.err.Error() }

// prune deletes the manifests mans and every checkpoint, then frees what they held.
func (r *Repo) prune(ctx context.Context, w repo.DirectRepositoryWriter, pkg string, mans []*snapshot.Manifest) error {
	for _, m := range mans {
		if err := w.DeleteManifest(ctx, m.ID); err != nil {
			return classify(err, r.dir, "prune "+pkg)
		}
	}
	// Checkpoints of backups that did not finish (none runs now: we hold the lock).
	if err := r.deleteCheckpoints(ctx, w); err != nil {
		return err
	}
	if err := w.Flush(ctx); err != nil {
		return classify(err, r.dir, "prune "+pkg)
	}
	return r.maintain(ctx, w)
}

func (r *Repo) deleteCheckpoints(ctx context.Context, w repo.RepositoryWriter) error {
	ents, err := w.FindManifests(ctx, map[string]string{"type": "snapshot", "hostname": kopiaHost, "username": checkpointUser})
	if err != nil {
		return classify(err, r.dir, "list checkpoints")
	}
	for _, e := range ents {
		if err := w.DeleteManifest(ctx, e.ID); err != nil {
			return classify(err, r.dir, "delete checkpoint")
		}
	}
	return nil
}

// staticDir is a directory made of given entries (the snapshot's "volumes").
type staticDir struct {
	name    string
	entries []fs.Entry
	mtime   time.Time
}

var _ fs.Directory = (*staticDir)(nil)

func (d *staticDir) Name() string                     { return d.name }
func (d *staticDir) Size() int64                      { return 0 }
func (d *staticDir) Mode() os.FileMode                { return os.ModeDir | 0o700 }
func (d *staticDir) ModTime() time.Time               { return d.mtime }
func (d *staticDir) IsDir() bool                      { return true }
func (d *staticDir) Sys() any                         { return nil }
func (d *staticDir) Owner() fs.OwnerInfo              { return fs.OwnerInfo{} }
func (d *staticDir) Device() fs.DeviceInfo            { return fs.DeviceInfo{} }
func (d *staticDir) LocalFilesystemPath() string      { return "" }
func (d *staticDir) Close()                           {}
func (d *staticDir) SupportsMultipleIterations() bool { return true }

func (d *staticDir) Child(ctx context.Context, name string) (fs.Entry, error) {
	for _, e := range d.entries {
		if e.Name() == name {
			return e, nil
		}
	}
	return nil, fs.ErrEntryNotFound
}

func (d *staticDir) Iterate(ctx context.Context) (fs.DirectoryIterator, error) {
	return fs.StaticIterator(append([]fs.Entry(nil), d.entries...), nil), nil
}

// uploadProgress turns kopia's upload events into Progress reports and keeps the first
// error met in a volume.
type uploadProgress struct {
	upload.NullUploadProgress
	reporter

	mu    sync.Mutex
	first error
}

func newUploadProgress(cb func(Progress)) *uploadProgress {
	return &uploadProgress{reporter: reporter{cb: cb}}
}

func (p *uploadProgress) HashedBytes(n int64)   { p.bytes.Add(n); p.report(false) }
func (p *uploadProgress) UploadedBytes(n int64) { p.stored.Add(n) }
func (p *uploadProgress) CachedFile(_ string, n int64) {
	p.bytes.Add(n)
	p.report(false)
}

func (p *uploadProgress) FinishedFile(_ string, err error) {
	if err == nil {
		p.files.Add(1)
	}
}

func (p *uploadProgress) Error(path string, err error, ignored bool) {
	if ignored {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.first == nil {
		p.first = err
	}
}

func (p *uploadProgress) firstError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first
}

// maintain frees what no snapshot uses, then runs the rest of kopia's full maintenance
// (index compaction), without the safety delays meant for writers that do not
// coordinate: the caller holds the repository's lock alone. Kopia's own full cycle
// would keep deleted data for a later cycle (it copies deleted contents along when it
// repacks), so the freeing steps run here in the order that frees at once:
//  1. mark deleted every content no snapshot reaches (kopia's snapshot GC);
//  2. forget the deleted contents (a second later: index entries carry whole seconds);
//  3. copy the live contents out of the packs that held deleted ones;
//  4. delete the packs no index entry names any more;
//  5. kopia's full cycle: small packs merged, indexes compacted.
//
// The work is bounded by the packs that held deleted data and the small ones.
func (r *Repo) maintain(ctx context.Context, w repo.DirectRepositoryWriter) error {
	err := maintenance.RunExclusive(ctx, w, maintenance.ModeFull, true,
		func(ctx context.Context, rp maintenance.RunParameters) error {
			if err := snapshotgc.Run(ctx, w, true, maintenance.SafetyNone, rp.MaintenanceStartTime); err != nil {
				return fmt.Errorf("garbage collection: %w", err)
			}
			dead := map[blob.ID]bool{}
			err := w.ContentReader().IterateContents(ctx, content.IterateOptions{IncludeDeleted: true},
				func(ci content.Info) error {
					if ci.Deleted {
						dead[ci.PackBlobID] = true
					}
					return nil
				})
			if err != nil {
				return fmt.Errorf("list contents: %w", err)
			}
			if len(dead) > 0 {
				next := w.Time().Truncate(time.Second).Add(time.Second)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Until(next)):
				}
				if _, err := w.ContentManager().CompactIndexes(ctx, indexblob.CompactOptions{
					AllIndexes:                       true,
					DropDeletedBefore:                w.Time(),
					DisableEventualConsistencySafety: true,
				}); err != nil {
					return fmt.Errorf("drop deleted contents: %w", err)
				}
				var live []content.ID
				err := w.ContentReader().IterateContents(ctx, content.IterateOptions{}, func(ci content.Info) error {
					if dead[ci.PackBlobID] {
						live = append(live, ci.ContentID)
					}
					return nil
				})
				if err != nil {
					return fmt.Errorf("list contents: %w", err)
				}
				if len(live) > 0 {
					if _, err := maintenance.RewriteContents(ctx, w, &maintenance.RewriteContentsOptions{ContentIDs: live},
						maintenance.SafetyNone); err != nil {
						return fmt.Errorf("repack: %w", err)
					}
				}
				if _, err := maintenance.DeleteUnreferencedPacks(ctx, w, maintenance.DeleteUnreferencedPacksOptions{},
					maintenance.SafetyNone); err != nil {
					return fmt.Errorf("delete unused packs: %w", err)
				}
			}
			// Kopia's full cycle keeps packs newer than its start: ours are older now.
			rp.MaintenanceStartTime = w.Time()
			return maintenance.Run(ctx, rp, maintenance.SafetyNone)
		})
	if err != nil {
		return classify(err, r.dir, "maintenance")
	}
	return nil
}
