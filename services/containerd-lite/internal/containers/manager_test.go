package containers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	"hearth.dev/services/containerd-lite/internal/idmap"
	"hearth.dev/services/containerd-lite/internal/limits"
	"hearth.dev/services/containerd-lite/internal/lxcrt"
	"hearth.dev/services/containerd-lite/internal/store"
)

// These tests drive the lifecycle through fakes of LXC, the records, the trees, the disks
// and the host sockets: the order of steps, what a failure undoes, and what reconcile
// repairs. The real parts are tested in their packages and in integration/.

// calls records what the fakes were asked, in order.
type calls struct {
	mu  sync.Mutex
	log []string
}

func (c *calls) add(format string, a ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = append(c.log, fmt.Sprintf(format, a...))
}

func (c *calls) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.log
	c.log = nil
	return out
}

type fakeRuntime struct {
	c        *calls
	mu       sync.Mutex
	defined  map[string]bool
	stale    map[string]bool // definitions a power cut left old or empty
	state    map[string]lxcrt.State
	startErr error
}

func (r *fakeRuntime) Define(cfg lxcrt.Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.defined[cfg.Name] = true
	delete(r.stale, cfg.Name)
	if _, ok := r.state[cfg.Name]; !ok {
		r.state[cfg.Name] = lxcrt.Stopped
	}
	r.c.add("define %s ids %s", cfg.Name, cfg.IDMap)
	return nil
}
func (r *fakeRuntime) Current(cfg lxcrt.Config) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.defined[cfg.Name] && !r.stale[cfg.Name], nil
}
func (r *fakeRuntime) Undefine(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.defined, name)
	delete(r.state, name)
	r.c.add("undefine %s", name)
	return nil
}
func (r *fakeRuntime) State(name string) (lxcrt.State, int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.state[name]
	if !ok {
		return lxcrt.Missing, 0, nil
	}
	if st == lxcrt.Running {
		return st, 4242, nil
	}
	return st, 0, nil
}
func (r *fakeRuntime) Start(ctx context.Context, name string, _ time.Duration) (int, error) {
	r.c.add("lxc start %s", name)
	if r.startErr != nil {
		return 0, r.startErr
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state[name] = lxcrt.Running
	return 4242, nil
}
func (r *fakeRuntime) Stop(ctx context.Context, name string, _ time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state[name] == lxcrt.Running {
		r.c.add("lxc stop %s", name)
	}
	if _, ok := r.state[name]; ok {
		r.state[name] = lxcrt.Stopped
	}
	return nil
}
func (r *fakeRuntime) Defined() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for n := range r.defined {
		out = append(out, n)
	}
	return out
}
func (r *fakeRuntime) CgroupItem(name, key string) (string, error) { return "", errors.New("none") }
func (r *fakeRuntime) Freeze(name string) error                    { r.c.add("freeze %s", name); return nil }
func (r *fakeRuntime) Unfreeze(name string) error                  { r.c.add("thaw %s", name); return nil }
func (r *fakeRuntime) SetCgroupItem(name, key, value string) error {
	r.c.add("cgroup %s %s=%s", name, key, value)
	return nil
}

type fakeRecords struct {
	mu   sync.Mutex
	recs map[string]store.Container
	kept map[string]store.Kept
}

func (s *fakeRecords) GetContainer(name string) (store.Container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recs[name]
	if !ok {
		return r, fmt.Errorf("container %q: %w", name, errdefs.ErrNotFound)
	}
	return r, nil
}
func (s *fakeRecords) PutContainer(r store.Container) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs[r.Name] = r
	return nil
}
func (s *fakeRecords) DeleteContainer(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, name)
	return nil
}
func (s *fakeRecords) ListContainers() ([]store.Container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Container
	for _, n := range sortedKeys(s.recs) {
		out = append(out, s.recs[n])
	}
	return out, nil
}
func (s *fakeRecords) GetKept(name string) (store.Kept, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.kept[name]
	if !ok {
		return k, errdefs.ErrNotFound
	}
	return k, nil
}
func (s *fakeRecords) PutKept(k store.Kept) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kept[k.Name] = k
	return nil
}
func (s *fakeRecords) DeleteKept(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.kept, name)
	return nil
}
func (s *fakeRecords) ListKept() ([]store.Kept, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Kept
	for _, n := range sortedKeys(s.kept) {
		out = append(out, s.kept[n])
	}
	return out, nil
}

// fakeTree logs the operations; DialGuest reaches a real gRPC GuestService.
type fakeTree struct {
	c     *calls
	name  string
	dir   string
	guest string // socket of the fake guestd
	ids   idmap.Mapping
	env   *env
}

