// Package containers is containerd-lite's container lifecycle: create, start, stop and
// delete unprivileged LXC containers, each with its own id range and disk, and reconcile
// the stored records with what LXC and the mount table say at start-up. The parts it
// drives sit behind small interfaces: the LXC runtime, the records, the container's
// trees on the host (hostfs), its disk, its host.sock server and netd.
package containers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/keylock"
	"hearth.dev/internal/manifest"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	"hearth.dev/services/containerd-lite/internal/guestclient"
	"hearth.dev/services/containerd-lite/internal/idmap"
	"hearth.dev/services/containerd-lite/internal/limits"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/store"
)

// InitCommand is the container's PID 1: guestd's init from the base rootfs (it runs
// /sbin/guestd). Containers defined before it existed run "/sbin/guestd init", which
// becomes guestd-init.
var InitCommand = []string{"/sbin/guestd-init"}

// DefaultStopTimeout is how long init gets to stop before the container is killed.
const DefaultStopTimeout = 10 * time.Second

// DefaultMaxOverlays caps the overlays one container may have at once.
const DefaultMaxOverlays = 64

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// ValidateName checks a container name.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("container name %q: use 1 to 32 lower-case letters, digits and '-', starting with a letter or digit: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Runtime is LXC, as containers need it (lxcrt.Runtime).
type Runtime interface {
	Define(lxcrt.Config) error
	// Current reports whether the definition on disk is the config's.
	Current(lxcrt.Config) (bool, error)
	Undefine(name string) error
	State(name string) (lxcrt.State, int, error)
	// Start returns the init PID of the container it started.
	Start(ctx context.Context, name string, timeout time.Duration) (int, error)
	Stop(ctx context.Context, name string, timeout time.Duration) error
	Defined() []string
	CgroupItem(name, key string) (string, error)
	SetCgroupItem(name, key, value string) error
	Freeze(name string) error
	Unfreeze(name string) error
}

// Records keeps the containers' records (store.Store).
type Records interface {
	GetContainer(name string) (store.Container, error)
	PutContainer(store.Container) error
	DeleteContainer(name string) error
	ListContainers() ([]store.Container, error)
	GetKept(name string) (store.Kept, error)
	PutKept(store.Kept) error
	DeleteKept(name string) error
	ListKept() ([]store.Kept, error)
}

// Tree is one container's trees on the host (hostfs.Tree): see that package for what
// each operation may touch.
type Tree interface {
	Create() error
	MakeData() error
	MountRoot(baseRootfs string, userns int) error
	MountImage(name, src string, userns int) error
	MountAssets(src string) error
	ImageMounted(name string) bool
	MountOverlay(name, image string) error
	OverlayMounted(name string) (bool, error)
	MountedOverlays() ([]string, error)
	BindVolume(sub, volume, path string, readOnly bool) error
	DestroyOverlay(name string) error
	Unmount() error
	Mounted() ([]string, error)
	Remove() error
	WriteBundle(data []byte) error
	MakeVolume(name string) (existed bool, err error)
	ClearSockets() error
	DialGuest(ctx context.Context) (net.Conn, error)

	Rootfs() string
	MediaDir() string
	RPCDir() string
	HostSocket() string
	LXCLog() string
	ConsoleLog() string
	VolumePath(volume string) string
}

// Disks give each package its own disk, which holds its layers, volumes and logs and
// bounds them: the kernel refuses writes past its size.
type Disks interface {
	// Open makes the package's disk if it has none, grows it to size if it is smaller,
	// mounts it, and returns the directory it is mounted at.
	Open(name string, size int64, ids idmap.Mapping) (string, error)
	// Make makes the package's disk if it has none, and leaves it unmounted.
	Make(name string, size int64) error
	// Exists reports whether the package has a disk.
	Exists(name string) bool
	// Usage reports the bytes used and the size.
	Usage(name string) (used, size int64, err error)
	// Grow makes a mounted disk size bytes, online; errdefs.ErrPermissionDenied where
	// the kernel refuses (Open grows it offline then).
	Grow(name string, size int64) error
	// Close unmounts the disk; Purge unmounts and deletes it.
	Close(name string) error
	Purge(name string) error
	// Dir is where the package's disk is mounted.
	Dir(name string) string
	// Names lists the packages that have disks.
	Names() ([]string, error)
}

