// Package backup keeps packages' backups in a kopia repository (github.com/kopia/kopia's
// repository library): content-defined chunks, deduplication across snapshots and
// packages, zstd compression and authenticated encryption with the user's password, in a
// filesystem repository at a directory (a local disk or a NAS mount).
//
// One snapshot holds one package: its Meta (the manifest bytes, the version, small
// labels) and each of its volumes. Inside the repository a snapshot is a kopia snapshot
// of source hearth@hearth:PKG whose root directory holds
//
//	hearth.json        the Meta, and per volume the entries kopia cannot store (below)
//	volumes/NAME/...   each volume's tree
//
// so the kopia command can list and restore it too, given the password.
//
// # Volumes are hostile
//
// A volume belongs to its package, whose root may plant symlinks (absolute, or with
// ".."), hard links, FIFOs, sockets and device nodes, and may swap a directory for a
// symlink while a backup runs. Backup walks a volume only through descriptors: each
// directory is opened with openat2 (RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS,
// RESOLVE_NO_MAGICLINKS, RESOLVE_NO_XDEV) from its parent's descriptor and checked to be
// the inode that was listed; each file is opened O_PATH|O_NOFOLLOW the same way, checked
// (a regular file, the listed inode) and only then reopened for reading through its
// descriptor. Nothing is followed and nothing but a verified regular file is ever
// opened for reading (a FIFO would block, a device could act). Each entry is stored as
// what it is:
//   - directories, regular files and symlinks (their target text) as kopia entries, with
//     their mode (permission, setuid, setgid and sticky bits), owner (uid and gid numbers
//     as on the host) and modification time; extended attributes and ACLs are not kept;
//   - files with several links inside the volume are stored once per path (the content
//     once, by deduplication) and listed as a link group in hearth.json; restore makes
//     them one file again. A link whose other names are outside the volume is stored as
//     a plain file: its content is the file's, which is safe to take, since a volume
//     lives on its package's own disk and a hard link cannot cross file systems (nor,
//     with protected_hardlinks, name a file its maker could not read and write);
//   - FIFOs, sockets and device nodes are recorded in hearth.json (path, kind, mode,
//     owner, device number) and never opened; restore recreates FIFOs only (sockets are
//     made again by whoever binds them; no device node is ever created);
//   - a directory on another file system (a mount point) is recorded and not entered.
//
// An entry that changes kind or inode, or goes, between its listing and its reading
// fails the backup (ErrAborted: freeze the package, or retry); an entry gone before it
// is looked at is left out. The volumes' own directories are opened by the paths the
// caller gives (the last component must not be a symlink): the directories above them
// must be the host's, out of the package's reach; so must a restore's targets.
//
// Restore writes only below a target directory the caller made and left empty,
// through descriptors: every parent is opened with openat2 (RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS) from the target, entries are made with mkdirat, openat
// (O_CREAT|O_EXCL|O_NOFOLLOW), symlinkat, mknodat (FIFOs), linkat (without following),
// and owners, modes and times are set on the new descriptor or with AT_SYMLINK_NOFOLLOW.
//
// # Errors
//
// A wrong password is errdefs.ErrPermissionDenied. A repository found damaged (a
// corrupt, truncated or missing piece) is ErrDamaged, carrying gRPC's DataLoss code.
// Verify reads every piece a restore of a snapshot needs, from the repository itself
// (never from a cache), so that damage or a wrong password shows before a restore
// changes anything.
//
// # The repository directory
//
// Besides kopia's blobs (the files ending in ".f") it holds hearth-backup.lock (below),
// hearth-backup.json (the checksum of kopia.repository as last opened: a format file
// that no longer decrypts and differs from it is damage, not a wrong password) and
// hearth-snapshots/ID (an empty file per snapshot made and not pruned: such a snapshot
// that the repository no longer finds was lost to damage). The blobs that make others
// visible (indexes, the format) are written after a syncfs of the repository's file
// system and synced after them, so that a power cut loses at most the backup in
// progress. Kopia's caches are off (every read comes from the repository); its client
// configuration lives in a private temporary directory while a Repo is open.
//
// # Concurrency
//
// A Repo may be used by several goroutines. Operations on one repository directory
// take a lock file there: Backup, List, Verify and Restore share it, Prune takes it
// alone, since it deletes unreferenced data at once (kopia's maintenance without its
// safety delays, which are meant for writers that do not coordinate). Other kopia
// clients must not write to the repository while a Prune runs.
package backup

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Meta is what a snapshot holds besides the volumes: small, and returned as it was given.
type Meta struct {
	// Manifest is the package's manifest, as bytes.
	Manifest []byte `json:"manifest,omitempty"`
	// Version is the package's version.
	Version string `json:"version,omitempty"`
	// Labels holds anything else small the caller wants back at restore.
	Labels map[string]string `json:"labels,omitempty"`
}

// maxMeta bounds Meta's size (encoded), and what a restore reads of hearth.json.
const maxMeta = 8 << 20

// Snapshot describes one backup of one package.
type Snapshot struct {
	ID      string    `json:"id"`
	Package string    `json:"package"`
	Version string    `json:"version,omitempty"`
	Time    time.Time `json:"time"` // when the backup started
	// Volumes are the names of the volumes it holds, sorted.
	Volumes []string `json:"volumes"`
	// Files and Bytes count the regular files and their total size; Dirs the directories.
	Files int64 `json:"files"`
	Dirs  int64 `json:"dirs"`
	Bytes int64 `json:"bytes"`
	// Unchanged counts files found unchanged since the previous snapshot of the package
	// (same size, times, mode and owner), which were not read again. Set by Backup only.
	Unchanged int64 `json:"unchanged,omitempty"`
	// Special lists the entries recorded but not stored as data (see Special). Set by
	// Backup only.
	Special []Special `json:"special,omitempty"`
}

// Special is an entry of a volume that a snapshot records but does not hold as data: a
// FIFO, a socket, a device node, or a mount point.
type Special struct {
	Volume string `json:"volume"`
	Path   string `json:"path"` // relative to the volume, with "/"
	Kind   string `json:"kind"` // "fifo", "socket", "char", "block" or "mount"
	Mode   uint32 `json:"mode"` // permission, setuid, setgid and sticky bits
	UID    uint32 `json:"uid"`
	GID    uint32 `json:"gid"`
	Rdev   uint64 `json:"rdev,omitempty"`
	MTime  int64  `json:"mtime_ns"`
}

// Progress is what a Backup or a Restore has done so far.
type Progress struct {
	// Files finished: read (or found unchanged), or written.
	Files int64
	// Bytes of data: for a backup, of files and symlink targets read or found unchanged;
	// for a restore, of files written.
	Bytes int64
	// Stored is how many bytes a backup wrote to the repository so far (packs of new
	// data, compressed and encrypted).
	Stored int64
}

// checkName checks a package or volume name: one path component, printable.
func checkName(what, s string) error {
	switch {
	case s == "", s == ".", s == "..":
		return fmt.Errorf("%s name %q: must be a non-empty name other than . and ..", what, s)
	case len(s) > 255:
		return fmt.Errorf("%s name %.20q...: longer than 255 bytes", what, s)
	case strings.ContainsAny(s, "/\x00"):
		return fmt.Errorf("%s name %q: must not contain / or NUL", what, s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s name %q: must not contain control characters", what, s)
		}
	}
	return nil
}

// errNotEmpty reports a restore target that is not an empty directory.
var errNotEmpty = errors.New("is not empty")
