package integration

// The attack suite of issue 9: a package's root, inside a real container and from a
// subcontainer it escapes, tries each way the host was found to trust the container's
// tree (S1-S9). Each test hashes the host around the attack (canary_test.go) and fails
// saying what changed; the attacker is integration/attacker, put in an image.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	containerv1 "hearth.dev/proto/hearth/container/v1"
)

const (
	atkImage = "atk"
	// attackerInContainer is the attacker as the container's root sees it, in the image mount.
	attackerInContainer = "/media/hearth/images/" + atkImage + "/attacker"
	// attackerInSub is the attacker in a subcontainer of that image.
	attackerInSub = "/attacker"
	// rpcInside is the container's rpc directory as it sees it.
	rpcInside = "/media/hearth/rpc"
)

// attackManifest is a package whose daemon "sub" runs in the attacker's image, with a
// volume bound at /data. extra is added at the top level (limits).
func attackManifest(id, extra string) string {
	return fmt.Sprintf(`
id: %s
version: 0.1.0
images: {%s: {ref: %s}}
volumes: [data]
%s
daemons:
  sub:
    image: %s
    command: [sleep, "100000"]
    mounts: [{volume: data, path: /data}]
`, id, atkImage, atkImage, extra, atkImage)
}

// attackLab is a lab with the attacker's image, a victim package and attacking packages.
type attackLab struct {
	*lab
	canary    *canary
	canaryDir string
	// victim is the other package; its volume and rpc directory are watched.
	victim                  string
	victimVolume, victimRPC string
	// victimHost is the victim's host-only directory (host.sock, package.json).
	victimHost  string
	victimFiles []canaryFile
}

// newAttackLab starts a lab, builds the attacker into an image, and starts a victim
// package and the attacking packages, each with its daemon "sub" running.
func newAttackLab(t *testing.T, attackers ...string) *attackLab {
	t.Helper()
	requireRoot(t)
	l := newLab(t)
	importAttackerImage(t, l)
	a := &attackLab{lab: l, victim: "victim", canaryDir: filepath.Join(l.dir, "canary")}
	for _, name := range append([]string{a.victim}, attackers...) {
		a.startPackage(t, name)
	}
	base := int(a.hostBase(t, a.victim))
	d := a.inspect(t, a.victim).GetDetails()
	if len(d.GetVolumes()) != 1 {
		t.Fatalf("victim's volumes: %v", d.GetVolumes())
	}
	a.victimVolume = d.GetVolumes()[0].GetHostPath()
	a.victimRPC = filepath.Join(l.stateDir, "containers", a.victim, "rpc")
	a.victimHost = filepath.Join(l.stateDir, "containers", a.victim, "media", "host")
	// The victim's data, owned through its id map as its processes would own it.
	a.victimFiles = []canaryFile{
		{path: "victim-data", mode: 0o640, uid: base + 999, gid: base + 999, body: "rows\n"},
		{path: "victim-empty", mode: fs.ModeDir | 0o755, uid: base, gid: base},
		{path: "victim-db", mode: fs.ModeDir | 0o700, uid: base + 999, gid: base + 999},
		{path: "victim-db/table", mode: 0o600, uid: base + 999, gid: base + 999, body: "table\n"},
	}
	a.canary = &canary{
		labDir: l.dir,
		trees: map[string]string{
			"canary":        a.canaryDir,
			"base-rootfs":   filepath.Join(l.stateDir, "base-rootfs"),
			"victim-volume": a.victimVolume,
			"victim-rpc":    a.victimRPC,
			"victim-host":   a.victimHost,
		},
	}
	a.restore(t)
	return a
}

// startPackage creates and starts a package from attackManifest and waits for its daemon.
func (a *attackLab) startPackage(t *testing.T, name string) {
	t.Helper()
	mf := filepath.Join(a.dir, name+".yaml")
	must(t, os.WriteFile(mf, []byte(attackManifest(name, "")), 0o644))
	if _, err := hearthctl(t, a.runDir, "container", "create", name, "--manifest", mf); err != nil {
		t.Fatal(err)
	}
	if _, err := hearthctl(t, a.runDir, "container", "start", name); err != nil {
		t.Fatal(err)
	}
	a.waitDaemons(t, name, "sub ready", 30*time.Second, allReady("sub"))
}

// restore puts the canary tree and the victim's files back as they were made.
func (a *attackLab) restore(t testing.TB) {
	t.Helper()
	makeTree(t, a.canaryDir, canaryTree)
	makeTree(t, a.victimVolume, a.victimFiles)
}

// watch returns the canary with the attacking containers' own directories left out.
func (a *attackLab) watch(attackers ...string) *canary {
	c := *a.canary
	c.ownDirs = nil
	for _, n := range attackers {
		c.ownDirs = append(c.ownDirs, filepath.Join(a.stateDir, "containers", n))
	}
	return &c
}

// hostBase is the first host uid of a running container's id map.
func (a *attackLab) hostBase(t *testing.T, name string) uint32 {
	t.Helper()
	m := idMaps(t, int(a.inspect(t, name).GetContainer().GetInitPid()), "uid_map")
	if len(m) == 0 {
		t.Fatalf("%s has an empty uid_map", name)
	}
	return m[0].host
}

// importAttackerImage builds the attacker (static) and imports it with busybox as image atk.
func importAttackerImage(t *testing.T, l *lab) {
	t.Helper()
	dir := tempDir(t)
	busyboxWithHelper(t, filepath.Join(dir, "layout"), "./attacker", "attacker")
	if _, err := hearthctl(t, l.runDir, "image", "import", filepath.Join(dir, "layout"), "--name", atkImage); err != nil {
		t.Fatal(err)
	}
}