// HostSockets serve each running container its host.sock (hostsock.Servers).
type HostSockets interface {
	Serve(container, path string, rootUID int) error
	Stop(container string)
	Close()
}

// Network is netd, as containers see it.
type Network interface {
	// Attach gives the container whose init is pid a veth and an address, and tells
	// netd its declared interfaces (the only ports other containers may reach); ok is
	// false when netd is not running (the container keeps loopback only).
	Attach(ctx context.Context, container string, pid int, ifaces []Interface) (address string, ok bool, err error)
	// Resolver is the DNS server containers use (netd's, on the gateway), or "" when
	// netd serves none or is not running.
	Resolver(ctx context.Context) string
	// Detach removes the container's veth; a no-op when netd is not running.
	Detach(ctx context.Context, container string) error
	// Expose makes sure the container's interfaces are bound where its manifest exposes
	// them (lan, tor); a binding there already stays.
	Expose(ctx context.Context, container string, bindings []Exposure) error
	// Unexpose removes every binding of the container.
	Unexpose(ctx context.Context, container string) error
}

// Interface is one declared interface of a package.
type Interface struct {
	Name string
	Port int
	HTTP bool
}

// interfaces are a package's declared interfaces.
func interfaces(rec store.Container) []Interface {
	mf, err := manifest.Parse(rec.Manifest)
	if len(rec.Manifest) == 0 || err != nil {
		return nil
	}
	var out []Interface
	for _, n := range sortedKeys(mf.Interfaces) {
		it := mf.Interfaces[n]
		out = append(out, Interface{Name: n, Port: it.Port, HTTP: it.Protocol != "tcp"})
	}
	return out
}

// Exposure is one interface of a package exposed on the LAN or over Tor.
type Exposure struct {
	Interface string
	Port      int
	HTTP      bool
	Where     string // "lan" or "tor"
}

// exposures are what a manifest's interfaces ask to be exposed automatically (a domain
// needs its name from the user: hearthctl bind).
func exposures(rec store.Container) []Exposure {
	mf, err := manifest.Parse(rec.Manifest)
	if len(rec.Manifest) == 0 || err != nil {
		return nil
	}
	var out []Exposure
	for _, n := range sortedKeys(mf.Interfaces) {
		it := mf.Interfaces[n]
		for _, e := range it.Expose {
			if e == "lan" || e == "tor" {
				out = append(out, Exposure{Interface: n, Port: it.Port, HTTP: it.Protocol != "tcp", Where: e})
			}
		}
	}
	return out
}

// expose asks netd for the container's bindings; netd being absent, or a part of it not
// configured (Tor), is logged, not fatal: the package runs without that address.
func (m *Manager) expose(ctx context.Context, rec store.Container) {
	if m.opts.Network == nil {
		return
	}
	ex := exposures(rec)
	if len(ex) == 0 {
		return
	}
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := m.opts.Network.Expose(bctx, rec.Name, ex); err != nil {
		m.log.Warn("expose the package's interfaces", "container", rec.Name, "error", err)
	}
}

// Images is what containers need of the image store.
type Images interface {
	Resolve(ref string) (string, error)
	Rootfs(digest string) string
	Defaults(digest string) (manifest.ImageDefaults, error)
}