func (t fakeTree) Create() error   { t.c.add("tree create %s", t.name); return nil }
func (t fakeTree) MakeData() error { t.c.add("tree data %s", t.name); return nil }
func (t fakeTree) MountRoot(base string, userns int) error {
	t.c.add("mount root %s", t.name)
	return nil
}
func (t fakeTree) MountImage(name, src string, userns int) error {
	t.c.add("mount image %s/%s", t.name, name)
	return nil
}
func (t fakeTree) ImageMounted(name string) bool { return false }
func (t fakeTree) MountAssets(src string) error  { t.c.add("mount assets %s", t.name); return nil }
func (t fakeTree) MountOverlay(name, image string) error {
	t.c.add("mount overlay %s/%s", t.name, name)
	return nil
}
func (t fakeTree) OverlayMounted(name string) (bool, error) { return false, nil }
func (t fakeTree) MountedOverlays() ([]string, error)       { return t.env.strays, nil }
func (t fakeTree) BindVolume(sub, volume, path string, ro bool) error {
	t.c.add("bind %s/%s %s", t.name, sub, volume)
	return nil
}
func (t fakeTree) DestroyOverlay(name string) error {
	t.c.add("destroy overlay %s/%s", t.name, name)
	return nil
}
func (t fakeTree) Unmount() error             { t.c.add("unmount %s", t.name); return nil }
func (t fakeTree) Mounted() ([]string, error) { return nil, nil }
func (t fakeTree) Remove() error              { t.c.add("tree remove %s", t.name); return nil }
func (t fakeTree) WriteBundle(data []byte) error {
	t.c.add("bundle %s %v", t.name, data != nil)
	return nil
}
func (t fakeTree) MakeVolume(name string) (bool, error) {
	t.c.add("volume %s/%s", t.name, name)
	return false, nil
}
func (t fakeTree) ClearSockets() error { return nil }
func (t fakeTree) DialGuest(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", t.guest)
}
func (t fakeTree) Rootfs() string             { return filepath.Join(t.dir, "rootfs") }
func (t fakeTree) MediaDir() string           { return filepath.Join(t.dir, "media") }
func (t fakeTree) RPCDir() string             { return filepath.Join(t.dir, "rpc") }
func (t fakeTree) HostSocket() string         { return filepath.Join(t.dir, "host.sock") }
func (t fakeTree) LXCLog() string             { return filepath.Join(t.dir, "lxc.log") }
func (t fakeTree) ConsoleLog() string         { return filepath.Join(t.dir, "console.log") }
func (t fakeTree) VolumePath(v string) string { return filepath.Join(t.dir, "volumes", v) }

type fakeDisks struct {
	c          *calls
	denyOnline bool
	mu         sync.Mutex
	disks      map[string]int64
	dir        string
}

func (d *fakeDisks) Make(name string, size int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.disks[name]; !ok {
		d.c.add("disk create %s %d", name, size)
		d.disks[name] = size
	}
	return nil
}
func (d *fakeDisks) Open(name string, size int64, _ idmap.Mapping) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if have, ok := d.disks[name]; !ok {
		d.c.add("disk create %s %d", name, size)
		d.disks[name] = size
	} else if size > have {
		d.c.add("disk grow %s %d", name, size)
		d.disks[name] = size
	}
	d.c.add("disk open %s", name)
	return d.Dir(name), nil
}
func (d *fakeDisks) Exists(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.disks[name]
	return ok
}
func (d *fakeDisks) Usage(name string) (int64, int64, error) { return 0, d.disks[name], nil }
func (d *fakeDisks) Grow(name string, size int64) error {
	if d.denyOnline {
		return fmt.Errorf("no CAP_SYS_RESOURCE: %w", errdefs.ErrPermissionDenied)
	}
	d.c.add("disk grow %s %d", name, size)
	d.disks[name] = size
	return nil
}
func (d *fakeDisks) Close(name string) error { d.c.add("disk close %s", name); return nil }
func (d *fakeDisks) Purge(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.disks[name]; ok {
		d.c.add("disk purge %s", name)
	}
	delete(d.disks, name)
	return nil
}
func (d *fakeDisks) Dir(name string) string { return filepath.Join(d.dir, name) }
func (d *fakeDisks) Names() ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return sortedKeys(d.disks), nil
}

type fakeHosts struct{ c *calls }

func (h fakeHosts) Serve(container, path string, rootUID int) error {
	h.c.add("serve %s as %d", container, rootUID)
	return nil
}
func (h fakeHosts) Stop(container string) { h.c.add("unserve %s", container) }
func (h fakeHosts) Close()                {}