// runTimed runs a command with a deadline and says how long it took.
func runTimed(timeout time.Duration, name string, args ...string) (stdout, stderr string, took time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var o, e syncBuffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = 2 * time.Second
	t0 := time.Now()
	err = cmd.Run()
	took = time.Since(t0)
	if ctx.Err() != nil {
		err = fmt.Errorf("still running after %v: killed (%v)", timeout, err)
	}
	if err != nil {
		err = fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(e.String()))
	}
	return o.String(), e.String(), took, err
}

// attackMode is where the attacker runs: as the container's root, or in a subcontainer
// it escapes from first.
type attackMode struct {
	name string
	run  func(a *attackLab, container string, args ...string) (string, error)
}

var attackModes = []attackMode{
	{"container root", (*attackLab).asRoot},
	{"subcontainer", (*attackLab).fromSub},
}

// asRoot runs the attacker as the container's root (lxc-attach).
func (a *attackLab) asRoot(container string, args ...string) (string, error) {
	out, _, _, err := runTimed(90*time.Second, "lxc-attach", append([]string{"-P", a.lxcPath(), "-n", container, "--", attackerInContainer}, args...)...)
	return out, err
}

// fromSub runs the attacker in the container's subcontainer "sub" (hearthctl exec),
// where it escapes the chroot to the container's root before it attacks.
func (a *attackLab) fromSub(container string, args ...string) (string, error) {
	out, _, _, err := runTimed(90*time.Second, filepath.Join(binDir, "hearthctl"), append([]string{"--run-dir", a.runDir, "--timeout", "80s",
		"exec", container, "sub", "--", attackerInSub, "chroot-escape", "--"}, args...)...)
	return out, err
}

// checkAttacker makes sure the attacker runs and reaches the host in every mode: an
// attack that cannot start proves nothing.
func (a *attackLab) checkAttacker(t *testing.T, container string) {
	t.Helper()
	for _, m := range attackModes {
		out, err := m.run(a, container, "whoami")
		if err != nil || !strings.Contains(out, `"container":"`+container+`"`) {
			t.Fatalf("the attacker does not run as %s in %s: %q %v", m.name, container, out, err)
		}
	}
}

// background is an attacker left running: its first line says it is ready; closing its
// stdin ends it.
type background struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *syncBuffer
	done   chan struct{}
}

func startBackground(t *testing.T, name string, args ...string) *background {
	t.Helper()
	b := &background{cmd: exec.Command(name, args...), lines: make(chan string, 16), stderr: &syncBuffer{}, done: make(chan struct{})}
	b.cmd.Stderr = b.stderr
	var err error
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			b.lines <- sc.Text()
		}
		close(b.lines)
		b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() { b.stop(10 * time.Second) })
	return b
}

// line waits for the next line of output.
func (b *background) line(timeout time.Duration) (string, error) {
	select {
	case l, ok := <-b.lines:
		if !ok {
			<-b.done
			return "", fmt.Errorf("exited (%v) without a line: %s", b.cmd.ProcessState, b.stderr.String())
		}
		return l, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("no line after %v: %s", timeout, b.stderr.String())
	}
}

// stop closes stdin and waits; after timeout the process we started is killed.
func (b *background) stop(timeout time.Duration) {
	b.stdin.Close()
	select {
	case <-b.done:
	case <-time.After(timeout):
		b.cmd.Process.Kill()
		<-b.done
	}
}

// attackerBG runs the attacker as the container's root, in the background.
func (a *attackLab) attackerBG(t *testing.T, container string, args ...string) *background {
	t.Helper()
	return startBackground(t, "lxc-attach", append([]string{"-P", a.lxcPath(), "-n", container, "--", attackerInContainer}, args...)...)
}

// TestAttackDestroyThroughSymlink is S1: /media/hearth/subcontainers becomes a symlink
// to a host directory, and DestroyOverlay names an entry of it. Nothing outside the
// container may go: host files and empty directories, another package's volume, data
// and sockets, the base rootfs every container shares.
func TestAttackDestroyThroughSymlink(t *testing.T) {
	a := newAttackLab(t, "evil")
	a.checkAttacker(t, "evil")
	c := a.watch("evil")
	baseDirs, _ := filepath.Glob(filepath.Join(a.stateDir, "base-rootfs", "*"))
	if len(baseDirs) != 1 {
		t.Fatalf("installed base rootfs: %v", baseDirs)
	}
	base := baseDirs[0]
	victimSubs := filepath.Join(a.stateDir, "containers", a.victim, "media", "subcontainers")
	type target struct{ what, dir, name string }
	shared := []target{
		{"a host file (0644)", a.canaryDir, "file-0644"},
		{"another user's file (0600)", a.canaryDir, "secret-0600"},
		{"a setuid file", a.canaryDir, "setuid-4755"},
		{"a host symlink", a.canaryDir, "link"},
		{"an empty host directory", a.canaryDir, "empty-dir"},
		{"another user's empty directory", a.canaryDir, "empty-0700"},
		{"a nested empty directory", filepath.Join(a.canaryDir, "nested", "deeper"), "empty"},
		{"a nested file", filepath.Join(a.canaryDir, "nested", "deeper"), "file"},
		{"the victim's volume file", a.victimVolume, "victim-data"},
		{"the victim's volume empty directory", a.victimVolume, "victim-empty"},
	}
	// Entries that cannot be put back differ between the modes.
	own := map[string][]target{
		"container root": {
			{"a base rootfs file", filepath.Join(base, "etc"), "hostname"},
			{"a base rootfs applet link", filepath.Join(base, "bin"), "ls"},
			{"an empty base rootfs directory", base, "root"},
		},
		"subcontainer": {
			{"a base rootfs file", filepath.Join(base, "etc"), "resolv.conf"},
			{"a base rootfs applet link", filepath.Join(base, "bin"), "cat"},
			{"an empty base rootfs directory", filepath.Join(base, "var"), "log"},
		},
	}
	attack := func(t *testing.T, m attackMode, desc string, args ...string) {
		t.Helper()
		a.restore(t)
		before := c.take(t)
		out, err := m.run(a, "evil", args...)
		if err != nil {
			t.Logf("the attack could not be carried out (the host may have refused it): %v", err)
		} else {
			t.Logf("attacker: %s", strings.TrimSpace(out))
		}
		c.check(t, "S1 ("+desc+", as "+m.name+")", before)
	}
	for _, m := range attackModes {
		for _, tg := range append(shared, own[m.name]...) {
			t.Run(m.name+"/"+tg.what, func(t *testing.T) {
				attack(t, m, fmt.Sprintf("DestroyOverlay(%q) with subcontainers -> %s", tg.name, tg.dir), "destroy-via-symlink", "--target", tg.dir, "--name", tg.name)
			})
		}
		t.Run(m.name+"/symlink swapped while the host acts", func(t *testing.T) {
			attack(t, m, "DestroyOverlay(\"swap-target\") for 2s while subcontainers flips between its real directory and "+a.canaryDir,
				"destroy-via-symlink", "--target", a.canaryDir, "--name", "swap-target", "--swap-seconds", "2s")
		})
	}
	// Last: these break the victim, or (the overlay "sub" is the attacker's own too) the
	// attacker's subcontainer.
	for _, tc := range []struct {
		mode      attackMode
		what, dir string
		name      string
	}{
		{attackModes[1], "the victim's guestd.sock", a.victimRPC, "guestd.sock"},
		{attackModes[0], "the victim's package.json", a.victimHost, "package.json"},
		{attackModes[0], "the victim's subcontainer mount point", victimSubs, "sub"},
	} {
		t.Run(tc.mode.name+"/"+tc.what, func(t *testing.T) {
			attack(t, tc.mode, fmt.Sprintf("DestroyOverlay(%q) with subcontainers -> %s", tc.name, tc.dir), "destroy-via-symlink", "--target", tc.dir, "--name", tc.name)
		})
	}
}

