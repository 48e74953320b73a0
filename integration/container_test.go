package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// lab is a private Hearth: containerd-lite on its own run and state directories.
type lab struct {
	dir, runDir, stateDir string
	cld, netd             *daemonProc
	owner                 testing.TB // the test the lab lives as long as
	// env is extra environment for containerd-lite's next start; args, extra flags.
	env, args []string
	// killed names the containers killed with their LXC monitors (killPowerCut), whose
	// cgroups the lab removes when it ends.
	killed []string
}

// newLab starts containerd-lite on a private run and state directory. When the test
// ends, the lab removes its containers, then stops its daemons (whichever run then).
func newLab(t testing.TB) *lab {
	t.Helper()
	return newLabWith(t, nil)
}

// newLabWith is newLab with prepare called before containerd-lite starts: it may change
// the lab's state directory and flags, and what it registers with t.Cleanup runs after
// the lab's daemons stopped.
func newLabWith(t testing.TB, prepare func(l *lab)) *lab {
	t.Helper()
	dir := tempDir(t)
	l := &lab{dir: dir, runDir: filepath.Join(dir, "run"), stateDir: filepath.Join(dir, "state"), owner: t}
	if prepare != nil {
		prepare(l)
	}
	t.Cleanup(func() {
		if out, err := hearthctl(t, l.runDir, "container", "ls"); err == nil {
			for _, line := range strings.Split(out, "\n")[1:] {
				if f := strings.Fields(line); len(f) > 0 {
					hearthctl(t, l.runDir, "container", "rm", "--force", f[0])
				}
			}
		}
		for _, d := range []*daemonProc{l.cld, l.netd} {
			if d == nil {
				continue
			}
			d.stop(syscall.SIGTERM)
			if t.Failed() {
				t.Logf("%s log:\n%s", d.name, d.log.String())
			}
		}
		for _, name := range l.killed {
			forgetCgroups(name, 3*time.Second)
		}
	})
	l.start(t)
	return l
}

// start starts containerd-lite; the lab stops it.
func (l *lab) start(t testing.TB) {
	t.Helper()
	l.cld = startDaemonEnv(t, nil, l.env, "containerd-lite", filepath.Join(l.runDir, "containerd-lite.sock"),
		append([]string{"--run-dir", l.runDir, "--state-dir", l.stateDir, "--base-rootfs", baseRootfs}, l.args...)...)
}

func (l *lab) lxcPath() string { return filepath.Join(l.stateDir, "lxc") }