type fakeImages struct{}

func (fakeImages) Resolve(ref string) (string, error) { return "sha256:" + ref, nil }
func (fakeImages) Rootfs(d string) string             { return "/images/" + d }
func (fakeImages) Defaults(string) (manifest.ImageDefaults, error) {
	return manifest.ImageDefaults{}, nil
}

type guestServer struct {
	guestv1.UnimplementedGuestServiceServer
}

func (guestServer) GetInfo(context.Context, *guestv1.GetInfoRequest) (*guestv1.GetInfoResponse, error) {
	return &guestv1.GetInfoResponse{Info: &guestv1.GuestInfo{Hostname: "fake"}}, nil
}

type env struct {
	m      *Manager
	c      *calls
	rt     *fakeRuntime
	recs   *fakeRecords
	disks  *fakeDisks
	free   int64
	strays []string
	guest  string
	opts   Options
}

func newEnv(t *testing.T, slots int) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{c: &calls{}, free: 100 << 30}
	e.guest = filepath.Join(dir, "guestd.sock")
	l, err := net.Listen("unix", e.guest)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	guestv1.RegisterGuestServiceServer(srv, guestServer{})
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	e.rt = &fakeRuntime{c: e.c, defined: map[string]bool{}, state: map[string]lxcrt.State{}}
	e.recs = &fakeRecords{recs: map[string]store.Container{}, kept: map[string]store.Kept{}}
	e.disks = &fakeDisks{c: e.c, disks: map[string]int64{}, dir: filepath.Join(dir, "disks")}
	e.opts = Options{
		StateDir: dir, BaseRootfs: "/base", Runtime: e.rt, Records: e.recs,
		Pool:   idmap.PoolOf([][2]uint64{{100000, uint64(slots) * idmap.Size}}),
		Userns: func(idmap.Mapping) (int, error) { return -1, nil },
		Tree: func(name, data string, mp idmap.Mapping) Tree {
			return fakeTree{c: e.c, name: name, dir: filepath.Join(dir, "containers", name), guest: e.guest, ids: mp, env: e}
		},
		Disks: e.disks, Hosts: fakeHosts{c: e.c}, Images: fakeImages{},
		Policy:       limits.Policy{MaxMemoryBytes: 1 << 30, MaxCPUs: 1, MaxPids: 100, MaxDiskBytes: 1 << 30, DefaultDiskBytes: 64 << 20},
		GuestTimeout: 2 * time.Second,
		MaxOverlays:  3,
		FreeSpace:    func(string) (int64, error) { return e.free, nil },
	}
	e.m = New(e.opts)
	return e
}

func wantCalls(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestLifecycleOrder(t *testing.T) {
	e := newEnv(t, 4)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "web", Spec{Images: map[string]string{"app": "a"}, Volumes: []string{"data"}}); err != nil {
		t.Fatal(err)
	}
	// A new disk is made, not mounted: its directories and volumes come at its first mount.
	wantCalls(t, e.c.take(),
		"disk create web 67108864", "tree create web", "define web ids 100000-165535")
	i, err := e.m.Start(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if i.State != lxcrt.Running || i.StartedAt.IsZero() {
		t.Fatalf("after start: %+v", i)
	}
	// The disk and every mount come before LXC starts; host.sock is served before init runs.
	wantCalls(t, e.c.take(),
		"disk open web", "tree data web", "volume web/data", "mount root web", "mount image web/app", "bundle web false",
		"serve web as 100000", "lxc start web")
	// Starting a running container only serves its host.sock again.
	if _, err := e.m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, e.c.take(), "serve web as 100000")
	if _, err := e.m.Stop(ctx, "web", time.Second); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, e.c.take(), "lxc stop web", "unserve web", "unmount web", "disk close web")
	// Deleting keeps the disk (volumes) and the id range; a container of that name takes both.
	if err := e.m.Delete(ctx, "web", false, false); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, e.c.take(), "unserve web", "unmount web", "disk close web", "disk open web", "tree remove web", "undefine web", "disk close web")
	if k, err := e.recs.GetKept("web"); err != nil || k.IDBase != 100000 {
		t.Fatalf("kept = %+v, %v", k, err)
	}
	if _, err := e.m.Create(ctx, "other", Spec{}); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.recs.GetContainer("other"); r.IDBase == 100000 {
		t.Fatal("a kept range was given to another container")
	}
	if _, err := e.m.Create(ctx, "web", Spec{Volumes: []string{"data"}, Limits: store.Limits{DiskBytes: 128 << 20}}); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.recs.GetContainer("web"); r.IDBase != 100000 || r.Limits.DiskBytes != 128<<20 {
		t.Fatalf("recreated web: %+v", r)
	}
	if !slices.Contains(e.c.take(), "disk grow web 134217728") {
		t.Error("the kept disk was not grown to the new limit")
	}
	if _, err := e.recs.GetKept("web"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Error("the kept record stays after the container took it")
	}
	// Purging the volumes drops the disk and frees the range.
	if err := e.m.Delete(ctx, "web", false, true); err != nil {
		t.Fatal(err)
	}
	if e.disks.Exists("web") {
		t.Error("purge left the disk")
	}
}