// TestAttackGuestSocketSwap is S2: the container replaces its rpc/guestd.sock with a
// symlink to another container's socket, to the host daemon's own, or with a FIFO, a
// file, a directory or a socket that never answers. What hearthctl shows for it must
// never come from another container, and must not hang.
func TestAttackGuestSocketSwap(t *testing.T) {
	a := newAttackLab(t, "evil")
	a.checkAttacker(t, "evil")
	c := a.watch("evil")
	victim := a.inspect(t, a.victim).GetGuest()
	if victim.GetHostname() != a.victim {
		t.Fatalf("victim's guest: %v", victim)
	}
	sameGuest := func(g interface {
		GetHostname() string
		GetPid() int32
	}, started time.Time) bool {
		return g.GetHostname() == victim.GetHostname() ||
			(g.GetPid() == victim.GetPid() && started.Equal(victim.GetStartedAt().AsTime()))
	}
	guestSock := rpcInside + "/guestd.sock"
	variants := []struct {
		what  string
		plant []string
	}{
		{"a symlink to the victim's guestd.sock", []string{"--symlink", filepath.Join(a.victimRPC, "guestd.sock")}},
		{"a symlink to the victim's host.sock", []string{"--symlink", filepath.Join(a.victimHost, "host.sock")}},
		{"a symlink to containerd-lite's socket", []string{"--symlink", filepath.Join(a.runDir, "containerd-lite.sock")}},
		{"a relative symlink climbing to the victim", []string{"--symlink", "../../" + a.victim + "/rpc/guestd.sock"}},
		{"a FIFO", []string{"--fifo"}},
		{"a regular file", []string{"--file"}},
		{"a directory", []string{"--dir"}},
	}
	look := func(t *testing.T, desc string) {
		t.Helper()
		// inspect asks guestd through the container's socket.
		out, _, took, err := runTimed(30*time.Second, filepath.Join(binDir, "hearthctl"), "--run-dir", a.runDir, "--timeout", "20s", "-o", "json", "container", "inspect", "evil")
		if took > 5*time.Second {
			t.Errorf("%s: container inspect evil took %v (a guest socket that does not answer must not hold it)", desc, took.Round(time.Millisecond))
		}
		if err != nil {
			t.Errorf("%s: container inspect evil failed: %v", desc, err)
		} else {
			resp := &containerv1.GetContainerResponse{}
			if err := protojsonUnmarshal([]byte(out), resp); err != nil {
				t.Fatalf("inspect: %v\n%s", err, out)
			}
			if g := resp.GetGuest(); g != nil && sameGuest(g, g.GetStartedAt().AsTime()) {
				t.Errorf("%s: container inspect evil shows the victim's guestd: hostname %q, pid %d, started %v",
					desc, g.GetHostname(), g.GetPid(), g.GetStartedAt().AsTime())
			}
		}
		// status asks guestd for the daemons through containerd-lite's proxy.
		out, _, took, err = runTimed(30*time.Second, filepath.Join(binDir, "hearthctl"), "--run-dir", a.runDir, "--timeout", "20s", "container", "status", "evil")
		if took > 5*time.Second {
			t.Errorf("%s: container status evil took %v (it must not hang)", desc, took.Round(time.Millisecond))
		}
		if strings.Contains(out, a.victim) {
			t.Errorf("%s: container status evil shows the victim:\n%s", desc, out)
		}
		t.Logf("status (%v, %v):\n%s", took.Round(time.Millisecond), err, out)
		// exec runs where the proxy dials.
		// (exec is not bounded by --timeout: a guest that never answers holds it about 20s.)
		out, _, took, err = runTimed(10*time.Second, filepath.Join(binDir, "hearthctl"), "--run-dir", a.runDir, "--timeout", "8s", "exec", "evil", "sub", "--", "cat", "/proc/sys/kernel/hostname")
		if strings.TrimSpace(out) == a.victim {
			t.Errorf("%s: hearthctl exec evil ran its command in the victim (hostname %q)", desc, strings.TrimSpace(out))
		}
		t.Logf("exec (%v): %q %v", took.Round(time.Millisecond), out, err)
	}
	for _, m := range attackModes {
		for _, v := range variants {
			t.Run(m.name+"/"+v.what, func(t *testing.T) {
				before := c.take(t)
				out, err := m.run(a, "evil", append([]string{"plant", guestSock}, v.plant...)...)
				if err != nil {
					t.Logf("could not plant (the host may have refused it): %v", err)
				} else {
					t.Log(strings.TrimSpace(out))
					t.Cleanup(func() {
						if out, err := a.asRoot("evil", "unplant", guestSock); err != nil {
							t.Errorf("unplant: %q %v", out, err)
						}
					})
				}
				look(t, "S2 (guestd.sock replaced by "+v.what+", as "+m.name+")")
				c.check(t, "S2 ("+v.what+")", before)
			})
		}
	}
	t.Run("container root/a socket that never answers", func(t *testing.T) {
		before := c.take(t)
		b := a.attackerBG(t, "evil", "plant", guestSock, "--socket", "--hold", "2m")
		if l, err := b.line(20 * time.Second); err != nil {
			t.Fatalf("plant a silent socket: %v", err)
		} else {
			t.Log(l)
		}
		look(t, "S2 (guestd.sock replaced by a socket that never answers)")
		b.stop(10 * time.Second)
		if out, err := a.asRoot("evil", "unplant", guestSock); err != nil {
			t.Errorf("unplant: %q %v", out, err)
		}
		c.check(t, "S2 (a socket that never answers)", before)
	})
	// The container's own guestd answers again once its socket is back.
	if g := a.inspect(t, "evil").GetGuest(); g.GetHostname() != "evil" {
		t.Errorf("evil's guestd after the attacks: %v", g)
	}
}