// Options configure a Manager.
type Options struct {
	// StateDir holds containers/<name>/.
	StateDir string
	// BaseRootfs is the installed base every container's root sits on (real owners; it is
	// mounted idmapped per container).
	BaseRootfs string
	Runtime    Runtime
	Records    Records
	Logger     *slog.Logger
	// Pool gives each container its own id range.
	Pool idmap.Pool
	// Userns opens a user namespace with a container's mapping, for idmapped mounts.
	Userns func(idmap.Mapping) (int, error)
	// Tree returns a container's trees on the host, with its data at data.
	Tree  func(name, data string, ids idmap.Mapping) Tree
	Disks Disks
	// Hosts serve the host.sock of running containers.
	Hosts HostSockets
	// GuestTimeout bounds how long Start waits for guestd to answer; 15s when zero.
	GuestTimeout time.Duration
	// MaxStarts is how many containers start at once (DefaultMaxStarts when zero); more
	// starts asked for wait their turn.
	MaxStarts int
	// Images resolves image references and finds their files.
	Images Images
	// Policy fills and caps the containers' limits.
	Policy limits.Policy
	// CgroupV2 selects the unified hierarchy's settings.
	CgroupV2 bool
	// Network attaches running containers to netd's bridge; nil for loopback only.
	Network Network
	// MaxOverlays caps a container's overlays (DefaultMaxOverlays when zero).
	MaxOverlays int
	// DiskReserve is the free space the state file system must keep for a container to
	// start (DefaultDiskReserve when zero; negative for none).
	DiskReserve int64
	// FreeSpace reports the state file system's free bytes (statfs when nil).
	FreeSpace func(dir string) (int64, error)
}

// DefaultDiskReserve is the free space a container start leaves the host.
const DefaultDiskReserve = 1 << 30

// Manager runs containers. Its methods are safe for concurrent use; operations on one
// container are serialized.
type Manager struct {
	opts  Options
	log   *slog.Logger
	locks keylock.Map
	// starts holds a token per container starting now (Options.MaxStarts).
	starts chan struct{}
	// idle holds the containers StartIdle started, until they stop.
	idle sync.Map
}

