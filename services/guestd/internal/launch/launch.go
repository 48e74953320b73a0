// Package launch runs a package's processes inside the container: each job gets a
// subcontainer (an overlay of its image the host mounts on request), with the container's
// /proc, /sys, /dev and /run bound in and its volumes bound where the manifest says; then
// the process is started chrooted there, as the image's user, with the image's defaults
// under the manifest's settings.
package launch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/beneath"
	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	"hearth.dev/services/guestd/internal/effectsock"
	"hearth.dev/services/guestd/internal/reaper"
)

// Host is what the launcher asks of the host.
type Host interface {
	CreateOverlay(ctx context.Context, image, name string) (string, error)
	DestroyOverlay(ctx context.Context, name string) error
	BindVolume(ctx context.Context, volume, sub, path string, readOnly bool) error
}

// Shared are the container's directories every subcontainer shares.
var Shared = []string{"/proc", "/sys", "/dev", "/run"}

// Assets are the package's assets, bound into every subcontainer when the host mounted them.
const Assets = "/media/hearth/assets"

// What package scripts call effects with, bound into every subcontainer at the same
// path as in the container: guestd's effects socket (alone: never guestd.sock or
// host.sock, whose directories stay out of subcontainers), named in every job's
// environment by EffectsSocketEnv, and the static client hearth-effect (from the base
// rootfs, read-only), on the default PATH.
const (
	EffectsSocket    = effectsock.Path
	EffectsSocketEnv = "HEARTH_EFFECTS_SOCKET"
	EffectClient     = "/usr/local/bin/hearth-effect"
)

// isMountPoint reports whether path is the root of a mount.
func isMountPoint(path string) bool {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, 0, &st); err != nil {
		return false
	}
	return st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
}

// Launcher implements supervisor.Launcher for real.
type Launcher struct {
	host   Host
	reaper *reaper.Reaper
	images map[string]manifest.ImageDefaults
	hosts  string // /etc/hosts of every subcontainer
	log    *slog.Logger

	mu   sync.Mutex
	subs map[string]*sub

	// Subcontainers package scripts made (subcontainer.create) and ran commands in
	// (subcontainer.exec): the binds equip made in each.
	equipMu  sync.Mutex
	equipped map[string][]string
}

type sub struct {
	root  string   // path of the subcontainer root, in the container
	binds []string // our bind mounts inside it, to undo
}

// New returns a launcher for a package whose jobs are names (each resolves to 127.0.0.1).
func New(host Host, r *reaper.Reaper, images map[string]manifest.ImageDefaults, names []string, log *slog.Logger) *Launcher {
	sorted := slices.Clone(names)
	sort.Strings(sorted)
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n", strings.Join(sorted, " "))
	return &Launcher{host: host, reaper: r, images: images, hosts: hosts, log: log, subs: map[string]*sub{}, equipped: map[string][]string{}}
}

// Prepare implements supervisor.Launcher.
func (l *Launcher) Prepare(ctx context.Context, name string, spec *manifest.Daemon, fresh bool) error {
	l.mu.Lock()
	s, ok := l.subs[name]
	l.mu.Unlock()
	if ok && !fresh {
		return nil
	}
	if err := l.Release(ctx, name); err != nil {
		return err
	}
	root, err := l.host.CreateOverlay(ctx, spec.Image, name)
	if err != nil {
		return fmt.Errorf("subcontainer for %s: %w", name, err)
	}
	s = &sub{root: root}
	fail := func(err error) error {
		l.undo(s)
		_ = l.host.DestroyOverlay(ctx, name)
		return err
	}
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	defer unix.Close(rootFD)
	if s.binds, err = equip(rootFD, name); err != nil {
		return fail(err)
	}
	for i, m := range spec.Mounts {
		if m.File == "" {
			if err := l.host.BindVolume(ctx, m.Volume, name, m.Path, m.ReadOnly); err != nil {
				return fail(fmt.Errorf("mounts[%d] (volume %s at %s): %w", i, m.Volume, m.Path, err))
			}
			continue
		}
		// One file of the volume: the host binds the volume aside, we bind the file.
		aside := VolumeFilesDir + "/" + m.Volume
		if err := l.host.BindVolume(ctx, m.Volume, name, aside, false); err != nil {
			return fail(fmt.Errorf("mounts[%d] (volume %s at %s): %w", i, m.Volume, aside, err))
		}
		target, err := bindFileOf(rootFD, aside+"/"+m.File, m.Path, m.ReadOnly)
		if err != nil {
			return fail(fmt.Errorf("mounts[%d] (file %s of volume %s at %s): %w", i, m.File, m.Volume, m.Path, err))
		}
		s.binds = append(s.binds, target)
	}
	if err := writeIn(rootFD, "etc", "hosts", []byte(l.hosts)); err != nil {
		return fail(fmt.Errorf("write /etc/hosts of %s: %w", name, err))
	}
	if resolv, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		if err := writeIn(rootFD, "etc", "resolv.conf", resolv); err != nil {
			return fail(fmt.Errorf("write /etc/resolv.conf of %s: %w", name, err))
		}
	}
	l.mu.Lock()
	l.subs[name] = s
	l.mu.Unlock()
	return nil
}