// procStat reads a process's descriptor count and resident memory.
func procStat(t *testing.T, pid int) (fds int, rss int64) {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("descriptors of %d: %v", pid, err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if f, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(f), " kB"), 10, 64)
			rss = kb << 10
		}
	}
	return len(ents), rss
}

// Budgets of containerd-lite while one container abuses its host.sock.
const (
	fdBudget  = 200
	rssBudget = 64 << 20
	answerIn  = time.Second
)

// othersAnswer checks that hearthctl and another container's host calls answer in time.
func (a *attackLab) othersAnswer(t *testing.T, during string) {
	t.Helper()
	_, _, took, err := runTimed(20*time.Second, filepath.Join(binDir, "hearthctl"), "--run-dir", a.runDir, "--timeout", "5s", "container", "ls")
	if err != nil || took > answerIn {
		t.Errorf("%s: hearthctl container ls took %v (budget %v): %v", during, took.Round(time.Millisecond), answerIn, err)
	}
	out, _, _, err := runTimed(30*time.Second, "lxc-attach", "-P", a.lxcPath(), "-n", a.victim, "--", attackerInContainer, "ping", "--n", "3", "--timeout", "5s")
	var p struct {
		MaxMS    int64    `json:"max_ms"`
		Failures []string `json:"failures"`
	}
	if err == nil {
		err = json.Unmarshal([]byte(out), &p)
	}
	switch {
	case err != nil:
		t.Errorf("%s: the victim could not call its host.sock: %v", during, err)
	case len(p.Failures) > 0 || time.Duration(p.MaxMS)*time.Millisecond > answerIn:
		t.Errorf("%s: the victim's host calls: slowest %d ms (budget %v), failures %v", during, p.MaxMS, answerIn, p.Failures)
	default:
		t.Logf("%s: the victim's host calls: slowest %d ms", during, p.MaxMS)
	}
}

// dropCallLines removes the daemon's per-call debug lines from its log, which the lab
// prints when a test fails: after a flood they would be hundreds of thousands.
func dropCallLines(d *daemonProc) {
	d.log.mu.Lock()
	defer d.log.mu.Unlock()
	var kept []string
	dropped := 0
	for _, line := range strings.SplitAfter(d.log.b.String(), "\n") {
		if strings.Contains(line, " msg=call ") {
			dropped++
			continue
		}
		kept = append(kept, line)
	}
	d.log.b.Reset()
	fmt.Fprintf(&d.log.b, "(%d lines of calls left out)\n%s", dropped, strings.Join(kept, ""))
}