// New returns a manager. Call Reconcile before serving requests.
func New(opts Options) *Manager {
	if opts.GuestTimeout == 0 {
		opts.GuestTimeout = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxOverlays == 0 {
		opts.MaxOverlays = DefaultMaxOverlays
	}
	if opts.DiskReserve == 0 {
		opts.DiskReserve = DefaultDiskReserve
	}
	if opts.FreeSpace == nil {
		opts.FreeSpace = freeSpace
	}
	if opts.MaxStarts <= 0 {
		opts.MaxStarts = DefaultMaxStarts()
	}
	return &Manager{opts: opts, log: opts.Logger, starts: make(chan struct{}, opts.MaxStarts)}
}

// DefaultMaxStarts is how many containers start at once unless told: two per CPU. A start
// is half work on the host's CPUs (LXC, mounts, netd's attach, guestd's runtime starting)
// and half waiting, so two per CPU keep them busy; a hundred at once (a hundred hearthctl
// start calls side by side) only made each of them slower, until netd's attach timed out.
func DefaultMaxStarts() int { return max(2, 2*runtime.NumCPU()) }

// startSlot waits for a turn to start a container; release ends it.
func (m *Manager) startSlot(ctx context.Context, name string) (release func(), err error) {
	select {
	case m.starts <- struct{}{}:
	default:
		t0 := time.Now()
		select {
		case m.starts <- struct{}{}:
			m.log.Debug("start waited its turn", "container", name, "waited", time.Since(t0))
		case <-ctx.Done():
			return nil, fmt.Errorf("container %q waited for its turn to start (%d start at once): %w", name, cap(m.starts), ctx.Err())
		}
	}
	return func() { <-m.starts }, nil
}

// Info is a container's record joined with what LXC reports now.
type Info struct {
	store.Container
	State   lxcrt.State
	InitPID int
	// Rootfs is set while the root file system is mounted.
	Rootfs string
	RPCDir string
	// Steps is the trace of the start that returned this Info: when each step ended.
	Steps []Step
}

// ids is the container's id mapping.
func ids(rec store.Container) idmap.Mapping { return idmap.At(rec.IDBase) }

// tree returns the container's trees; its data is on its disk.
func (m *Manager) tree(name string, mp idmap.Mapping, data string) Tree {
	return m.opts.Tree(name, data, mp)
}

func (m *Manager) treeOf(rec store.Container) Tree {
	return m.tree(rec.Name, ids(rec), m.opts.Disks.Dir(rec.Name))
}

// lock serializes a container's lifecycle (create, start, stop, delete), which may wait
// long on LXC; slock serializes short changes to its record and mounts (the host effects
// its guestd asks for, even while the container starts or stops). Never take lock while
// holding slock.
func (m *Manager) lock(ctx context.Context, name string) (func(), error) {
	u, err := m.locks.LockContext(ctx, "lifecycle/"+name)
	if err != nil {
		return u, fmt.Errorf("container %q is busy with another operation: %w", name, err)
	}
	return u, nil
}
func (m *Manager) slock(name string) func() { return m.locks.Lock("state/" + name) }

// update changes a container's record under its state lock.
func (m *Manager) update(name string, fn func(*store.Container)) (store.Container, error) {
	defer m.slock(name)()
	rec, err := m.opts.Records.GetContainer(name)
	if err != nil {
		return rec, err
	}
	fn(&rec)
	return rec, m.opts.Records.PutContainer(rec)
}

// Create defines a container, its id range, its disk and writable layer, resolves its
// images and makes its volumes (keeping the disk and volumes a former container of that
// name left). It does not start it.
func (m *Manager) Create(ctx context.Context, name string, spec Spec) (Info, error) {
	if err := ValidateName(name); err != nil {
		return Info{}, err
	}
	rec, err := m.resolveSpec(name, spec)
	if err != nil {
		return Info{}, err
	}
	sp := newSteps()
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	if _, err := m.opts.Records.GetContainer(name); err == nil {
		return Info{}, fmt.Errorf("container %q: %w", name, errdefs.ErrAlreadyExists)
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return Info{}, err
	}
	kept, err := m.opts.Records.GetKept(name)
	hasKept := err == nil
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return Info{}, err
	}
	mp, err := m.allocateIDs(name, kept, hasKept)
	if err != nil {
		return Info{}, err
	}
	rec.IDBase = mp.HostBase
	if hasKept && kept.DiskBytes > rec.Limits.DiskBytes {
		m.log.Info("the kept disk is larger than asked: it keeps its size", "container", name, "disk", kept.DiskBytes)
		rec.Limits.DiskBytes = kept.DiskBytes
	}
	if !hasKept && m.opts.Disks.Exists(name) {
		return Info{}, fmt.Errorf("container %q: a disk without a record is there (a create that did not finish); restart containerd-lite to reconcile: %w", name, errdefs.ErrFailedPrecondition)
	}
	// A new disk stays unmounted: its directories and volumes are made when it is next
	// mounted (makeData: the start, or withDisk), which saves a mount and an unmount here.
	// A kept disk is mounted now, to grow it to its new size and tell which volumes it kept.
	if hasKept {
		_, err = m.opts.Disks.Open(name, rec.Limits.DiskBytes, mp)
	} else {
		err = m.opts.Disks.Make(name, rec.Limits.DiskBytes)
	}
	if err != nil {
		return Info{}, fmt.Errorf("container %q: disk: %w", name, err)
	}
	sp.done("disk")
	t := m.tree(name, mp, m.opts.Disks.Dir(name))
	undo := func() {
		_ = m.opts.Runtime.Undefine(name)
		if err := t.Remove(); err != nil {
			m.log.Error("undo create", "container", name, "error", err)
		}
		if hasKept {
			_ = m.opts.Disks.Close(name)
		} else {
			_ = m.opts.Disks.Purge(name)
		}
	}
	if _, err := os.Lstat(t.Rootfs()); err == nil {
		_ = m.opts.Disks.Close(name)
		return Info{}, fmt.Errorf("container %q: its directory exists without a record; restart containerd-lite to reconcile: %w", name, errdefs.ErrFailedPrecondition)
	}
	if err := t.Create(); err != nil {
		undo()
		return Info{}, err
	}
	if hasKept {
		existing, err := makeData(t, rec)
		if err != nil {
			undo()
			return Info{}, err
		}
		for _, v := range existing {
			m.log.Info("volume kept from before", "container", name, "volume", v)
		}
	}
	sp.done("dirs")
	if err := m.define(rec, t); err != nil {
		undo()
		return Info{}, err
	}
	if err := m.opts.Records.PutContainer(rec); err != nil {
		undo()
		return Info{}, err
	}
	sp.done("define")
	if hasKept {
		if err := m.opts.Records.DeleteKept(name); err != nil {
			m.log.Error("forget kept volumes", "container", name, "error", err)
		}
	}
	// The disk is mounted while the container runs: a container not running has nothing
	// mounted (kept mounted for the start that follows, it saved ~3 ms, and a start
	// refused before it mounts anything, below the disk reserve, left it mounted).
	if hasKept {
		if err := m.opts.Disks.Close(name); err != nil {
			m.log.Warn("unmount the disk of a new container", "container", name, "error", err)
		}
		sp.done("close")
	}
	m.log.Info("container created", append([]any{"container", name, "ids", mp.String(), "disk", rec.Limits.DiskBytes}, sp.log()...)...)
	return m.info(rec)
}

