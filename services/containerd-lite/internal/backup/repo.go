package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/content"
	"github.com/kopia/kopia/repo/format"
	"github.com/kopia/kopia/repo/maintenance"
	"golang.org/x/sys/unix"

	"hearth.dev/internal/atomicfile"
	"hearth.dev/internal/errdefs"
)

// Names in the repository directory besides kopia's blobs (which all end in ".f", the
// only files kopia's filesystem storage lists).
const (
	lockFile    = "hearth-backup.lock"
	sidecarFile = "hearth-backup.json"
	// markerDir holds an empty file named for each snapshot Backup made and Prune has not
	// deleted: a snapshot that has one but that the repository cannot find was lost to
	// damage (a deleted or corrupt index), not pruned.
	markerDir = "hearth-snapshots"
)

// ours reports the names Open may find in a repository directory besides kopia's blobs.
func ours(name string) bool {
	return name == lockFile || name == sidecarFile || name == markerDir || name == ".shards"
}

// The kopia client identity of every Hearth: the same on any machine, so that a
// repository carried to a new host is still ours to maintain.
const (
	kopiaUser = "hearth"
	kopiaHost = "hearth"
)

// Repository format choices, fixed when a repository is created.
const (
	hashAlgorithm       = "BLAKE3-256-128"
	encryptionAlgorithm = "AES256-GCM-HMAC-SHA256"
	splitterAlgorithm   = "DYNAMIC-4M-BUZHASH"
)

// Options are Open's optional settings.
type Options struct {
	// TempDir is where Open keeps kopia's client configuration for as long as the Repo
	// is open (a private directory, removed by Close); "" is the system's default.
	// Nothing else is written outside the repository: kopia's caches are disabled, so
	// that every read comes from the repository itself.
	TempDir string
	// Parallel is how many files Backup and Restore read or write at once, and how many
	// Verify checks at once; 0 is twice the number of CPUs, at least 4 (reads and writes
	// wait on the disk: with 2 CPUs, 4 files at once back up 1.7 times faster than 2).
	Parallel int
}

// Repo is an open backup repository. Close it when done.
type Repo struct {
	dir      string
	password string
	opts     Options
	work     string // private directory holding kopia's config file
	config   string
	rep      repo.DirectRepository

	mu    sync.Mutex
	fatal error // set by kopia's fatal error hook; fails every later operation
}

// Open opens the backup repository at dir with password, creating it when dir does not
// exist or is an empty directory. A wrong password is errdefs.ErrPermissionDenied; a
// damaged repository, or a directory that holds files but no repository, ErrDamaged.
func Open(ctx context.Context, dir, password string, opts Options) (*Repo, error) {
	if password == "" {
		return nil, fmt.Errorf("open backup repository %s: empty password: %w", dir, errdefs.ErrInvalidArgument)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open backup repository %s: %w", dir, errdefs.ErrInvalidArgument)
	}
	dir = abs
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, classify(fmt.Errorf("create %s: %w", dir, err), dir, "open backup repository")
	}
	if opts.Parallel <= 0 {
		opts.Parallel = max(4, 2*runtime.NumCPU())
	}
	r := &Repo{dir: dir, password: password, opts: opts}
	if err := r.precheck(); err != nil {
		return nil, err
	}
	if err := r.open(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Repo) open(ctx context.Context) error {
	unlock, err := r.lock(ctx, unix.LOCK_EX) // creation must not race another Open
	if err != nil {
		return err
	}
	defer unlock()
	st, err := newStorage(ctx, r.dir)
	if err != nil {
		return classify(err, r.dir, "open backup repository")
	}
	defer st.Close(ctx)
	created := false
	formatBlob, err := readBlob(ctx, st, format.KopiaRepositoryBlobID)
	switch {
	case errors.Is(err, blob.ErrBlobNotFound):
		if err := r.checkEmpty(ctx, st); err != nil {
			return err
		}
		if err := repo.Initialize(ctx, st, &repo.NewRepositoryOptions{
			BlockFormat: format.ContentFormat{
				Hash:       hashAlgorithm,
				Encryption: encryptionAlgorithm,
			},
			ObjectFormat: format.ObjectFormat{Splitter: splitterAlgorithm},
		}, r.password); err != nil {
			return classify(err, r.dir, "create backup repository")
		}
		if formatBlob, err = readBlob(ctx, st, format.KopiaRepositoryBlobID); err != nil {
			return classify(err, r.dir, "create backup repository")
		}
		created = true
	case err != nil:
		return classify(err, r.dir, "open backup repository")
	}

	r.work, err = os.MkdirTemp(r.opts.TempDir, "hearth-backup-")
	if err != nil {
		return fmt.Errorf("open backup repository %s: private directory: %w", r.dir, err)
	}
	r.config = filepath.Join(r.work, "repository.config")
	ci := st.ConnectionInfo()
	lc := repo.LocalConfig{
		Storage: &ci,
		Caching: &content.CachingOptions{}, // no cache directory: every read from the repository
		ClientOptions: repo.ClientOptions{
			Hostname:    kopiaHost,
			Username:    kopiaUser,
			Description: "hearth backups",
		},
	}
	b, err := json.Marshal(lc)
	if err != nil {
		return fmt.Errorf("open backup repository %s: %w", r.dir, err)
	}
	if err := os.WriteFile(r.config, b, 0o600); err != nil {
		return fmt.Errorf("open backup repository %s: %w", r.dir, err)
	}
	r.rep, err = r.connect(ctx)
	if err != nil {
		return err
	}
	if created {
		// Maintenance may only run as its owner: us, whatever the host.
		err := repo.WriteSession(ctx, r.rep, repo.WriteSessionOptions{Purpose: "hearth: create"},
			func(ctx context.Context, w repo.RepositoryWriter) error {
				p := maintenance.DefaultParams()
				p.Owner = kopiaUser + "@" + kopiaHost
				return maintenance.SetParams(ctx, w, &p)
			})
		if err != nil {
			return classify(err, r.dir, "create backup repository")
		}
	}
	r.writeSidecar(formatBlob)
	return nil
}

