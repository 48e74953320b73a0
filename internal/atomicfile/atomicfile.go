// Package atomicfile writes a file, or commits a directory tree, so that readers (and the
// next start after a crash) see either the old content or the new, never a part: write
// aside, sync, rename over, sync the directory.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Write replaces path with data, with the given mode.
func Write(path string, data []byte, mode os.FileMode) error {
	return WriteOwned(path, data, mode, -1, -1)
}

// WriteOwned is Write for a file that must carry an owner (uid and gid; -1 keeps the
// process's) before it appears at path.
func WriteOwned(path string, data []byte, mode os.FileMode, uid, gid int) error {
	return write(path, data, mode, uid, gid, true)
}

// Replace replaces path with data, with the given mode, as Write does, but does not wait
// for the disk: readers never see a part of it, but a crash of the machine may leave the
// old content, or an empty file. It suits a file made from state kept durably elsewhere,
// which is written again before it is needed after such a crash.
func Replace(path string, data []byte, mode os.FileMode) error {
	return ReplaceOwned(path, data, mode, -1, -1)
}

// ReplaceOwned is Replace for a file that must carry an owner, as WriteOwned.
func ReplaceOwned(path string, data []byte, mode os.FileMode, uid, gid int) error {
	return write(path, data, mode, uid, gid, false)
}

func write(path string, data []byte, mode os.FileMode, uid, gid int, durable bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if uid >= 0 || gid >= 0 {
		if err = f.Chown(uid, gid); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if durable {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if !durable {
		return nil
	}
	if err = syncDir(dir); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

// CommitDir names a finished directory tree: everything written below tmp reaches the
// disk (one syncfs of its file system), then tmp is renamed to final and the rename is
// made durable. A crash leaves either no final or a complete one.
func CommitDir(tmp, final string) error {
	d, err := os.Open(tmp)
	if err != nil {
		return fmt.Errorf("commit %s: %w", final, err)
	}
	err = unix.Syncfs(int(d.Fd()))
	d.Close()
	if err != nil {
		return fmt.Errorf("commit %s: sync: %w", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("commit %s: %w", final, err)
	}
	return syncDir(filepath.Dir(final))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
