package backup

import (
	"context"
	"fmt"
	"strings"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/blob/filesystem"
	"golang.org/x/sys/unix"
)

// storageType names our storage in kopia's registry (only in Open's private config
// file: the repository itself is a plain kopia filesystem repository).
const storageType = "hearth-filesystem"

func init() {
	blob.AddSupportedStorage(storageType, storageOptions{}, openStorage)
}

type storageOptions struct {
	Path string `json:"path"`
}

// syncedStorage is kopia's filesystem storage, which does not sync, made durable in
// order: before an index blob (the one thing that makes packs and manifests visible)
// is written, everything written before it is synced, and the index blob itself is
// synced after. A power cut can then lose a backup in progress, never make a finished
// one point at data that was not on the disk.
type syncedStorage struct {
	blob.Storage
	path string
}

func newStorage(ctx context.Context, path string) (blob.Storage, error) {
	return openStorage(ctx, &storageOptions{Path: path}, false)
}

func openStorage(ctx context.Context, o *storageOptions, isCreate bool) (blob.Storage, error) {
	st, err := filesystem.New(ctx, &filesystem.Options{
		Path:          o.Path,
		FileMode:      0o600,
		DirectoryMode: 0o700,
	}, isCreate)
	if err != nil {
		return nil, err
	}
	return &syncedStorage{Storage: st, path: o.Path}, nil
}

func (s *syncedStorage) ConnectionInfo() blob.ConnectionInfo {
	return blob.ConnectionInfo{Type: storageType, Config: &storageOptions{Path: s.path}}
}

func (s *syncedStorage) PutBlob(ctx context.Context, id blob.ID, data blob.Bytes, opts blob.PutOptions) error {
	ordered := orderedBlob(id)
	if ordered {
		if err := s.sync(); err != nil {
			return err
		}
	}
	if err := s.Storage.PutBlob(ctx, id, data, opts); err != nil {
		return err
	}
	if ordered {
		return s.sync()
	}
	return nil
}

// orderedBlob reports the blobs that publish others: indexes (x...) and the format
// and configuration blobs (kopia...).
func orderedBlob(id blob.ID) bool {
	return strings.HasPrefix(string(id), "x") || strings.HasPrefix(string(id), "kopia")
}

// sync flushes the repository's file system (syncfs: one call for every file written).
func (s *syncedStorage) sync() error {
	fd, err := unix.Open(s.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", s.path, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("sync %s: %w", s.path, err)
	}
	return nil
}