func (m *Manager) define(rec store.Container, t Tree) error {
	return m.opts.Runtime.Define(m.lxcConfig(rec, t))
}

// lxcConfig is the LXC configuration the record says.
func (m *Manager) lxcConfig(rec store.Container, t Tree) lxcrt.Config {
	return lxcrt.Config{
		Name: rec.Name, Rootfs: t.Rootfs(), MediaDir: t.MediaDir(), RPCDir: t.RPCDir(),
		LogFile: t.LXCLog(), ConsoleLog: t.ConsoleLog(), IDMap: ids(rec), Init: InitCommand,
		Cgroup: limits.ConfigLines(rec.Limits, m.opts.CgroupV2),
	}
}

// allocateIDs gives a new container the range its kept volumes own, or the lowest free one.
func (m *Manager) allocateIDs(name string, kept store.Kept, hasKept bool) (idmap.Mapping, error) {
	if hasKept {
		return idmap.At(kept.IDBase), nil
	}
	recs, err := m.opts.Records.ListContainers()
	if err != nil {
		return idmap.Mapping{}, err
	}
	keptAll, err := m.opts.Records.ListKept()
	if err != nil {
		return idmap.Mapping{}, err
	}
	var used []idmap.Mapping
	for _, r := range recs {
		used = append(used, ids(r))
	}
	for _, k := range keptAll {
		used = append(used, idmap.At(k.IDBase))
	}
	mp, err := m.opts.Pool.Allocate(used)
	if err != nil {
		return mp, fmt.Errorf("container %q: %w", name, err)
	}
	return mp, nil
}

// Start starts a container and returns once guestd answers inside it. Starting a running
// container changes nothing.
func (m *Manager) Start(ctx context.Context, name string) (Info, error) {
	return m.StartWith(ctx, name, nil)
}

// StartWith is Start for a package whose hooks (install, migrate) run at this start, as
// its first jobs. A running container is refused: its hooks could not run.
func (m *Manager) StartWith(ctx context.Context, name string, run []manifest.HookRun) (Info, error) {
	return m.start(ctx, name, run, false)
}

// StartIdle starts a stopped container's guestd without the package's daemons (nor its
// interfaces exposed), for jobs the host runs through guestd (an action offered while the
// package is stopped); Stop stops it again. A running container is refused.
func (m *Manager) StartIdle(ctx context.Context, name string) (Info, error) {
	return m.start(ctx, name, nil, true)
}