// mountsUnder lists the mount points at or below dir.
func mountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// veths lists the host's veths but netd's (named hv…): this lab runs no netd, and other
// labs on the machine (other test processes) make and remove theirs meanwhile.
func veths(t *testing.T) string {
	t.Helper()
	out, err := run(t, "ip", "-o", "link", "show", "type", "veth")
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && !strings.HasPrefix(f[1], "hv") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// TestContainerSkeleton walks every layer: hearthctl → containerd-lite → LXC → guestd
// inside the container → back through the container's socket; the container outlives a
// restart of containerd-lite; removing it leaves nothing behind.
func TestContainerSkeleton(t *testing.T) {
	requireRoot(t)
	vethsBefore := veths(t)
	l := newLab(t)
	const name = "skeleton"

	if out, err := hearthctl(t, l.runDir, "container", "create", name); err != nil || !strings.Contains(out, "stopped") {
		t.Fatalf("create: %v %s", err, out)
	}
	if _, err := hearthctl(t, l.runDir, "container", "create", name); err == nil || !strings.Contains(err.Error(), "AlreadyExists") {
		t.Fatalf("second create: %v, want AlreadyExists", err)
	}
	if _, err := hearthctl(t, l.runDir, "container", "start", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hearthctl(t, l.runDir, "container", "rm", "--force", name) })

	first := l.inspect(t, name)
	c, g := first.GetContainer(), first.GetGuest()
	if c.GetState() != containerv1.ContainerState_CONTAINER_STATE_RUNNING || c.GetInitPid() <= 0 {
		t.Fatalf("after start: %v", first)
	}
	if g == nil || g.GetHostname() != name || g.GetStartedAt() == nil || g.GetVersion() == "" {
		t.Fatalf("guestd did not answer through its socket: guest=%v error=%q", g, first.GetGuestError())
	}
	// The container is unprivileged: its init runs as the first id of its own range,
	// one of root's subordinate ranges, not as root.
	base := first.GetDetails().GetHostIdBase()
	if uid := procUID(t, int(c.GetInitPid())); base < 100000 || uid != base {
		t.Errorf("container init runs as host uid %d, want its range's root %d (>= 100000)", uid, base)
	}
	// Root wrote the id maps itself: no newuidmap and newgidmap through a shell on every
	// start (liblxc logs that it did not look for them).
	if log, err := os.ReadFile(filepath.Join(l.stateDir, "containers", name, "lxc.log")); err != nil {
		t.Error(err)
	} else if !strings.Contains(string(log), "newuidmap binary is missing") {
		t.Errorf("lxc.log of the start, want liblxc to have written the id maps itself:\n%s", log)
	}
	// The host socket answers from inside, and names this container.
	out, err := run(t, "lxc-attach", "-P", l.lxcPath(), "-n", name, "--", "/sbin/guestd", "whoami")
	if err != nil || strings.TrimSpace(out) != name {
		t.Errorf("guestd whoami inside the container: %q %v", out, err)
	}
	// Memory-backed directories are bounded tmpfs; the root writes to the package's disk.
	mountsInside, err := run(t, "lxc-attach", "-P", l.lxcPath(), "-n", name, "--", "cat", "/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tmpfs /dev/shm tmpfs rw,nosuid,nodev,noexec,relatime,size=65536k", "tmpfs /run tmpfs rw,nosuid,nodev,relatime,size=16384k"} {
		if !strings.Contains(mountsInside, want) {
			t.Errorf("inside, no %q in:\n%s", want, mountsInside)
		}
	}

	// Stop containerd-lite gracefully, then kill it: the container keeps running both times.
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		l.cld.stop(sig)
		if err := syscall.Kill(int(c.GetInitPid()), 0); err != nil {
			t.Fatalf("container init gone after containerd-lite got %v: %v", sig, err)
		}
		l.start(t)
		again := l.inspect(t, name)
		ga := again.GetGuest()
		if ga == nil {
			t.Fatalf("after containerd-lite restart (%v): guestd no answer: %s", sig, again.GetGuestError())
		}
		if again.GetContainer().GetInitPid() != c.GetInitPid() ||
			!ga.GetBootTime().AsTime().Equal(g.GetBootTime().AsTime()) ||
			!ga.GetStartedAt().AsTime().Equal(g.GetStartedAt().AsTime()) || ga.GetPid() != g.GetPid() {
			t.Fatalf("container restarted with containerd-lite (%v): before %v / %v, after %v / %v", sig, c, g, again.GetContainer(), ga)
		}
		if !strings.Contains(l.cld.log.String(), "adopted running container") {
			t.Errorf("reconcile did not log the adoption:\n%s", l.cld.log.String())
		}
	}
	// The host socket is served again after the restart.
	if out, err := run(t, "lxc-attach", "-P", l.lxcPath(), "-n", name, "--", "/sbin/guestd", "whoami"); err != nil || strings.TrimSpace(out) != name {
		t.Errorf("whoami after restart: %q %v", out, err)
	}

	if _, err := hearthctl(t, l.runDir, "container", "rm", name); err == nil || !strings.Contains(err.Error(), "FailedPrecondition") {
		t.Fatalf("rm of a running container: %v, want FailedPrecondition", err)
	}
	if _, err := hearthctl(t, l.runDir, "container", "stop", name); err != nil {
		t.Fatal(err)
	}
	if st := l.inspect(t, name).GetContainer().GetState(); st != containerv1.ContainerState_CONTAINER_STATE_STOPPED {
		t.Fatalf("after stop: state %v", st)
	}
	if err := syscall.Kill(int(c.GetInitPid()), 0); err == nil {
		t.Errorf("init pid %d still alive after stop", c.GetInitPid())
	}
	if m := mountsUnder(t, l.stateDir); len(m) > 0 {
		t.Errorf("mounts left after stop: %v", m)
	}
	if _, err := hearthctl(t, l.runDir, "container", "rm", name); err != nil {
		t.Fatal(err)
	}

	// Nothing left: no LXC container, mount, veth or directory.
	if out, _ := run(t, "lxc-ls", "-P", l.lxcPath()); strings.TrimSpace(out) != "" {
		t.Errorf("lxc-ls still lists %q", out)
	}
	if m := mountsUnder(t, l.dir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	if v := veths(t); v != vethsBefore {
		t.Errorf("veths changed:\nbefore %s\nafter %s", vethsBefore, v)
	}
	for _, p := range []string{filepath.Join(l.lxcPath(), name), filepath.Join(l.stateDir, "containers", name)} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists (%v)", p, err)
		}
	}
	list := &containerv1.ListContainersResponse{}
	hearthctlJSON(t, l.runDir, list, "container", "ls")
	if len(list.GetContainers()) != 0 {
		t.Errorf("ls after rm: %v", list)
	}
}