// equip binds what every subcontainer shares into the root open at rootFD: the shared
// directories, the package's assets when the host mounted them (read-only there, and so
// here), the effects socket and the effect client. It returns the bind mounts made, to
// undo; on failure it has undone them.
func equip(rootFD int, name string) ([]string, error) {
	shared := Shared
	if st, err := os.Stat(Assets); err == nil && st.IsDir() && isMountPoint(Assets) {
		shared = append(slices.Clone(Shared), Assets)
	}
	var binds []string
	fail := func(err error) ([]string, error) {
		undoBinds(binds, nil)
		return nil, err
	}
	for _, dir := range shared {
		target, err := bindInto(rootFD, dir)
		if err != nil {
			return fail(fmt.Errorf("bind %s into %s: %w", dir, name, err))
		}
		binds = append(binds, target)
	}
	for _, f := range []struct {
		path     string
		readOnly bool
	}{{EffectsSocket, false}, {EffectClient, true}} {
		if _, err := os.Stat(f.path); err != nil {
			continue // a guestd serving no effects, or a base rootfs without the client
		}
		target, err := bindFileInto(rootFD, f.path, f.readOnly)
		if err != nil {
			return fail(fmt.Errorf("bind %s into %s: %w", f.path, name, err))
		}
		binds = append(binds, target)
	}
	return binds, nil
}

// VolumeFilesDir is where a subcontainer that binds a file of a volume (a mount with
// file) has that volume bound.
const VolumeFilesDir = "/.hearth-volumes"

// bindFileOf binds the file src of the root open at rootFD at target in the same root
// (both resolve inside the root), over an empty file it makes there; src must be a
// regular file.
func bindFileOf(rootFD int, src, target string, readOnly bool) (string, error) {
	sfd, err := unix.Openat2(rootFD, strings.TrimPrefix(src, "/"), &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return "", fmt.Errorf("open %s: %w: %w", src, err, errdefs.ErrFailedPrecondition)
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", fmt.Errorf("%s is not a regular file: %w", src, errdefs.ErrFailedPrecondition)
	}
	tree, err := unix.OpenTree(sfd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return "", fmt.Errorf("open_tree %s: %w", src, err)
	}
	defer unix.Close(tree)
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Propagation: unix.MS_SLAVE}); err != nil {
		return "", fmt.Errorf("make the copy of %s a slave: %w", src, err)
	}
	return attachFile(rootFD, tree, target, readOnly)
}

// bindFileInto binds the container's file at the same path inside the root open at
// rootFD (the path resolves inside the root), over an empty file it makes there.
func bindFileInto(rootFD int, file string, readOnly bool) (string, error) {
	tree, err := unix.OpenTree(unix.AT_FDCWD, file, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("open_tree %s: %w", file, err)
	}
	defer unix.Close(tree)
	return attachFile(rootFD, tree, file, readOnly)
}