func (m *Manager) start(ctx context.Context, name string, run []manifest.HookRun, idle bool) (Info, error) {
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	rec, err := m.opts.Records.GetContainer(name)
	if err != nil {
		return Info{}, err
	}
	st, _, err := m.opts.Runtime.State(name)
	if err != nil {
		return Info{}, err
	}
	t := m.treeOf(rec)
	if st == lxcrt.Running && len(run) > 0 {
		return Info{}, fmt.Errorf("container %q is running: stop it for its hooks to run at a start: %w", name, errdefs.ErrFailedPrecondition)
	}
	if st == lxcrt.Running && idle {
		return Info{}, fmt.Errorf("container %q is running, not stopped: %w", name, errdefs.ErrFailedPrecondition)
	}
	if _, busy := m.idle.Load(name); busy && st == lxcrt.Running {
		return Info{}, fmt.Errorf("container %q runs without its daemons for an action of its package: retry when the action is done: %w", name, errdefs.ErrFailedPrecondition)
	}
	if st == lxcrt.Running {
		if err := m.opts.Hosts.Serve(name, t.HostSocket(), ids(rec).RootUID()); err != nil {
			return Info{}, err
		}
		return m.info(rec)
	}
	if st != lxcrt.Stopped {
		return Info{}, fmt.Errorf("container %q is %s: wait for it to settle, then retry: %w", name, st, errdefs.ErrFailedPrecondition)
	}
	release, err := m.startSlot(ctx, name)
	if err != nil {
		return Info{}, err
	}
	defer release()
	sp := newSteps()
	if err := m.checkReserve(name); err != nil {
		return Info{}, err
	}
	if _, err := m.opts.Disks.Open(name, rec.Limits.DiskBytes, ids(rec)); err != nil {
		return Info{}, fmt.Errorf("container %q: disk: %w", name, err)
	}
	fail := func(err error) (Info, error) {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if serr := m.opts.Runtime.Stop(sctx, name, 0); serr != nil {
			m.log.Warn("kill after failed start", "container", name, "error", serr)
		}
		m.teardown(rec)
		return Info{}, err
	}
	if _, err := makeData(t, rec); err != nil {
		return fail(err)
	}
	sp.done("disk")
	// The root and the images are mounted before init runs: guestd asks for overlays of
	// the images at once.
	if err := m.mountAll(rec, t, sp); err != nil {
		return fail(err)
	}
	if err := t.ClearSockets(); err != nil {
		return fail(err)
	}
	bundle, err := m.bundle(ctx, rec, run, idle)
	if err != nil {
		return fail(err)
	}
	if err := t.WriteBundle(bundle); err != nil {
		return fail(err)
	}
	// lxc.log explains a failed start; keep only this start's lines.
	_ = os.Truncate(t.LXCLog(), 0)
	if err := m.opts.Hosts.Serve(name, t.HostSocket(), ids(rec).RootUID()); err != nil {
		return fail(err)
	}
	sp.done("bundle_and_host_sock")
	pid, err := m.opts.Runtime.Start(ctx, name, 10*time.Second)
	if err != nil {
		return fail(fmt.Errorf("%w%s", err, tail("lxc.log", t.LXCLog())))
	}
	sp.done("lxc_start")
	addr, err := m.attach(ctx, rec, pid)
	if err != nil {
		return fail(err)
	}
	if !idle {
		m.expose(ctx, rec)
	}
	sp.done("network")
	wctx, cancel := context.WithTimeout(ctx, m.opts.GuestTimeout)
	defer cancel()
	if _, err := guestclient.Wait(wctx, name, t.DialGuest); err != nil {
		return fail(fmt.Errorf("container %q started but guestd did not answer: %w%s", name, err, tail("console", t.ConsoleLog())))
	}
	sp.done("guestd")
	// guestd may have made overlays meanwhile: change only the start time and address.
	rec, err = m.update(name, func(r *store.Container) { r.StartedAt, r.Address = time.Now().UTC(), addr })
	if err != nil {
		return Info{}, err
	}
	if idle {
		m.idle.Store(name, true)
	}
	m.log.Info("container started", append([]any{"container", name, "idle", idle}, sp.log()...)...)
	i, err := m.info(rec)
	i.Steps = sp.marks
	return i, err
}

