// Package mounts makes and inspects the host mounts containerd-lite owns: a container's
// overlay root, the shared /media/hearth mount that carries images into a running
// container, and their removal.
package mounts

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Overlay mounts an overlay of lower (read-only) and upper/work at target.
func Overlay(lower, upper, work, target string) error {
	for _, p := range []string{lower, upper, work, target} {
		if strings.ContainsAny(p, ":,") {
			return fmt.Errorf("overlay path %q contains ':' or ',', which overlayfs options cannot hold", p)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay at %s (%s): %w", target, opts, err)
	}
	return nil
}

// BindShared bind-mounts path on itself and makes it a shared mount, so mounts made
// under it later propagate to its copies (the rslave bind in a container).
func BindShared(path string) error {
	if err := unix.Mount(path, path, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on itself: %w", path, err)
	}
	if err := unix.Mount("", path, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		return fmt.Errorf("make %s shared: %w", path, err)
	}
	return nil
}

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	Target string
	FSType string
	Source string
}

// List returns the mounts of the calling process's mount namespace.
func List() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root target options [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		out = append(out, Mount{Target: unescape(fields[4]), FSType: fields[sep+1], Source: unescape(fields[sep+2])})
	}
	return out, sc.Err()
}

// unescape decodes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Under returns the targets mounted at or below dir, deepest first.
func Under(dir string) ([]string, error) {
	all, err := List()
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	var out []string
	for _, m := range all {
		if m.Target == dir || strings.HasPrefix(m.Target, dir+"/") {
			out = append(out, m.Target)
		}
	}
	// Deepest first; a target mounted twice appears twice and is unmounted twice.
	sort.SliceStable(out, func(i, j int) bool { return strings.Count(out[i], "/") > strings.Count(out[j], "/") })
	return out, nil
}

// IsMounted reports whether something is mounted exactly at path.
func IsMounted(path string) (bool, error) {
	all, err := List()
	if err != nil {
		return false, err
	}
	path = filepath.Clean(path)
	for _, m := range all {
		if m.Target == path {
			return true, nil
		}
	}
	return false, nil
}

// Detach lazily unmounts whatever is mounted at path, with everything mounted below it,
// until path is no longer a mount point (mounts may be stacked). path itself is not
// followed if it is a symlink. Detaching what is not mounted does nothing. Callers pass
// only host-only paths: submounts inside trees a container can write go with their
// parent, never by a path the container could have changed.
func Detach(path string) error {
	for i := 0; ; i++ {
		err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil // not (or no longer) a mount point
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
		if i > 64 {
			return fmt.Errorf("unmount %s: still mounted after %d unmounts", path, i)
		}
	}
}

// IsMountPoint reports whether path (not followed if a symlink) is the root of a mount.
func IsMountPoint(path string) (bool, error) {
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, 0, &st)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("statx %s: %w", path, err)
	}
	return mountRoot(&st, path)
}

// IsMountRootFD reports whether the file open at fd is the root of a mount.
func IsMountRootFD(fd int) (bool, error) {
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, 0, &st); err != nil {
		return false, fmt.Errorf("statx: %w", err)
	}
	return mountRoot(&st, fmt.Sprintf("descriptor %d", fd))
}

func mountRoot(st *unix.Statx_t, what string) (bool, error) {
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, fmt.Errorf("statx %s: this kernel does not report mount roots (needs Linux 5.8)", what)
	}
	return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}