// connect opens a kopia connection with the config file. A wrong password and a damaged
// format blob both fail kopia's decryption; the sidecar's checksum of the format blob
// tells them apart.
func (r *Repo) connect(ctx context.Context) (repo.DirectRepository, error) {
	rep, err := repo.Open(ctx, r.config, r.password, &repo.Options{
		DisableRepositoryLog: true,
		OnFatalError: func(err error) {
			slog.Error("backup repository: fatal error", "dir", r.dir, "err", err)
			r.mu.Lock()
			r.fatal = err
			r.mu.Unlock()
		},
	})
	if errors.Is(err, repo.ErrInvalidPassword) {
		if r.sidecarMismatch(ctx) {
			return nil, damaged("open backup repository %s: its format file %s changed since Hearth last opened it "+
				"and does not decrypt with this password: it is damaged (restore it from a copy of the repository), "+
				"unless its password was changed with another tool", r.dir, format.KopiaRepositoryBlobID+".f")
		}
		return nil, fmt.Errorf("open backup repository %s: wrong password: %w", r.dir, errdefs.ErrPermissionDenied)
	}
	if err != nil {
		return nil, classify(err, r.dir, "open backup repository")
	}
	dr, ok := rep.(repo.DirectRepository)
	if !ok {
		rep.Close(ctx)
		return nil, fmt.Errorf("open backup repository %s: not a direct repository: %w", r.dir, errdefs.ErrInternal)
	}
	return dr, nil
}

