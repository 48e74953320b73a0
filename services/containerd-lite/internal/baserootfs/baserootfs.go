// Package baserootfs installs the base root file system every container boots from
// (busybox and guestd): copied once per content digest into the daemon's state, with
// owners shifted into the containers' id range so that root's files inside belong to the
// container's root.
package baserootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hearth.dev/internal/atomicfile"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"hearth.dev/services/containerd-lite/internal/idmap"
)

// Required are paths the containers need in the base.
var Required = []string{"sbin/guestd", "sbin/guestd-init", "bin/sh", "media/hearth", "proc", "sys", "dev", "run", "tmp"}

// Install copies src into dir/<digest> with owners shifted by m and returns that path.
// A tree installed before is found by its digest and not copied again.
func Install(src, dir string, m idmap.Mapping) (string, error) {
	for _, p := range Required {
		if _, err := os.Lstat(filepath.Join(src, p)); err != nil {
			return "", fmt.Errorf("base rootfs %s lacks /%s: build it with 'make base-rootfs' or point --base-rootfs at one", src, p)
		}
	}
	digest, err := Digest(src)
	if err != nil {
		return "", err
	}
	final := filepath.Join(dir, digest[:16])
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, ".install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := copyTree(src, tmp, m); err != nil {
		return "", fmt.Errorf("install base rootfs from %s: %w", src, err)
	}
	if err := atomicfile.CommitDir(tmp, final); err != nil {
		return "", fmt.Errorf("install base rootfs: %w", err)
	}
	return final, nil
}

// Digest hashes a tree: paths, types, modes, owners, link targets and contents.
func Digest(root string) (string, error) {
	h := sha256.New()
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(paths)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, p)
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(h, "%s\x00%o\x00%d:%d\x00", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%s\x00", t)
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return "", err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyTree(src, dst string, m idmap.Mapping) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		uid, ok1 := m.ToHost(st.Uid)
		gid, ok2 := m.ToHost(st.Gid)
		if !ok1 || !ok2 {
			return fmt.Errorf("%s: owner %d:%d is outside the containers' id range", rel, st.Uid, st.Gid)
		}
		switch {
		case fi.IsDir():
			if rel != "." {
				if err := os.Mkdir(target, 0o700); err != nil {
					return err
				}
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(t, target); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := copyFile(p, target); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: %v files do not belong in the base rootfs", rel, fi.Mode().Type())
		}
		if err := os.Lchown(target, int(uid), int(gid)); err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			// After chown, which clears set-id bits.
			if err := os.Chmod(target, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
				return err
			}
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