// TestAttackConnections is S3, S4 and the flood: one container holds 20,000 connections
// to its host.sock, or calls it as fast as it can. containerd-lite's descriptors and
// memory stay within budget, hearthctl and another container keep answering in under a
// second, and the abuser is refused with ResourceExhausted.
func TestAttackConnections(t *testing.T) {
	a := newAttackLab(t, "evil")
	a.checkAttacker(t, "evil")
	pid := a.cld.cmd.Process.Pid
	fds0, rss0 := procStat(t, pid)
	t.Logf("containerd-lite at rest: %d descriptors, RSS %d MiB", fds0, rss0>>20)
	t.Cleanup(func() { dropCallLines(a.cld) })

	t.Run("20000 connections held", func(t *testing.T) {
		const n = 20000
		t0 := time.Now()
		b := a.attackerBG(t, "evil", "conns", strconv.Itoa(n), "--hold", "2m", "--open-timeout", "20s")
		line, err := b.line(90 * time.Second)
		if err != nil {
			t.Fatalf("the attacker did not open its connections: %v", err)
		}
		t.Logf("attacker (%v): %s", time.Since(t0).Round(time.Millisecond), line)
		// The host may still be taking connections from its queue: measure its peak.
		var fds int
		var rss int64
		for i := 0; i < 10; i++ {
			f, r := procStat(t, pid)
			fds, rss = max(fds, f), max(rss, r)
			time.Sleep(100 * time.Millisecond)
		}
		if fds > fds0+fdBudget {
			t.Errorf("S3: with %d connections held by one container, containerd-lite has %d descriptors (%d at rest, budget +%d)", n, fds, fds0, fdBudget)
		}
		if rss > rss0+rssBudget {
			t.Errorf("S4: with %d connections held by one container, containerd-lite's RSS is %d MiB (%d MiB at rest, budget +%d MiB)", n, rss>>20, rss0>>20, rssBudget>>20)
		}
		a.othersAnswer(t, "S3: while evil holds 20000 connections")
		b.stop(30 * time.Second)
		// Once they close, the daemon gives back what they took.
		deadline := time.Now().Add(15 * time.Second)
		for {
			fds, rss = procStat(t, pid)
			if fds <= fds0+fdBudget || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if fds > fds0+fdBudget {
			t.Errorf("S3: 15s after the connections closed, containerd-lite still has %d descriptors (%d at rest)", fds, fds0)
		}
		if rss > rss0+rssBudget {
			t.Errorf("S4: after the connections closed, containerd-lite keeps an RSS of %d MiB (%d MiB at rest, budget +%d MiB)", rss>>20, rss0>>20, rssBudget>>20)
		}
		t.Logf("after: %d descriptors, RSS %d MiB", fds, rss>>20)
	})

	for _, tc := range []struct {
		mode attackMode
		call string
	}{{attackModes[0], "identity"}, {attackModes[1], "list"}} {
		t.Run("flood of "+tc.call+" calls from the "+tc.mode.name, func(t *testing.T) {
			type flood struct {
				Calls     int            `json:"calls"`
				PerSecond float64        `json:"per_second"`
				Codes     map[string]int `json:"codes"`
				First     string         `json:"first_other_error"`
			}
			_, rss1 := procStat(t, pid)
			res := make(chan error, 1)
			var f flood
			go func() {
				out, err := tc.mode.run(a, "evil", "flood", "--seconds", "6s", "--workers", "32", "--call", tc.call)
				if err == nil {
					err = json.Unmarshal([]byte(out), &f)
				}
				res <- err
			}()
			time.Sleep(2 * time.Second) // measure in the middle of the flood
			fds, rss := procStat(t, pid)
			a.othersAnswer(t, "flood of "+tc.call+" calls")
			if err := <-res; err != nil {
				t.Fatalf("flood: %v", err)
			}
			t.Logf("flood: %d calls (%.0f/s), codes %v, containerd-lite %d descriptors, RSS %d MiB", f.Calls, f.PerSecond, f.Codes, fds, rss>>20)
			if f.Codes["ResourceExhausted"] == 0 {
				t.Errorf("flood: the host never refused evil: %d %s calls in 6s (%.0f/s) answered %v; host.sock has no rate limit", f.Calls, tc.call, f.PerSecond, f.Codes)
			}
			if rss > rss1+rssBudget {
				t.Errorf("flood: containerd-lite's RSS is %d MiB (%d MiB before the flood, budget +%d MiB)", rss>>20, rss1>>20, rssBudget>>20)
			}
		})
	}
}

// overlayCap is the most overlays the suite expects one container to get.
const overlayCap = 64

// TestAttackOverlayCap is S5: a container asking for 100 overlays is refused with
// ResourceExhausted before it holds more than the cap.
func TestAttackOverlayCap(t *testing.T) {
	a := newAttackLab(t, "evil")
	a.checkAttacker(t, "evil")
	c := a.watch("evil")
	evilDir := filepath.Join(a.stateDir, "containers", "evil")
	for i, m := range attackModes {
		t.Run(m.name, func(t *testing.T) {
			before, mounts0 := c.take(t), len(mountsUnder(t, evilDir))
			out, err := m.run(a, "evil", "overlays", "100", "--image", atkImage, "--prefix", fmt.Sprintf("m%d", i), "--destroy")
			if err != nil {
				t.Fatal(err)
			}
			var r struct {
				Created int    `json:"created"`
				Listed  int    `json:"listed"`
				Refusal result `json:"refusal"`
			}
			must(t, json.Unmarshal([]byte(out), &r))
			t.Logf("attacker: %s", strings.TrimSpace(out))
			if r.Listed > overlayCap || r.Refusal.Code != "ResourceExhausted" {
				refusal := "never refused"
				if !r.Refusal.OK && r.Refusal.Code != "" {
					refusal = "then refused with " + describe(r.Refusal)
				}
				t.Errorf("S5: evil asked for 100 overlays and got %d (%d listed at once, each a host mount), %s; want at most %d, then ResourceExhausted",
					r.Created, r.Listed, refusal, overlayCap)
			}
			if n := len(mountsUnder(t, evilDir)); n != mounts0 {
				t.Errorf("S5: %d mounts under evil's directory after destroying the overlays, %d before", n, mounts0)
			}
			c.check(t, "S5", before)
		})
	}
}

// result is a host call's outcome as the attacker reports it.
type result struct {
	OK      bool   `json:"ok"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// plantCases are the names the attacker plants in subcontainers/ for S6, and where
// their symlinks lead (inside /media/hearth, as the host resolves them in its root).
var plantCases = []struct{ name, link string }{
	{"p-self", "."},
	{"p-image", "../images/" + atkImage},
	{"p-image-abs", "/images/" + atkImage},
	{"p-rpc", "../rpc"},
	{"p-rpc-abs", "/rpc"},
	{"p-media", ".."},
	{"p-root", "/"},
}

// TestAttackPlantedOverlayNames is S6: overlay names that are symlinks planted in
// subcontainers/ (to ., .., /, rpc, an image). No overlay may land over the container's
// rpc directory, an image mount or /media/hearth, and destroy leaves nothing mounted.
// Each case gets a fresh container: one that works breaks the container's /media/hearth.
func TestAttackPlantedOverlayNames(t *testing.T) {
	a := newAttackLab(t)
	for mi, m := range attackModes {
		for ci, pc := range plantCases {
			t.Run(m.name+"/subcontainers/"+pc.name+" -> "+pc.link, func(t *testing.T) {
				name := fmt.Sprintf("evil-%d-%d", mi, ci)
				a.startPackage(t, name)
				defer func() {
					if _, err := hearthctl(t, a.runDir, "container", "rm", "--force", "--purge-volumes", name); err != nil {
						t.Errorf("remove %s: %v", name, err)
					}
				}()
				c := a.watch(name)
				dir := filepath.Join(a.stateDir, "containers", name)
				mounts0 := hostMounts(t, dir)
				before := c.take(t)
				out, err := m.run(a, name, "plant-overlay-names", "--image", atkImage, "--case", pc.name)
				if err != nil {
					t.Fatal(err)
				}
				var r struct {
					Cases []struct {
						Create  result   `json:"create"`
						Destroy result   `json:"destroy"`
						Landed  []string `json:"landed"`
						Left    []string `json:"left"`
						Plant   string   `json:"plant_error"`
					} `json:"cases"`
				}
				must(t, json.Unmarshal([]byte(out), &r))
				if len(r.Cases) != 1 {
					t.Fatalf("attacker: %s", out)
				}
				k := r.Cases[0]
				if k.Plant != "" {
					t.Logf("the symlink could not be planted (%s); the calls were made anyway", k.Plant)
				}
				t.Logf("create: %s; destroy: %s", describe(k.Create), describe(k.Destroy))
				if len(k.Landed) > 0 {
					t.Errorf("S6: CreateOverlay(%q) with subcontainers/%s -> %q mounted an overlay over %v", pc.name, pc.name, pc.link, k.Landed)
				}
				if len(k.Left) > 0 {
					t.Errorf("S6: DestroyOverlay(%q) answered %s and left mounted inside the container: %v", pc.name, describe(k.Destroy), k.Left)
				}
				var extra []string
				for m, n := range hostMounts(t, dir) {
					if n > mounts0[m] {
						extra = append(extra, strings.TrimPrefix(m, dir+"/"))
					}
				}
				sort.Strings(extra)
				if len(extra) > 0 {
					t.Errorf("S6: after DestroyOverlay(%q), host mounts left under %s's directory: %v", pc.name, name, extra)
				}
				c.check(t, "S6 ("+pc.name+" -> "+pc.link+")", before)
			})
		}
	}
}

func describe(r result) string {
	if r.OK {
		return "OK"
	}
	return r.Code + ": " + r.Message
}

// TestAttackDiskQuota is S7: a package with limits.disk writes without bound in its
// writable layer and in a volume: it stops at its quota with ENOSPC, the host's free
// space drops by no more than the quota, the victim stays healthy, and inspect shows the
// usage.
func TestAttackDiskQuota(t *testing.T) {
	a := newAttackLab(t)
	const quota = 64 << 20
	mf := filepath.Join(a.dir, "filler.yaml")
	must(t, os.WriteFile(mf, []byte(attackManifest("filler", "limits: {disk: 64Mi}")), 0o644))
	if _, err := hearthctl(t, a.runDir, "container", "create", "filler", "--manifest", mf); err != nil {
		if strings.Contains(err.Error(), "disk") {
			t.Skipf("disk quotas not built yet: the manifest rejects limits.disk (%v)", err)
		}
		t.Fatal(err)
	}
	if _, err := hearthctl(t, a.runDir, "container", "start", "filler"); err != nil {
		t.Fatal(err)
	}
	a.waitDaemons(t, "filler", "sub ready", 30*time.Second, allReady("sub"))
	c := a.watch("filler")
	free := func() int64 {
		var st syscall.Statfs_t
		must(t, syscall.Statfs(a.stateDir, &st))
		return int64(st.Bavail) * st.Bsize
	}
	for _, tc := range []struct {
		where string
		fill  func() (string, error)
		rm    []string
	}{
		{"the writable layer, as the container's root", func() (string, error) {
			return a.asRoot("filler", "fill", "/var/fill", "--max", strconv.Itoa(4*quota))
		}, []string{"rm", "-f", "/var/fill"}},
		{"a volume, from a subcontainer", func() (string, error) {
			out, _, _, err := runTimed(3*time.Minute, filepath.Join(binDir, "hearthctl"), "--run-dir", a.runDir, "--timeout", "170s",
				"exec", "filler", "sub", "--", attackerInSub, "fill", "/data/fill", "--max", strconv.Itoa(4*quota))
			return out, err
		}, []string{"rm", "-f", "/media/hearth/subcontainers/sub/data/fill"}},
	} {
		t.Run(tc.where, func(t *testing.T) {
			before, free0 := c.take(t), free()
			out, err := tc.fill()
			t.Cleanup(func() { a.inside(t, "filler", nil, tc.rm...) })
			if err != nil {
				t.Fatal(err)
			}
			var r struct {
				Bytes int64  `json:"bytes"`
				Errno string `json:"errno"`
				Error string `json:"error"`
			}
			must(t, json.Unmarshal([]byte(out), &r))
			drop := free0 - free()
			t.Logf("wrote %d MiB (%s); host free space dropped %d MiB", r.Bytes>>20, r.Error, drop>>20)
			if r.Bytes > quota || (r.Errno != syscall.ENOSPC.Error() && r.Errno != syscall.EDQUOT.Error()) {
				got := "no error (the attacker stopped there)"
				if r.Error != "" {
					got = r.Error
				}
				t.Errorf("S7: filler wrote %d MiB in %s and got %s; want ENOSPC within its %d MiB quota", r.Bytes>>20, tc.where, got, quota>>20)
			}
			if drop > quota+quota {
				t.Errorf("S7: the host's free space dropped by %d MiB while filler filled %s (quota %d MiB)", drop>>20, tc.where, quota>>20)
			}
			// inspect shows the usage against the limit.
			d := a.inspect(t, "filler").GetDetails()
			if dk := d.GetDisk(); dk.GetError() != "" || dk.GetSizeBytes() <= 0 || dk.GetSizeBytes() > quota || dk.GetUsedBytes() < r.Bytes {
				t.Errorf("S7: container inspect filler shows disk %v after %d MiB written; want the usage against the %d MiB limit", dk, r.Bytes>>20, quota>>20)
			} else {
				t.Logf("inspect: disk %d of %d MiB used", dk.GetUsedBytes()>>20, dk.GetSizeBytes()>>20)
			}
			if l := d.GetLimits().GetDiskBytes(); l != quota {
				t.Errorf("S7: inspect shows a disk limit of %d, want %d", l, quota)
			}
			a.othersAnswer(t, "S7: with filler at its quota")
			if ds := a.daemons(t, a.victim); ds["sub"].GetState().String() != "DAEMON_STATE_READY" {
				t.Errorf("S7: the victim's daemon with filler at its quota: %v", ds["sub"])
			}
			c.check(t, "S7", before)
		})
	}
}

// idRange is one line of a uid_map or gid_map.
type idRange struct{ inside, host, size uint32 }

func idMaps(t *testing.T, pid int, file string) []idRange {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	must(t, err)
	var out []idRange
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		n := [3]uint32{}
		for i := range f {
			v, err := strconv.ParseUint(f[i], 10, 32)
			must(t, err)
			n[i] = uint32(v)
		}
		out = append(out, idRange{n[0], n[1], n[2]})
	}
	return out
}

// TestAttackIDRanges is S8: two running containers have disjoint host uid and gid ranges,
// so that a process escaping one is nobody in the other.
func TestAttackIDRanges(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	names := []string{"one", "two"}
	for _, n := range names {
		if _, err := hearthctl(t, l.runDir, "container", "create", n); err != nil {
			t.Fatal(err)
		}
		if _, err := hearthctl(t, l.runDir, "container", "start", n); err != nil {
			t.Fatal(err)
		}
	}
	pids := map[string]int{}
	for _, n := range names {
		pids[n] = int(l.inspect(t, n).GetContainer().GetInitPid())
	}
	for _, file := range []string{"uid_map", "gid_map"} {
		a, b := idMaps(t, pids["one"], file), idMaps(t, pids["two"], file)
		for _, x := range a {
			for _, y := range b {
				lo, hi := max(x.host, y.host), min(x.host+x.size, y.host+y.size)
				if lo < hi {
					t.Errorf("S8: containers one and two share host ids %d-%d (%s: one maps %d→%d ×%d, two maps %d→%d ×%d)",
						lo, hi-1, file, x.inside, x.host, x.size, y.inside, y.host, y.size)
				}
			}
		}
	}
	if u1, u2 := procUID(t, pids["one"]), procUID(t, pids["two"]); u1 == u2 {
		t.Errorf("S8: both containers' init run as host uid %d", u1)
	}
}

// TestAttackRestartThroughSymlink is a variant of S1 at start-up: the container replaces
// its /media (in its writable layer, which outlives a restart) with a symlink to a host
// tree shaped like it, then is restarted. The host prepares <rootfs>/media/hearth by path
// (shared bind, image mounts, the overlays guestd asks for) and must not do it in the
// host tree the symlink names. Today the container cannot make the swap (overlayfs
// answers EXDEV to renaming a directory of the base layer); this guards that.
func TestAttackRestartThroughSymlink(t *testing.T) {
	a := newAttackLab(t, "evil", "evil2")
	attackers := map[string]attackMode{"evil": attackModes[0], "evil2": attackModes[1]}
	for _, name := range []string{"evil", "evil2"} {
		m := attackers[name]
		a.checkAttacker(t, name)
		t.Run(m.name, func(t *testing.T) {
			c := a.watch(name)
			a.restore(t)
			before := c.take(t)
			out, err := m.run(a, name, "plant", "/media", "--symlink", filepath.Join(a.canaryDir, "media-like"))
			if err != nil {
				// Today overlayfs refuses to rename a directory of the lower layer (EXDEV).
				t.Logf("the container could not replace /media, so there is nothing to restart through: %v", err)
				return
			}
			t.Log(strings.TrimSpace(out))
			if _, err := hearthctl(t, a.runDir, "container", "stop", name); err != nil {
				t.Fatal(err)
			}
			_, _, took, err := runTimed(60*time.Second, filepath.Join(binDir, "hearthctl"), "--run-dir", a.runDir, "--timeout", "50s", "container", "start", name)
			t.Logf("restart with /media -> %s: %v after %v", filepath.Join(a.canaryDir, "media-like"), err, took.Round(time.Millisecond))
			if err == nil {
				// guestd asks for its overlays at once.
				a.waitDaemons(t, name, "sub ready", 30*time.Second, allReady("sub"))
			}
			c.check(t, "a restart with /media -> "+filepath.Join(a.canaryDir, "media-like")+" (planted as "+m.name+")", before)
			a.othersAnswer(t, "after "+name+" restarted through a planted /media")
			hearthctl(t, a.runDir, "container", "stop", name)
		})
	}
}

// startCLD starts containerd-lite again on the lab and reports, instead of failing, when
// it does not come up.
func (l *lab) startCLD(t *testing.T) error {
	t.Helper()
	d := &daemonProc{name: "containerd-lite", socket: filepath.Join(l.runDir, "containerd-lite.sock"), log: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(filepath.Join(binDir, "containerd-lite"), "--socket", d.socket, "--log-level", "debug",
		"--run-dir", l.runDir, "--state-dir", l.stateDir, "--base-rootfs", baseRootfs)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		return err
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	l.cld = d
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := d.healthy()
		if err == nil {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("containerd-lite exited (%v):\n%s", d.cmd.ProcessState, lastLines(d.log.String(), 6))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop(syscall.SIGKILL)
			return fmt.Errorf("containerd-lite not SERVING after 15s (%v):\n%s", err, lastLines(d.log.String(), 6))
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// restartCLD stops containerd-lite and starts it again; when it does not come up, the
// error says why, and repair (the host removing what the attacker planted) runs before
// a second start.
func (a *attackLab) restartCLD(t *testing.T, repair func()) error {
	t.Helper()
	a.cld.stop(syscall.SIGTERM)
	err := a.startCLD(t)
	if err != nil {
		repair()
		if err2 := a.startCLD(t); err2 != nil {
			t.Fatalf("containerd-lite does not start even after the repair: %v", err2)
		}
	}
	return err
}

// TestAttackHostSocketRace is S9: while containerd-lite restarts and recreates the
// container's host.sock, the container swaps what the host creates for symlinks to host
// files, or leaves a symlink, a file, a directory or a live socket of its own at
// host.sock. Host files keep their modes and owners, and containerd-lite starts.
func TestAttackHostSocketRace(t *testing.T) {
	a := newAttackLab(t, "evil")
	a.checkAttacker(t, "evil")
	c := a.watch("evil")
	rpc := filepath.Join(a.stateDir, "containers", "evil", "rpc")
	// repair removes what is not a socket at evil's host.sock, from the host.
	repair := func() {
		if fi, err := os.Lstat(filepath.Join(rpc, "host.sock")); err == nil && fi.Mode().Type() != os.ModeSocket {
			os.RemoveAll(filepath.Join(rpc, "host.sock"))
		}
		for _, saved := range []string{"host.sock.attacker-saved"} {
			os.RemoveAll(filepath.Join(rpc, saved))
		}
	}
	// Every case starts with containerd-lite serving (a case that failed may have left it down).
	ensure := func(t *testing.T) {
		t.Helper()
		if a.cld.healthy() == nil {
			return
		}
		repair()
		if err := a.startCLD(t); err != nil {
			t.Fatalf("containerd-lite does not start after the repair: %v", err)
		}
	}
	for _, tc := range []struct {
		target string
		args   []string
	}{
		{"race-target", nil},
		{"race-target-exec", []string{"--final"}},
	} {
		t.Run("race for "+tc.target, func(t *testing.T) {
			ensure(t)
			a.restore(t)
			before := c.take(t)
			target := filepath.Join(a.canaryDir, tc.target)
			b := a.attackerBG(t, "evil", append([]string{"race-hostsock", "--target", target, "--seconds", "60s"}, tc.args...)...)
			if l, err := b.line(20 * time.Second); err != nil {
				t.Fatalf("the attacker does not watch: %v", err)
			} else {
				t.Logf("attacker: %s", l)
			}
			var failures []string
			for i := 0; i < 6; i++ {
				if err := a.restartCLD(t, repair); err != nil {
					failures = append(failures, fmt.Sprintf("restart %d: %v", i+1, err))
				}
			}
			b.stop(10 * time.Second)
			if l, err := b.line(5 * time.Second); err == nil {
				t.Logf("attacker: %s", l)
			}
			if len(failures) > 0 {
				t.Errorf("S9: containerd-lite did not start while evil raced for its host.sock (%d of 6 restarts):\n%s", len(failures), strings.Join(failures, "\n"))
			}
			repair()
			c.check(t, "S9 (race for "+tc.target+" during 6 restarts)", before)
		})
	}
	// Where host.sock is today, and where it moves (a host-owned directory).
	oldSock, newSock := rpcInside+"/host.sock", "/media/hearth/host/host.sock"
	for _, v := range []struct {
		what, at string
		plant    []string
	}{
		{"a symlink to a host file", oldSock, []string{"--symlink", filepath.Join(a.canaryDir, "race-target")}},
		{"a symlink to a host directory", oldSock, []string{"--symlink", filepath.Join(a.canaryDir, "empty-dir")}},
		{"a regular file", oldSock, []string{"--file"}},
		{"a directory", oldSock, []string{"--dir"}},
		{"a socket of its own", oldSock, []string{"--socket"}},
		{"a symlink to a host file", newSock, []string{"--symlink", filepath.Join(a.canaryDir, "race-target")}},
		{"a socket of its own", newSock, []string{"--socket"}},
	} {
		t.Run(strings.TrimPrefix(v.at, "/media/hearth/")+" replaced by "+v.what, func(t *testing.T) {
			// From a clean host.sock: restarted with no attacker at work.
			ensure(t)
			repair()
			if err := a.restartCLD(t, repair); err != nil {
				t.Fatalf("containerd-lite does not restart cleanly: %v", err)
			}
			a.restore(t)
			before := c.take(t)
			fix := repair
			if v.plant[0] == "--socket" {
				b := a.attackerBG(t, "evil", "plant", v.at, "--socket", "--hold", "1m")
				if l, err := b.line(20 * time.Second); err != nil {
					t.Logf("could not plant (the host may have refused it): %v", err)
				} else {
					t.Log(l)
				}
				// The host cannot close the attacker's socket; ending the attacker does.
				fix = func() { b.stop(10 * time.Second); repair() }
				defer b.stop(10 * time.Second)
			} else if out, err := a.asRoot("evil", append([]string{"plant", v.at}, v.plant...)...); err != nil {
				t.Logf("could not plant (the host may have refused it): %v", err)
			} else {
				t.Log(strings.TrimSpace(out))
			}
			if err := a.restartCLD(t, fix); err != nil {
				t.Errorf("S9: with %s at evil's %s, containerd-lite does not start, for any container: %v", v.what, v.at, err)
			}
			a.othersAnswer(t, "S9: after a restart with "+v.what+" at evil's "+v.at)
			c.check(t, "S9 ("+v.at+" replaced by "+v.what+")", before)
			repair()
		})
	}
}