// precheck refuses, before writing anything there, a directory that holds no
// repository and something that is neither ours nor kopia's: someone else's files.
func (r *Repo) precheck() error {
	if _, err := os.Lstat(filepath.Join(r.dir, format.KopiaRepositoryBlobID+".f")); err == nil {
		return nil
	}
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return classify(err, r.dir, "open backup repository")
	}
	for _, e := range ents {
		n := e.Name()
		switch {
		case ours(n):
		case e.Type().IsRegular() && strings.HasSuffix(n, ".f"): // a blob
		case e.IsDir() && len(n) <= 3: // a shard directory of blobs
		default:
			return fmt.Errorf("open backup repository %s: the directory is not empty and holds no backup "+
				"repository (found %q): give an empty or new directory: %w", r.dir, n, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// checkEmpty refuses to create a repository in a directory holding anything but our
// own files: a repository that lost its format blob, or someone else's data.
func (r *Repo) checkEmpty(ctx context.Context, st blob.Storage) error {
	var found []string
	err := st.ListBlobs(ctx, "", func(m blob.Metadata) error {
		found = append(found, string(m.BlobID))
		if len(found) >= 3 {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return classify(err, r.dir, "open backup repository")
	}
	if len(found) > 0 {
		return damaged("open backup repository %s: it holds repository files (%v...) but no %s: "+
			"the repository is damaged; restore that file from a copy", r.dir, found, format.KopiaRepositoryBlobID+".f")
	}
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return classify(err, r.dir, "open backup repository")
	}
	for _, e := range ents {
		if n := e.Name(); !ours(n) {
			if _, err := os.Stat(filepath.Join(r.dir, sidecarFile)); err == nil {
				return damaged("open backup repository %s: it was a repository but has lost its %s: "+
					"restore that file from a copy", r.dir, format.KopiaRepositoryBlobID+".f")
			}
			return fmt.Errorf("open backup repository %s: the directory is not empty and holds no backup "+
				"repository (found %q): give an empty or new directory: %w", r.dir, n, errdefs.ErrInvalidArgument)
		}
	}
	if _, err := os.Stat(filepath.Join(r.dir, sidecarFile)); err == nil {
		return damaged("open backup repository %s: it was a repository but its files are gone", r.dir)
	}
	return nil
}

var errStop = errors.New("stop")

type sidecar struct {
	FormatSHA256 string `json:"kopia_repository_sha256"`
}

// sidecarMismatch reports whether the sidecar remembers a different format blob than
// the one in the repository.
func (r *Repo) sidecarMismatch(ctx context.Context) bool {
	st, err := newStorage(ctx, r.dir)
	if err != nil {
		return false
	}
	defer st.Close(ctx)
	formatBlob, err := readBlob(ctx, st, format.KopiaRepositoryBlobID)
	if err != nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join(r.dir, sidecarFile))
	if err != nil {
		return false
	}
	var s sidecar
	if json.Unmarshal(b, &s) != nil || s.FormatSHA256 == "" {
		return false
	}
	sum := sha256.Sum256(formatBlob)
	return s.FormatSHA256 != hex.EncodeToString(sum[:])
}

// writeSidecar remembers the checksum of a format blob that decrypted. Best effort: it
// only sharpens a later error message.
func (r *Repo) writeSidecar(formatBlob []byte) {
	sum := sha256.Sum256(formatBlob)
	b, _ := json.Marshal(sidecar{FormatSHA256: hex.EncodeToString(sum[:])})
	if old, err := os.ReadFile(filepath.Join(r.dir, sidecarFile)); err == nil && bytes.Equal(old, b) {
		return
	}
	if err := atomicfile.Write(filepath.Join(r.dir, sidecarFile), b, 0o600); err != nil {
		slog.Warn("backup repository: cannot write sidecar", "dir", r.dir, "err", err)
	}
}

func readBlob(ctx context.Context, st blob.Storage, id blob.ID) ([]byte, error) {
	var buf bytesWriteBuffer
	if err := st.GetBlob(ctx, id, 0, -1, &buf); err != nil {
		return nil, err
	}
	return buf.b, nil
}

// Close closes the repository and removes Open's private directory.
func (r *Repo) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	if r.rep != nil {
		err = r.rep.Close(context.Background())
		r.rep = nil
	}
	if r.work != "" {
		os.RemoveAll(r.work)
		r.work = ""
	}
	return err
}

// Dir is the repository's directory.
func (r *Repo) Dir() string { return r.dir }

func (r *Repo) check() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rep == nil {
		return fmt.Errorf("backup repository %s is closed: %w", r.dir, errdefs.ErrFailedPrecondition)
	}
	if r.fatal != nil {
		return fmt.Errorf("backup repository %s: %v; open it again: %w", r.dir, r.fatal, errdefs.ErrUnavailable)
	}
	return nil
}

// lock takes the repository's lock file, shared (LOCK_SH) or alone (LOCK_EX), waiting
// for it as long as ctx allows; the returned function releases it. Each call opens the
// file anew: flock locks belong to the open file, so two operations of one process
// exclude each other as two processes do.
func (r *Repo) lock(ctx context.Context, how int) (func(), error) {
	fd, err := unix.Open(filepath.Join(r.dir, lockFile), unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, classify(fmt.Errorf("lock file: %w", err), r.dir, "lock backup repository")
	}
	wait := time.Millisecond
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Close(fd) }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			unix.Close(fd)
			return nil, classify(fmt.Errorf("lock file: %w", err), r.dir, "lock backup repository")
		}
		select {
		case <-ctx.Done():
			unix.Close(fd)
			return nil, fmt.Errorf("backup repository %s is busy (a prune or another backup): %w", r.dir, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// bytesWriteBuffer collects a blob (kopia's blob.OutputBuffer).
type bytesWriteBuffer struct{ b []byte }

func (w *bytesWriteBuffer) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *bytesWriteBuffer) Reset()                      { w.b = w.b[:0] }
func (w *bytesWriteBuffer) Length() int                 { return len(w.b) }

// mark records that snapshot id was made (best effort: it only sharpens a later error).
func (r *Repo) mark(id string) {
	d := filepath.Join(r.dir, markerDir)
	if err := os.MkdirAll(d, 0o700); err == nil {
		err = os.WriteFile(filepath.Join(d, id), nil, 0o600)
	}
}

func (r *Repo) unmark(id string) { os.Remove(filepath.Join(r.dir, markerDir, id)) }

func (r *Repo) marked(id string) bool {
	_, err := os.Lstat(filepath.Join(r.dir, markerDir, id))
	return err == nil
}