// attachFile attaches the detached mount tree (of a file) at file inside the root open at
// rootFD, over an empty file it makes there, read-only when asked; it returns the mount
// point's path in the container.
func attachFile(rootFD, tree int, file string, readOnly bool) (string, error) {
	d, err := beneath.OpenDir(rootFD, path.Dir(file), beneath.InRoot, &beneath.Owner{Mode: 0o755})
	if err != nil {
		return "", err
	}
	defer unix.Close(d)
	base := path.Base(file)
	t, err := unix.Openat(d, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		fd, cerr := unix.Openat(d, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if cerr != nil {
			return "", fmt.Errorf("make the mount point: %w", cerr)
		}
		unix.Close(fd)
		t, err = unix.Openat(d, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return "", err
	}
	// Whatever is there already (a file of the image, our bind from an earlier guestd)
	// is covered; a directory or a symlink is not.
	var st unix.Stat_t
	if err := unix.Fstat(t, &st); err != nil {
		unix.Close(t)
		return "", err
	}
	if m := st.Mode & unix.S_IFMT; m == unix.S_IFDIR || m == unix.S_IFLNK {
		unix.Close(t)
		return "", fmt.Errorf("%s in the image is a directory or a symlink: %w", file, errdefs.ErrFailedPrecondition)
	}
	defer unix.Close(t)
	if readOnly {
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return "", fmt.Errorf("make the bind of %s read-only: %w", file, err)
		}
	}
	if err := unix.MoveMount(tree, "", t, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return "", fmt.Errorf("move_mount %s: %w", file, err)
	}
	return os.Readlink(fmt.Sprintf("/proc/self/fd/%d", t))
}

// bindInto binds the container's dir (recursively) at the same path inside the root
// open at rootFD; the path resolves inside the root, as the subcontainer sees it.
func bindInto(rootFD int, dir string) (string, error) {
	t, err := beneath.OpenDir(rootFD, dir, beneath.InRoot, &beneath.Owner{Mode: 0o755})
	if err != nil {
		return "", err
	}
	defer unix.Close(t)
	tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return "", fmt.Errorf("open_tree %s: %w", dir, err)
	}
	defer unix.Close(tree)
	// The copy must not be a peer of the container's own mounts: unmounting it later
	// would unmount theirs too (the container's /dev/ptmx, say). As a slave it still
	// sees mounts the container makes.
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Propagation: unix.MS_SLAVE}); err != nil {
		return "", fmt.Errorf("make the copy of %s a slave: %w", dir, err)
	}
	if err := unix.MoveMount(tree, "", t, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return "", fmt.Errorf("move_mount %s: %w", dir, err)
	}
	return os.Readlink(fmt.Sprintf("/proc/self/fd/%d", t))
}