// TestContainerBadInput checks that bad requests get a clear error and change nothing.
func TestContainerBadInput(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"container", "create", "Bad_Name"}, "InvalidArgument"},
		{[]string{"container", "create", strings.Repeat("a", 40)}, "InvalidArgument"},
		{[]string{"container", "start", "missing"}, "NotFound"},
		{[]string{"container", "stop", "missing"}, "NotFound"},
		{[]string{"container", "rm", "missing"}, "NotFound"},
		{[]string{"container", "status", "missing"}, "NotFound"},
		{[]string{"container", "create"}, "accepts 1 arg"},
		{[]string{"--output", "yaml", "container", "ls"}, "use text or json"},
		{[]string{"container", "create", "tiny", "--disk", "1Mi"}, "below 32Mi"},
		{[]string{"container", "create", "nodisk", "--disk", "lots"}, "--disk"},
		{[]string{"container", "limits", "missing", "--pids", "10"}, "NotFound"},
		{[]string{"container", "limits", "missing"}, "give at least one"},
	} {
		_, err := hearthctl(t, l.runDir, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("hearthctl %v: %v, want %q", tc.args, err, tc.want)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(l.stateDir, "containers")); len(ents) != 0 {
		t.Errorf("bad input left containers: %v", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(l.stateDir, "disks")); len(ents) != 0 {
		t.Errorf("bad input left disks: %v", ents)
	}
}

// TestContainerRefusedBelowDiskReserve: with less free space on the state file system than
// --disk-reserve, a container does not start, the error says why, and nothing stays mounted.
func TestContainerRefusedBelowDiskReserve(t *testing.T) {
	requireRoot(t)
	dir := tempDir(t)
	runDir, stateDir := filepath.Join(dir, "run"), filepath.Join(dir, "state")
	d := startDaemon(t, "containerd-lite", filepath.Join(runDir, "containerd-lite.sock"),
		"--run-dir", runDir, "--state-dir", stateDir, "--base-rootfs", baseRootfs, "--disk-reserve", "1000Ti")
	defer d.stop(syscall.SIGTERM)
	if _, err := hearthctl(t, runDir, "container", "create", "big"); err != nil {
		t.Fatal(err)
	}
	defer hearthctl(t, runDir, "container", "rm", "--force", "--purge-volumes", "big")
	_, err := hearthctl(t, runDir, "container", "start", "big")
	if err == nil || !strings.Contains(err.Error(), "below the reserve") || !strings.Contains(err.Error(), "ResourceExhausted") {
		t.Fatalf("start below the reserve: %v", err)
	}
	if m := mountsUnder(t, stateDir); len(m) > 0 {
		t.Errorf("a refused start left mounts: %v", m)
	}
}

func procUID(t *testing.T, pid int) uint32 {
	t.Helper()
	fi, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid
}

// TestContainerLimitsChange: limits changed on a running container reach its cgroup at
// once; a larger disk is grown online where the kernel allows containerd-lite to resize a
// mounted ext4, otherwise at the next start, and its file system then has the new size.
func TestContainerLimitsChange(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	const name = "resize"
	if _, err := hearthctl(t, l.runDir, "container", "create", name, "--pids", "64", "--disk", "64Mi"); err != nil {
		t.Fatal(err)
	}
	if _, err := hearthctl(t, l.runDir, "container", "start", name); err != nil {
		t.Fatal(err)
	}
	diskSize := func() int64 {
		d := l.inspect(t, name).GetDetails().GetDisk()
		if d.GetError() != "" {
			t.Fatalf("disk usage: %s", d.GetError())
		}
		return d.GetSizeBytes()
	}
	size0 := diskSize()
	resp := &containerv1.SetContainerLimitsResponse{}
	hearthctlJSON(t, l.runDir, resp, "container", "limits", name, "--pids", "96", "--memory", "200Mi", "--disk", "128Mi")
	if lim := resp.GetLimits(); lim.GetPids() != 96 || lim.GetMemoryBytes() != 200<<20 || lim.GetDiskBytes() != 128<<20 {
		t.Fatalf("limits after the change: %v", lim)
	}
	cg := l.inspect(t, name).GetDetails().GetCgroupLimits()
	if cg.GetPids() != 96 || cg.GetMemoryBytes() != 200<<20 {
		t.Errorf("the running container's cgroup holds %v, want pids 96 and memory 200Mi", cg)
	}
	grown := false
	for _, n := range resp.GetNotes() {
		t.Logf("note: %s", n)
		if strings.Contains(n, "next start") {
			grown = true
		}
	}
	if !grown {
		// Grown online.
		if s := diskSize(); s <= size0 {
			t.Errorf("disk %d bytes after an online growth, %d before", s, size0)
		}
	} else {
		if _, err := hearthctl(t, l.runDir, "container", "stop", name); err != nil {
			t.Fatal(err)
		}
		if _, err := hearthctl(t, l.runDir, "container", "start", name); err != nil {
			t.Fatal(err)
		}
		if s := diskSize(); s < 2*size0-8<<20 {
			t.Errorf("disk %d bytes after a start that should have grown it from %d to about twice", s, size0)
		}
	}
	if cg := l.inspect(t, name).GetDetails().GetCgroupLimits(); cg.GetPids() != 96 {
		t.Errorf("after a restart the cgroup holds %v: the change did not reach the container's configuration", cg)
	}
	if _, err := hearthctl(t, l.runDir, "container", "limits", name, "--disk", "64Mi"); err == nil || !strings.Contains(err.Error(), "do not shrink") {
		t.Errorf("shrinking the disk: %v", err)
	}
}

// TestContainerDefinitionRewritten: a container's LXC configuration is written without
// waiting for the disk, so a power cut can leave it empty; containerd-lite's start-up
// writes it again from the record, and the container starts.
func TestContainerDefinitionRewritten(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	const name = "redefined"
	if _, err := hearthctl(t, l.runDir, "container", "create", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hearthctl(t, l.runDir, "container", "rm", "--force", name) })
	config := filepath.Join(l.lxcPath(), name, "config")
	want, err := os.ReadFile(config)
	if err != nil || len(want) == 0 {
		t.Fatalf("no configuration after create: %v", err)
	}
	l.cld.stop(syscall.SIGTERM)
	// What a power cut before the write-out leaves: the name, no content.
	if err := os.Truncate(config, 0); err != nil {
		t.Fatal(err)
	}
	l.start(t)
	if got, err := os.ReadFile(config); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("configuration after the restart: %d bytes (%v), want the %d written at create", len(got), err, len(want))
	}
	if !strings.Contains(l.cld.log.String(), "wrote the container's LXC configuration again") {
		t.Errorf("containerd-lite did not say it wrote the configuration again:\n%s", l.cld.log.String())
	}
	if _, err := hearthctl(t, l.runDir, "container", "start", name); err != nil {
		t.Fatalf("start after the configuration was written again: %v", err)
	}
	if _, err := hearthctl(t, l.runDir, "container", "stop", name); err != nil {
		t.Fatal(err)
	}
	// Once in line, a restart writes nothing.
	l.cld.stop(syscall.SIGTERM)
	l.start(t)
	if strings.Contains(l.cld.log.String(), "wrote the container's LXC configuration again") {
		t.Errorf("a restart wrote a configuration that was in line:\n%s", l.cld.log.String())
	}
}