// checkReserve refuses a start while the state file system has less free space than the
// reserve: the packages' disks are sparse and take the host's space as they fill.
func (m *Manager) checkReserve(name string) error {
	if m.opts.DiskReserve < 0 {
		return nil
	}
	free, err := m.opts.FreeSpace(m.opts.StateDir)
	if err != nil {
		return fmt.Errorf("free space of %s: %w", m.opts.StateDir, err)
	}
	if free < m.opts.DiskReserve {
		return fmt.Errorf("container %q not started: the host's file system holding %s has %d MiB free, below the reserve of %d MiB that keeps the host working; free some space (or lower --disk-reserve): %w",
			name, m.opts.StateDir, free>>20, m.opts.DiskReserve>>20, errdefs.ErrResourceExhausted)
	}
	return nil
}

func freeSpace(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// mountAll mounts the root and the images of a container (those already mounted stay),
// through a user namespace with the container's mapping.
func (m *Manager) mountAll(rec store.Container, t Tree, sp *steps) error {
	userns, err := m.opts.Userns(ids(rec))
	if err != nil {
		return fmt.Errorf("container %q: %w", rec.Name, err)
	}
	if userns >= 0 {
		defer unix.Close(userns)
	}
	sp.done("userns")
	if err := t.MountRoot(m.opts.BaseRootfs, userns); err != nil {
		return err
	}
	sp.done("mount_root")
	for _, img := range sortedKeys(rec.Images) {
		if err := t.MountImage(img, m.opts.Images.Rootfs(rec.Images[img]), userns); err != nil {
			return fmt.Errorf("container %q: %w", rec.Name, err)
		}
	}
	if rec.Assets != "" {
		if err := t.MountAssets(rec.Assets); err != nil {
			return fmt.Errorf("container %q: assets: %w", rec.Name, err)
		}
	}
	sp.done("mount_images")
	return nil
}

// teardown undoes what a running container needed on the host: its host.sock, its
// mounts, stale sockets, its veth. The container must be stopped.
func (m *Manager) teardown(rec store.Container) {
	name := rec.Name
	t := m.treeOf(rec)
	m.idle.Delete(name)
	m.opts.Hosts.Stop(name)
	if err := t.Unmount(); err != nil {
		m.log.Error("unmount", "container", name, "error", err)
	}
	if err := t.ClearSockets(); err != nil {
		m.log.Warn("remove stale sockets", "container", name, "error", err)
	}
	if err := m.opts.Disks.Close(name); err != nil {
		m.log.Error("unmount the disk", "container", name, "error", err)
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
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	rec, err := m.opts.Records.GetContainer(name)
	if err != nil {
		return Info{}, err
	}
	if timeout <= 0 {
		timeout = stopTimeout(rec)
	}
	if err := m.stopLocked(ctx, rec, timeout); err != nil {
		return Info{}, err
	}
	return m.info(rec)
}

func (m *Manager) stopLocked(ctx context.Context, rec store.Container, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	start := time.Now()
	if err := m.opts.Runtime.Stop(ctx, rec.Name, timeout); err != nil {
		return err
	}
	m.teardown(rec)
	m.log.Info("container stopped", "container", rec.Name, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Delete removes a container and everything made for it on the host. A running
// container is refused unless force is set, in which case it is stopped first. Its disk
// and volumes are kept (with its id range, for a container of the same name) unless
// purgeVolumes; purging the kept volumes of a container deleted before also works.
func (m *Manager) Delete(ctx context.Context, name string, force, purgeVolumes bool) error {
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := m.opts.Records.GetContainer(name)
	if errors.Is(err, errdefs.ErrNotFound) && purgeVolumes {
		return m.purgeKept(name, err)
	}
	if err != nil {
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
		if err := m.stopLocked(ctx, rec, stopTimeout(rec)); err != nil {
			return err
		}
	}
	if err := m.remove(rec); err != nil {
		return err
	}
	if m.opts.Network != nil {
		if err := m.opts.Network.Unexpose(ctx, name); err != nil {
			m.log.Warn("remove the container's bindings", "container", name, "error", err)
		}
	}
	keep := !purgeVolumes && len(rec.Volumes) > 0
	if keep {
		if err := m.opts.Records.PutKept(store.Kept{Name: name, IDBase: rec.IDBase, Volumes: rec.Volumes, DiskBytes: rec.Limits.DiskBytes, DeletedAt: time.Now().UTC()}); err != nil {
			return err
		}
		if err := m.opts.Disks.Close(name); err != nil {
			m.log.Warn("unmount the kept disk", "container", name, "error", err)
		}
	} else if err := m.opts.Disks.Purge(name); err != nil {
		return fmt.Errorf("remove the disk of %q: %w", name, err)
	}
	if err := m.opts.Records.DeleteContainer(name); err != nil {
		return err
	}
	m.log.Info("container deleted", "container", name, "volumes_kept", keep)
	return nil
}

func (m *Manager) purgeKept(name string, notFound error) error {
	if _, err := m.opts.Records.GetKept(name); err != nil {
		return notFound
	}
	if err := m.opts.Disks.Purge(name); err != nil {
		return fmt.Errorf("remove the kept disk of %q: %w", name, err)
	}
	if err := m.opts.Records.DeleteKept(name); err != nil {
		return err
	}
	m.log.Info("kept volumes purged", "container", name)
	return nil
}

// remove deletes a stopped container's LXC definition and directory, after making sure
// nothing is mounted below it.
func (m *Manager) remove(rec store.Container) error {
	m.teardown(rec)
	// The layers are on the disk: mount it to remove them (a purge would drop it whole,
	// but a kept disk keeps only its volumes).
	if m.opts.Disks.Exists(rec.Name) {
		if _, err := m.opts.Disks.Open(rec.Name, 0, ids(rec)); err != nil {
			return fmt.Errorf("container %q: disk: %w", rec.Name, err)
		}
	}
	if err := m.treeOf(rec).Remove(); err != nil {
		return err
	}
	return m.opts.Runtime.Undefine(rec.Name)
}

// Get reports one container.
func (m *Manager) Get(ctx context.Context, name string) (Info, error) {
	rec, err := m.opts.Records.GetContainer(name)
	if err != nil {
		return Info{}, err
	}
	return m.info(rec)
}

// List reports every container.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	recs, err := m.opts.Records.ListContainers()
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
	t := m.treeOf(rec)
	i := Info{Container: rec, State: st, InitPID: pid, RPCDir: t.RPCDir()}
	if st != lxcrt.Running {
		i.Address = ""
		i.Overlays = nil
	} else {
		i.Rootfs = t.Rootfs()
	}
	return i, nil
}

// GuestInfo asks guestd inside a running container who it is.
func (m *Manager) GuestInfo(ctx context.Context, name string) (*guestv1.GuestInfo, error) {
	d, err := m.GuestDialer(name)
	if err != nil {
		return nil, err
	}
	return guestclient.Info(ctx, name, d)
}

// GuestDialer returns the dialer of a running container's guestd.
func (m *Manager) GuestDialer(name string) (guestclient.Dialer, error) {
	rec, err := m.runningRecord(name)
	if err != nil {
		return nil, err
	}
	return m.treeOf(rec).DialGuest, nil
}

// Close stops serving every host.sock. Containers keep running.
func (m *Manager) Close() error {
	m.opts.Hosts.Close()
	return nil
}

// tail returns the last lines of a log file, for error messages.
func tail(label, path string) string {
	data, err := os.ReadFile(path)
	data = lxcrt.DropExpected(data)
	if err != nil || len(data) == 0 {
		return ""
	}
	if len(data) > 2048 {
		data = data[len(data)-2048:]
	}
	return fmt.Sprintf("\n--- %s (%s) ---\n%s", label, path, data)
}

// attach asks netd for the running container's veth; without netd it has loopback only.
func (m *Manager) attach(ctx context.Context, rec store.Container, pid int) (string, error) {
	name := rec.Name
	if m.opts.Network == nil {
		return "", nil
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addr, ok, err := m.opts.Network.Attach(actx, name, pid, interfaces(rec))
	if err != nil {
		return "", fmt.Errorf("attach container %q to netd's bridge: %w", name, err)
	}
	if !ok {
		m.log.Info("netd is not running: the container has loopback only", "container", name)
	}
	return addr, nil
}
