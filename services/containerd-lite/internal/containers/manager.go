// Package containers is containerd-lite's container lifecycle: create, start, stop and
// delete unprivileged LXC containers on an overlay of the shared base rootfs, serve each
// running container its host.sock, and reconcile the stored records with what LXC and
// the mount table say at start-up.
package containers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/keylock"
	"hearth.dev/internal/manifest"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	"hearth.dev/services/containerd-lite/internal/idmap"
	"hearth.dev/services/containerd-lite/internal/limits"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/mounts"
	"hearth.dev/services/containerd-lite/internal/store"
)

// InitCommand is the container's PID 1: guestd from the base rootfs.
var InitCommand = []string{"/sbin/guestd", "init"}

// DefaultStopTimeout is how long init gets to stop before the container is killed.
const DefaultStopTimeout = 10 * time.Second

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// ValidateName checks a container name.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("container name %q: use 1 to 32 lower-case letters, digits and '-', starting with a letter or digit: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Options configure a Manager.
type Options struct {
	// StateDir holds containers/<name>/ (upper, work, rootfs, rpc and logs).
	StateDir string
	// BaseRootfs is the installed (id-shifted) base every container's overlay sits on.
	BaseRootfs string
	Runtime    *lxcrt.Runtime
	Store      *store.Store
	Logger     *slog.Logger
	IDMap      idmap.Mapping
	// GuestTimeout bounds how long Start waits for guestd to answer; 15s when zero.
	GuestTimeout time.Duration
	// Images resolves image references and finds their files.
	Images Images
	// Policy caps the containers' cgroup limits.
	Policy limits.Policy
	// CgroupV2 selects the unified hierarchy's settings.
	CgroupV2 bool
	// HostService returns the service a container's host.sock serves.
	HostService func(container string) hostv1.HostServiceServer
	// Userns is a user namespace with IDMap's mapping, for idmapped image mounts.
	Userns int
	// Network attaches running containers to netd's bridge; nil for loopback only.
	Network Network
}

// Network is netd, as containers see it.
type Network interface {
	// Attach gives the container whose init is pid a veth and an address; ok is false
	// when netd is not running (the container keeps loopback only).
	Attach(ctx context.Context, container string, pid int) (address string, ok bool, err error)
	// Detach removes the container's veth; a no-op when netd is not running.
	Detach(ctx context.Context, container string) error
}

// Images is what containers need of the image store.
type Images interface {
	Resolve(ref string) (string, error)
	Rootfs(digest string) string
	Defaults(digest string) (manifest.ImageDefaults, error)
}

// Manager runs containers. Its methods are safe for concurrent use; operations on one
// container are serialized.
type Manager struct {
	opts  Options
	log   *slog.Logger
	locks keylock.Map
	mu    sync.Mutex // guards hosts
	hosts map[string]*hostServer
}