func TestStartFailureUndoes(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "web", Spec{}); err != nil {
		t.Fatal(err)
	}
	e.c.take()
	e.rt.startErr = errors.New("lxc said no")
	_, err := e.m.Start(ctx, "web")
	if err == nil || !strings.Contains(err.Error(), "lxc said no") {
		t.Fatalf("Start = %v", err)
	}
	got := e.c.take()
	// Everything the start made is undone: host.sock, mounts, disk.
	for _, want := range []string{"unserve web", "unmount web", "disk close web"} {
		if !slices.Contains(got, want) {
			t.Errorf("after a failed start, %q not done: %v", want, got)
		}
	}
}

func TestStartRefusedBelowReserve(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "web", Spec{}); err != nil {
		t.Fatal(err)
	}
	e.c.take()
	e.free = 10 << 20
	_, err := e.m.Start(ctx, "web")
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "below the reserve") {
		t.Fatalf("Start = %v, want a refusal naming the reserve", err)
	}
	if got := e.c.take(); len(got) != 0 {
		t.Fatalf("a refused start did %v", got)
	}
}

func TestIDRangesAreDisjointAndRunOut(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	var got []idmap.Mapping
	for _, n := range []string{"a", "b", "c"} {
		if _, err := e.m.Create(ctx, n, Spec{}); err != nil {
			t.Fatal(err)
		}
		r, _ := e.recs.GetContainer(n)
		for _, g := range got {
			if g.Overlaps(ids(r)) {
				t.Fatalf("%s got %v, which overlaps %v", n, ids(r), g)
			}
		}
		got = append(got, ids(r))
	}
	_, err := e.m.Create(ctx, "d", Spec{})
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "/etc/subuid") {
		t.Fatalf("fourth container: %v, want ResourceExhausted naming /etc/subuid", err)
	}
	if e.disks.Exists("d") {
		t.Error("a refused create made a disk")
	}
}