// writeIn writes dir/name inside the root open at rootFD, never through a symlink.
func writeIn(rootFD int, dir, name string, data []byte) error {
	d, err := beneath.OpenDir(rootFD, dir, beneath.InRoot, &beneath.Owner{Mode: 0o755})
	if err != nil {
		return err
	}
	defer unix.Close(d)
	_ = unix.Unlinkat(d, name, 0)
	fd, err := unix.Openat(d, name, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.Write(fd, data)
	return err
}

func (l *Launcher) undo(s *sub) { undoBinds(s.binds, l.log) }

func undoBinds(binds []string, log *slog.Logger) {
	for i := len(binds) - 1; i >= 0; i-- {
		if err := unix.Unmount(binds[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) && log != nil {
			log.Warn("unmount", "path", binds[i], "error", err)
		}
	}
}

// Release implements supervisor.Launcher: the mounts inside the subcontainer go (ours,
// and any a previous guestd left), then the host's overlay. When we made none and nothing
// is mounted there, the host has none either (its overlays are mounted below the media
// directory, which propagates into the container as they are made, and it forgets them
// when the container stops): no call, which spares a round trip over host.sock on the
// first start of every daemon.
func (l *Launcher) Release(ctx context.Context, name string) error {
	l.mu.Lock()
	s, ok := l.subs[name]
	delete(l.subs, name)
	l.mu.Unlock()
	if ok {
		l.undo(s)
	}
	root := SubcontainersDir + "/" + name
	below := MountsBelow(root)
	for _, m := range below {
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
	if !ok && len(below) == 0 && !isMountPoint(root) {
		return nil
	}
	return l.host.DestroyOverlay(ctx, name)
}

// SubcontainersDir is where the host mounts subcontainer roots, in the container.
const SubcontainersDir = "/media/hearth/subcontainers"

// MountsBelow lists mount points strictly below dir, deepest first.
func MountsBelow(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return slices.Compact(out)
}

// Cleanup implements supervisor.Launcher: it kills every process still rooted in the
// job's subcontainer (descendants that left its process group).
func (l *Launcher) Cleanup(name string) {
	l.mu.Lock()
	s, ok := l.subs[name]
	l.mu.Unlock()
	if !ok {
		return
	}
	for _, pid := range Rooted(s.root) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// Rooted lists the processes whose root directory is root.
func Rooted(root string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if r, err := os.Readlink(filepath.Join("/proc", e.Name(), "root")); err == nil && r == root {
			out = append(out, pid)
		}
	}
	return out
}

// Command is a process ready to start in a job's subcontainer.
type Command struct {
	Path string
	Argv []string
	Attr *syscall.ProcAttr
}

// Build prepares argv (or, when nil, the job's own command) to run in the job's
// subcontainer as its user with its environment plus extra.
func (l *Launcher) Build(name string, spec *manifest.Daemon, argv []string, extra map[string]string) (*Command, error) {
	l.mu.Lock()
	s, ok := l.subs[name]
	l.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s has no subcontainer: it is not running; start it first: %w", name, errdefs.ErrFailedPrecondition)
	}
	img := l.images[spec.Image]
	if argv == nil {
		argv = Argv(spec, img)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("%s: no command: the manifest gives none and the image has no entrypoint or cmd; give one: %w", name, errdefs.ErrInvalidArgument)
	}
	userSpec := spec.User
	if userSpec == "" {
		userSpec = img.User
	}
	dir := spec.Workdir
	if dir == "" {
		dir = img.WorkingDir
	}
	return build(s.root, name, userSpec, argv, dir, func(id Identity) []string { return Env(img.Env, spec.Env, extra, id, name) })
}

// build prepares argv to run chrooted in root as userSpec, in dir, with the environment
// env returns for that user.
func build(root, name, userSpec string, argv []string, dir string, env func(Identity) []string) (*Command, error) {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootFD)
	passwd, _ := openIn(rootFD, "/etc/passwd")
	group, _ := openIn(rootFD, "/etc/group")
	id, err := ResolveUser(userSpec, passwd, group)
	passwd.Close()
	group.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	vars := env(id)
	prog, err := lookPath(rootFD, argv[0], vars)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if dir == "" {
		dir = "/"
	}
	return &Command{Path: prog, Argv: argv, Attr: &syscall.ProcAttr{
		Dir: dir, Env: vars,
		Sys: &syscall.SysProcAttr{Chroot: root, Setpgid: true,
			Credential: &syscall.Credential{Uid: id.UID, Gid: id.GID, Groups: id.Groups}},
	}}, nil
}

// BuildExec prepares argv to run in the subcontainer name, an overlay of image made by
// subcontainer.create (or a job's): as the image's user, in workdir (else the image's),
// with the image's environment plus env. A subcontainer that is no job's gets the binds
// a job's has (Shared, the assets, the effects socket and client) the first time.
func (l *Launcher) BuildExec(name, image string, argv []string, env map[string]string, workdir string) (*Command, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("argv is empty: name the program to run: %w", errdefs.ErrInvalidArgument)
	}
	img, ok := l.images[image]
	if !ok && l.images != nil {
		return nil, fmt.Errorf("subcontainer %s is of image %q, which the package does not have: %w", name, image, errdefs.ErrFailedPrecondition)
	}
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return nil, fmt.Errorf("subcontainer name %q: not a name: %w", name, errdefs.ErrInvalidArgument)
	}
	root := SubcontainersDir + "/" + name
	l.mu.Lock()
	job, isJob := l.subs[name]
	l.mu.Unlock()
	if isJob {
		root = job.root
	} else if err := l.equip(name, root); err != nil {
		return nil, err
	}
	if workdir == "" {
		workdir = img.WorkingDir
	}
	return build(root, name, img.User, argv, workdir, func(id Identity) []string { return Env(img.Env, nil, env, id, name) })
}

// equip binds what jobs share into a script's subcontainer, unless they are there.
func (l *Launcher) equip(name, root string) error {
	l.equipMu.Lock()
	defer l.equipMu.Unlock()
	if !isMountPoint(root) {
		return fmt.Errorf("no subcontainer %q is mounted: make it with subcontainer.create: %w", name, errdefs.ErrNotFound)
	}
	if _, ok := l.equipped[name]; ok || isMountPoint(root+"/proc") {
		return nil // by us, or by an earlier guestd
	}
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rootFD)
	binds, err := equip(rootFD, name)
	if err != nil {
		return err
	}
	l.equipped[name] = binds
	return nil
}