// New returns a manager. Call Reconcile before serving requests.
func New(opts Options) *Manager {
	if opts.GuestTimeout == 0 {
		opts.GuestTimeout = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Manager{opts: opts, log: opts.Logger, hosts: map[string]*hostServer{}}
}

// Info is a container's record joined with what LXC reports now.
type Info struct {
	store.Container
	State   lxcrt.State
	InitPID int
	// Rootfs is set while the root file system is mounted.
	Rootfs string
	RPCDir string
}

// Paths of one container on the host.
type paths struct {
	dir, upper, work, rootfs, media, rpc, lxcLog, console string
	// images holds the host-only idmapped image mounts; overlays the ephemeral layers.
	images, overlays string
}

func (p paths) container() string { return filepath.Base(p.dir) }

func (m *Manager) paths(name string) paths {
	d := filepath.Join(m.opts.StateDir, "containers", name)
	rootfs := filepath.Join(d, "rootfs")
	return paths{
		dir: d, upper: filepath.Join(d, "upper"), work: filepath.Join(d, "work"),
		rootfs: rootfs, media: filepath.Join(rootfs, "media", "hearth"),
		rpc: filepath.Join(d, "rpc"), lxcLog: filepath.Join(d, "lxc.log"), console: filepath.Join(d, "console.log"),
		images: filepath.Join(d, "images"), overlays: filepath.Join(d, "overlays"),
	}
}

// lock serializes a container's lifecycle (create, start, stop, delete), which may wait
// long on LXC; slock serializes short changes to its record and mounts (the host effects
// its guestd asks for, even while the container starts or stops). Never take lock while
// holding slock.
func (m *Manager) lock(name string) func()  { return m.locks.Lock("lifecycle/" + name) }
func (m *Manager) slock(name string) func() { return m.locks.Lock("state/" + name) }

// update changes a container's record under its state lock.
func (m *Manager) update(name string, fn func(*store.Container)) (store.Container, error) {
	defer m.slock(name)()
	rec, err := m.opts.Store.GetContainer(name)
	if err != nil {
		return rec, err
	}
	fn(&rec)
	return rec, m.opts.Store.PutContainer(rec)
}

// Create defines a container and its writable layer, resolves its images, makes its
// volumes (keeping ones a former container of that name left) and fixes its limits. It
// does not start it.
func (m *Manager) Create(ctx context.Context, name string, spec Spec) (Info, error) {
	if err := ValidateName(name); err != nil {
		return Info{}, err
	}
	rec, err := m.resolveSpec(name, spec)
	if err != nil {
		return Info{}, err
	}
	defer m.lock(name)()
	if _, err := m.opts.Store.GetContainer(name); err == nil {
		return Info{}, fmt.Errorf("container %q: %w", name, errdefs.ErrAlreadyExists)
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return Info{}, err
	}
	p := m.paths(name)
	if _, err := os.Lstat(p.dir); err == nil {
		return Info{}, fmt.Errorf("container %q: its directory %s exists without a record; restart containerd-lite to reconcile: %w", name, p.dir, errdefs.ErrFailedPrecondition)
	}
	undo := func() {
		_ = m.opts.Runtime.Undefine(name)
		_ = os.RemoveAll(p.dir)
	}
	if err := m.makeDirs(p); err != nil {
		undo()
		return Info{}, err
	}
	if err := m.makeVolumes(name, rec.Volumes); err != nil {
		undo()
		return Info{}, err
	}
	cfg := lxcrt.Config{
		Name: name, Rootfs: p.rootfs, RPCDir: p.rpc,
		LogFile: p.lxcLog, ConsoleLog: p.console, IDMap: m.opts.IDMap, Init: InitCommand,
		Cgroup: limits.ConfigLines(rec.Limits, m.opts.CgroupV2),
	}
	if err := m.opts.Runtime.Define(cfg); err != nil {
		undo()
		return Info{}, err
	}
	if err := m.opts.Store.PutContainer(rec); err != nil {
		undo()
		return Info{}, err
	}
	m.log.Info("container created", "container", name)
	return m.info(rec)
}

func (m *Manager) makeDirs(p paths) error {
	root := m.opts.IDMap.RootUID()
	// The path to a container's root must be traversable by its root user.
	for _, d := range []string{m.opts.StateDir, filepath.Dir(p.dir)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	for _, d := range []struct {
		path  string
		mode  os.FileMode
		owned bool
	}{
		{p.dir, 0o711, false},
		{p.upper, 0o755, true},
		{p.work, 0o700, false},
		{p.rootfs, 0o755, false},
		{p.rpc, 0o750, true},
	} {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			return fmt.Errorf("create %s: %w", d.path, err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return err
		}
		if d.owned {
			if err := os.Chown(d.path, root, root); err != nil {
				return fmt.Errorf("chown %s: %w", d.path, err)
			}
		}
	}
	return nil
}

// Start starts a container and returns once guestd answers inside it. Starting a running
// container changes nothing.
func (m *Manager) Start(ctx context.Context, name string) (Info, error) {
	defer m.lock(name)()
	rec, err := m.opts.Store.GetContainer(name)
	if err != nil {
		return Info{}, err
	}
	st, _, err := m.opts.Runtime.State(name)
	if err != nil {
		return Info{}, err
	}
	if st == lxcrt.Running {
		if err := m.serveHost(name); err != nil {
			return Info{}, err
		}
		return m.info(rec)
	}
	if st != lxcrt.Stopped {
		return Info{}, fmt.Errorf("container %q is %s: wait for it to settle, then retry: %w", name, st, errdefs.ErrFailedPrecondition)
	}
	p := m.paths(name)
	fail := func(err error) (Info, error) {
		if serr := m.opts.Runtime.Stop(name, 0); serr != nil {
			m.log.Warn("kill after failed start", "container", name, "error", serr)
		}
		m.teardown(name)
		return Info{}, err
	}
	if err := m.mountRoot(p, rec); err != nil {
		return fail(err)
	}
	removeSockets(p.rpc)
	if err := m.writeBundle(p, rec); err != nil {
		return fail(err)
	}
	// lxc.log explains a failed start; keep only this start's lines.
	_ = os.Truncate(p.lxcLog, 0)
	if err := m.serveHost(name); err != nil {
		return fail(err)
	}
	// Images are there before init runs: guestd asks for overlays of them at once.
	if err := m.mountImages(name, rec); err != nil {
		return fail(err)
	}
	if err := m.opts.Runtime.Start(name, 10*time.Second); err != nil {
		return fail(fmt.Errorf("%w%s", err, tail("lxc.log", p.lxcLog)))
	}
	addr, err := m.attach(ctx, name)
	if err != nil {
		return fail(err)
	}
	wctx, cancel := context.WithTimeout(ctx, m.opts.GuestTimeout)
	defer cancel()
	if _, err := m.waitGuest(wctx, name); err != nil {
		return fail(fmt.Errorf("container %q started but guestd did not answer: %w%s", name, err, tail("console", p.console)))
	}
	// guestd may have made overlays meanwhile: change only the start time.
	rec, err = m.update(name, func(r *store.Container) { r.StartedAt, r.Address = time.Now().UTC(), addr })
	if err != nil {
		return Info{}, err
	}
	m.log.Info("container started", "container", name)
	return m.info(rec)
}

// mountRoot mounts the overlay root and makes /media/hearth a shared mount; both are
// skipped when already there.
func (m *Manager) mountRoot(p paths, rec store.Container) error {
	if ok, err := mounts.IsMounted(p.rootfs); err != nil {
		return err
	} else if !ok {
		if err := mounts.Overlay(rec.BaseRootfs, p.upper, p.work, p.rootfs); err != nil {
			return err
		}
	}
	if ok, err := mounts.IsMounted(p.media); err != nil {
		return err
	} else if !ok {
		if err := mounts.BindShared(p.media); err != nil {
			return err
		}
	}
	return nil
}

// teardown undoes what a running container needed on the host: its host.sock, its
// mounts and stale sockets. The container must be stopped.
func (m *Manager) teardown(name string) {
	p := m.paths(name)
	m.stopHost(name)
	if done, err := mounts.UnmountAll(p.dir); err != nil {
		m.log.Error("unmount", "container", name, "error", err)
	} else if len(done) > 0 {
		m.log.Debug("unmounted", "container", name, "targets", done)
	}
	removeSockets(p.rpc)
	// Overlays are ephemeral: their upper layers go with the run.
	if err := os.RemoveAll(p.overlays); err != nil {
		m.log.Error("remove overlays", "container", name, "error", err)
	}
	if m.opts.Network != nil {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := m.opts.Network.Detach(dctx, name); err != nil {
			m.log.Warn("detach from netd", "container", name, "error", err)
		}
		cancel()
	}
	if _, err := m.update(name, func(r *store.Container) { r.Overlays, r.Address = nil, "" }); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		m.log.Error("forget overlays", "container", name, "error", err)
	}
}

// Stop stops a container: init gets timeout to stop cleanly, then the container is killed.
func (m *Manager) Stop(ctx context.Context, name string, timeout time.Duration) (Info, error) {
	defer m.lock(name)()
	rec, err := m.opts.Store.GetContainer(name)
	if err != nil {
		return Info{}, err
	}
	if timeout <= 0 {
		timeout = stopTimeout(rec)
	}
	if err := m.stopLocked(name, timeout); err != nil {
		return Info{}, err
	}
	return m.info(rec)
}

func (m *Manager) stopLocked(name string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	start := time.Now()
	if err := m.opts.Runtime.Stop(name, timeout); err != nil {
		return err
	}
	m.teardown(name)
	m.log.Info("container stopped", "container", name, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Delete removes a container and everything made for it on the host. A running
// container is refused unless force is set, in which case it is stopped first.
func (m *Manager) Delete(ctx context.Context, name string, force, purgeVolumes bool) error {
	defer m.lock(name)()
	if _, err := m.opts.Store.GetContainer(name); err != nil {
		return err
	}
	st, _, err := m.opts.Runtime.State(name)
	if err != nil {
		return err
	}
	if st != lxcrt.Stopped && st != lxcrt.Missing {
		if !force {
			return fmt.Errorf("container %q is %s: stop it first, or delete with force: %w", name, st, errdefs.ErrFailedPrecondition)
		}
		rec, _ := m.opts.Store.GetContainer(name)
		if err := m.stopLocked(name, stopTimeout(rec)); err != nil {
			return err
		}
	}
	if err := m.remove(name); err != nil {
		return err
	}
	if purgeVolumes {
		if err := os.RemoveAll(m.volumesDir(name)); err != nil {
			return fmt.Errorf("remove volumes of %q: %w", name, err)
		}
	}
	if err := m.opts.Store.DeleteContainer(name); err != nil {
		return err
	}
	m.log.Info("container deleted", "container", name, "volumes_purged", purgeVolumes)
	return nil
}

// remove deletes a stopped container's LXC definition and directory, after making sure
// nothing is mounted below it (removing through a mount would reach other trees).
func (m *Manager) remove(name string) error {
	p := m.paths(name)
	m.teardown(name)
	left, err := mounts.Under(p.dir)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("container %q: %v still mounted; not removing its directory", name, left)
	}
	if err := m.opts.Runtime.Undefine(name); err != nil {
		return err
	}
	if err := os.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("remove %s: %w", p.dir, err)
	}
	return nil
}

// Get reports one container.
func (m *Manager) Get(ctx context.Context, name string) (Info, error) {
	rec, err := m.opts.Store.GetContainer(name)
	if err != nil {
		return Info{}, err
	}
	return m.info(rec)
}

// List reports every container.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	recs, err := m.opts.Store.ListContainers()
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(recs))
	for _, r := range recs {
		i, err := m.info(r)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, nil
}