func TestOverlayCapAndMissingDestroy(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "web", Spec{Images: map[string]string{"app": "a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	e.c.take()
	for i := 0; i < 3; i++ {
		if _, err := e.m.CreateOverlay(ctx, "web", "app", fmt.Sprintf("o%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.m.CreateOverlay(ctx, "web", "app", "o3"); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("fourth overlay: %v, want ResourceExhausted", err)
	}
	// An overlay asked for again is no new one.
	if _, err := e.m.CreateOverlay(ctx, "web", "app", "o0"); err != nil {
		t.Fatalf("an overlay asked again: %v", err)
	}
	e.c.take()
	// Destroying what does not exist touches nothing.
	if err := e.m.DestroyOverlay(ctx, "web", "nothing"); err != nil {
		t.Fatal(err)
	}
	if got := e.c.take(); len(got) != 0 {
		t.Fatalf("destroying a missing overlay did %v", got)
	}
	for _, bad := range []string{"../rpc", "a/b", "", ".x"} {
		if err := e.m.DestroyOverlay(ctx, "web", bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("DestroyOverlay(%q) = %v, want InvalidArgument", bad, err)
		}
	}
	if err := e.m.DestroyOverlay(ctx, "web", "o1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.CreateOverlay(ctx, "web", "app", "o3"); err != nil {
		t.Fatalf("an overlay after one was destroyed: %v", err)
	}
}

func TestReconcile(t *testing.T) {
	e := newEnv(t, 4)
	ctx := context.Background()
	for _, n := range []string{"run", "stop"} {
		if _, err := e.m.Create(ctx, n, Spec{Images: map[string]string{"app": "a"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.m.Start(ctx, "run"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.CreateOverlay(ctx, "run", "app", "db"); err != nil {
		t.Fatal(err)
	}
	// Left by crashes: an LXC definition with no record, a disk with no record, a running
	// container with no record, a kept record of a container that exists.
	e.rt.defined["ghost"], e.rt.state["ghost"] = true, lxcrt.Stopped
	e.disks.disks["lost"] = 1 << 20
	e.rt.defined["rogue"], e.rt.state["rogue"] = true, lxcrt.Running
	e.recs.kept["stop"] = store.Kept{Name: "stop", IDBase: 300000}
	e.strays = []string{"db", "stray"}
	// And the definition of a recorded container that a power cut left empty.
	e.rt.stale = map[string]bool{"stop": true}
	e.c.take()

	m2 := New(e.opts) // a new containerd-lite over the same world
	if err := m2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	got := e.c.take()
	for _, want := range []string{
		"serve run as 100000", "mount root run", "mount image run/app", "mount overlay run/db", "destroy overlay run/stray",
		"unserve stop", "unmount stop",
		"tree remove ghost", "undefine ghost",
		"disk purge lost",
		"define stop ids 165536-231071",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("reconcile did not %q; did:\n  %s", want, strings.Join(got, "\n  "))
		}
	}
	for _, never := range []string{"destroy overlay run/db", "undefine rogue", "undefine run", "undefine stop", "lxc stop run", "define run ids 100000-165535"} {
		if slices.Contains(got, never) {
			t.Errorf("reconcile did %q", never)
		}
	}
	if _, err := e.recs.GetKept("stop"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Error("the kept record of an existing container stays")
	}
	// Reconciling again changes nothing more.
	if err := m2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for _, l := range e.c.take() {
		if strings.HasPrefix(l, "undefine") || strings.HasPrefix(l, "define") || strings.HasPrefix(l, "disk purge") || strings.HasPrefix(l, "tree remove") {
			t.Errorf("second reconcile did %q", l)
		}
	}
}

func TestLifecycleWaitsGiveUpWithContext(t *testing.T) {
	e := newEnv(t, 2)
	if _, err := e.m.Create(context.Background(), "web", Spec{}); err != nil {
		t.Fatal(err)
	}
	unlock, err := e.m.lock(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = e.m.Start(ctx, "web")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("Start while another operation holds the container: %v", err)
	}
}

func TestSetLimits(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, "web", Spec{Limits: store.Limits{Pids: 50}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	e.c.take()
	// Running: the cgroup takes the new limits at once; the disk grows online.
	_, got, notes, err := e.m.SetLimits(ctx, "web", store.Limits{Pids: 80, DiskBytes: 128 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if got.Pids != 80 || got.DiskBytes != 128<<20 || got.MemoryBytes != 1<<30 || len(notes) != 0 {
		t.Fatalf("limits %+v, notes %v", got, notes)
	}
	calls := e.c.take()
	for _, want := range []string{"cgroup web pids.max=80", "disk grow web 134217728"} {
		if !slices.Contains(calls, want) {
			t.Errorf("SetLimits did not %q: %v", want, calls)
		}
	}
	if r, _ := e.recs.GetContainer("web"); r.Limits != got {
		t.Errorf("record %+v, want %+v", r.Limits, got)
	}
	// Where the kernel refuses an online growth, the disk grows at the next start.
	e.disks.denyOnline = true
	_, got, notes, err = e.m.SetLimits(ctx, "web", store.Limits{DiskBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "at the next start") {
		t.Fatalf("notes %v, want one saying the disk grows at the next start", notes)
	}
	if _, err := e.m.Stop(ctx, "web", time.Second); err != nil {
		t.Fatal(err)
	}
	e.c.take()
	if _, err := e.m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if calls := e.c.take(); !slices.Contains(calls, "disk grow web 268435456") {
		t.Errorf("the start did not grow the disk: %v", calls)
	}
	// Disks do not shrink; the policy caps; bad values are refused with nothing changed.
	for _, tc := range []struct {
		l    store.Limits
		want string
	}{
		{store.Limits{DiskBytes: 64 << 20}, "do not shrink"},
		{store.Limits{Pids: 2}, "too few"},
		{store.Limits{MemoryBytes: -1}, "must be positive"},
	} {
		if _, _, _, err := e.m.SetLimits(ctx, "web", tc.l); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetLimits(%+v) = %v, want InvalidArgument naming %q", tc.l, err, tc.want)
		}
	}
	if r, _ := e.recs.GetContainer("web"); r.Limits.DiskBytes != 256<<20 || r.Limits.Pids != 80 {
		t.Errorf("a refused change changed the record: %+v", r.Limits)
	}
	_, got, notes, err = e.m.SetLimits(ctx, "web", store.Limits{Pids: 1000})
	if err != nil || got.Pids != 100 || len(notes) != 1 {
		t.Errorf("over the cap: %+v %v %v, want pids 100 and a note", got, notes, err)
	}
}
