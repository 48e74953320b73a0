package mounts

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// BindIDMapped mounts a clone of src at target, shifted through the user namespace open
// at usernsFD (files owned by uid 0 appear owned by that namespace's root), read-only
// when readonly. This is how an image stored once with its real owners shows as its own
// to every container: open_tree(CLONE) → mount_setattr(IDMAP) → move_mount.
func BindIDMapped(src, target string, usernsFD int, readonly bool) error {
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	defer unix.Close(tree)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_NODEV, Userns_fd: uint64(usernsFD)}
	if readonly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, attr); err != nil {
		return fmt.Errorf("idmap %s: %w", src, err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount %s at %s: %w", src, target, err)
	}
	return nil
}

// BindAt bind-mounts src onto the directory open at targetFD (an O_PATH descriptor, so
// the target cannot be swapped for a symlink between check and mount).
func BindAt(src string, targetFD int, readonly bool) error {
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	defer unix.Close(tree)
	if readonly {
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("read-only %s: %w", src, err)
		}
	}
	if err := unix.MoveMount(tree, "", targetFD, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	return nil
}

// OverlayAt mounts an overlay of lower (read-only), upper and work onto the directory
// open at targetFD, as a shared mount so that binds made into it later reach the
// container's copy. The upper layer is ephemeral, so the overlay is volatile: it never
// syncs, and unmounting it takes milliseconds instead of a file system sync.
func OverlayAt(lower, upper, work string, targetFD int) error {
	// A volatile overlay leaves <work>/work/incompat/volatile behind; overlayfs refuses to
	// mount the layers again until it is gone.
	if err := os.RemoveAll(filepath.Join(work, "work", "incompat")); err != nil {
		return err
	}
	fs, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fs)
	for _, kv := range [][2]string{{"lowerdir", lower}, {"upperdir", upper}, {"workdir", work}} {
		if err := unix.FsconfigSetString(fs, kv[0], kv[1]); err != nil {
			return fmt.Errorf("overlay %s=%s: %w", kv[0], kv[1], err)
		}
	}
	if err := unix.FsconfigSetFlag(fs, "volatile"); err != nil {
		return fmt.Errorf("overlay volatile: %w", err)
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return fmt.Errorf("create overlay (lower %s, upper %s): %w", lower, upper, err)
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mnt)
	if err := unix.MountSetattr(mnt, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Propagation: unix.MS_SHARED}); err != nil {
		return fmt.Errorf("make overlay shared: %w", err)
	}
	if err := unix.MoveMount(mnt, "", targetFD, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach overlay: %w", err)
	}
	return nil
}