// Unequip undoes what BuildExec bound into a script's subcontainer (and whatever else
// is mounted in it), before the host destroys it. A job's subcontainer is refused: its
// job is running there.
func (l *Launcher) Unequip(name string) error {
	l.mu.Lock()
	_, isJob := l.subs[name]
	l.mu.Unlock()
	if isJob {
		return fmt.Errorf("subcontainer %s belongs to the package's job %s, which runs there: stop it instead: %w", name, name, errdefs.ErrFailedPrecondition)
	}
	l.equipMu.Lock()
	defer l.equipMu.Unlock()
	undoBinds(l.equipped[name], l.log)
	delete(l.equipped, name)
	if strings.Contains(name, "/") || name == ".." || name == "." || name == "" {
		return nil // no such overlay; the host says so
	}
	for _, m := range MountsBelow(SubcontainersDir + "/" + name) {
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
	return nil
}

// Argv is the command a job runs: the manifest's command (else the image's entrypoint)
// followed by the manifest's args (else, when neither command nor args is given, the
// image's cmd).
func Argv(spec *manifest.Daemon, img manifest.ImageDefaults) []string {
	head := spec.Command
	if head == nil {
		head = img.Entrypoint
	}
	tail := spec.Args
	if tail == nil && spec.Command == nil {
		tail = img.Cmd
	}
	return append(slices.Clone(head), tail...)
}

// Env is the image's environment, then HOME, PATH and HOSTNAME where unset, then the
// manifest's, then extra, then HEARTH_EFFECTS_SOCKET.
func Env(image []string, manifestEnv, extra map[string]string, id Identity, name string) []string {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, kv := range image {
		if k, v, ok := strings.Cut(kv, "="); ok {
			set(k, v)
		}
	}
	defaults := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": id.Home, "HOSTNAME": name}
	for _, k := range []string{"PATH", "HOME", "HOSTNAME"} {
		if _, ok := vars[k]; !ok {
			set(k, defaults[k])
		}
	}
	for _, m := range []map[string]string{manifestEnv, extra} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(k, m[k])
		}
	}
	set(EffectsSocketEnv, EffectsSocket)
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out
}

// openIn opens a file inside the root for reading, or returns a nil *os.File.
func openIn(rootFD int, p string) (*os.File, error) {
	fd, err := unix.Openat2(rootFD, strings.TrimPrefix(p, "/"), &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: beneath.InRoot})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), p), nil
}

// lookPath finds prog inside the root: as given when it has a slash, else in $PATH.
func lookPath(rootFD int, prog string, env []string) (string, error) {
	candidates := []string{prog}
	if !strings.Contains(prog, "/") {
		candidates = nil
		pathVar := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				pathVar = v
			}
		}
		for _, dir := range filepath.SplitList(pathVar) {
			if path.IsAbs(dir) {
				candidates = append(candidates, path.Join(dir, prog))
			}
		}
	}
	for _, c := range candidates {
		fd, err := unix.Openat2(rootFD, strings.TrimPrefix(c, "/"), &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: beneath.InRoot})
		if err != nil {
			continue
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&0o111 != 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("program %q not found in the image (looked in %s): %w", prog, strings.Join(candidates, ", "), errdefs.ErrNotFound)
}

// Start implements supervisor.Launcher.
func (l *Launcher) Start(name string, spec *manifest.Daemon, stdout, stderr *os.File) (int, <-chan reaper.Exit, error) {
	c, err := l.Build(name, spec, nil, nil)
	if err != nil {
		return 0, nil, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, nil, err
	}
	defer devnull.Close()
	c.Attr.Files = []uintptr{devnull.Fd(), stdout.Fd(), stderr.Fd()}
	return l.reaper.Spawn(c.Path, c.Argv, c.Attr)
}

// Run implements supervisor.Launcher.
func (l *Launcher) Run(ctx context.Context, name string, spec *manifest.Daemon, argv []string) (reaper.Exit, error) {
	c, err := l.Build(name, spec, argv, nil)
	if err != nil {
		return reaper.Exit{}, err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return reaper.Exit{}, err
	}
	defer devnull.Close()
	c.Attr.Files = []uintptr{devnull.Fd(), devnull.Fd(), devnull.Fd()}
	pid, ch, err := l.reaper.Spawn(c.Path, c.Argv, c.Attr)
	if err != nil {
		return reaper.Exit{}, err
	}
	select {
	case e := <-ch:
		return e, nil
	case <-ctx.Done():
		_ = l.reaper.SignalGroup(pid, syscall.SIGKILL)
		select {
		case e := <-ch:
			return e, ctx.Err()
		case <-time.After(5 * time.Second):
			return reaper.Exit{}, ctx.Err()
		}
	}
}

// Spawn starts a built command.
func (l *Launcher) Spawn(c *Command) (int, <-chan reaper.Exit, error) {
	return l.reaper.Spawn(c.Path, c.Argv, c.Attr)
}

// Signal implements supervisor.Launcher: sig goes to the process group of pid (a process
// Start, Run or Spawn started, always a group leader) unless the reaper has collected it
// (reaper.ErrReaped), when its pid may name another process.
func (l *Launcher) Signal(pid int, sig syscall.Signal) error {
	return l.reaper.SignalGroup(pid, sig)
}