func (m *Manager) info(rec store.Container) (Info, error) {
	st, pid, err := m.opts.Runtime.State(rec.Name)
	if err != nil {
		return Info{}, err
	}
	p := m.paths(rec.Name)
	i := Info{Container: rec, State: st, InitPID: pid, RPCDir: p.rpc}
	if st != lxcrt.Running {
		i.Address = ""
	}
	if ok, _ := mounts.IsMounted(p.rootfs); ok {
		i.Rootfs = p.rootfs
	}
	return i, nil
}

// Close stops serving every host.sock. Containers keep running.
func (m *Manager) Close() error {
	m.mu.Lock()
	names := make([]string, 0, len(m.hosts))
	for n := range m.hosts {
		names = append(names, n)
	}
	m.mu.Unlock()
	for _, n := range names {
		m.stopHost(n)
	}
	return nil
}

// removeSockets removes sockets left in a container's rpc directory.
func removeSockets(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.Type() == os.ModeSocket {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// tail returns the last lines of a log file, for error messages.
func tail(label, path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return ""
	}
	if len(data) > 2048 {
		data = data[len(data)-2048:]
	}
	return fmt.Sprintf("\n--- %s (%s) ---\n%s", label, path, data)
}

// attach asks netd for the running container's veth; without netd it has loopback only.
func (m *Manager) attach(ctx context.Context, name string) (string, error) {
	if m.opts.Network == nil {
		return "", nil
	}
	_, pid, err := m.opts.Runtime.State(name)
	if err != nil {
		return "", err
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addr, ok, err := m.opts.Network.Attach(actx, name, pid)
	if err != nil {
		return "", fmt.Errorf("attach container %q to netd's bridge: %w", name, err)
	}
	if !ok {
		m.log.Info("netd is not running: the container has loopback only", "container", name)
	}
	return addr, nil
}
