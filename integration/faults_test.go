package integration

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"hearth.dev/internal/dial"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
)

// The fault suite: what a home server must survive. TestFaults runs ten busybox packages
// (three of them a dependency chain) under real containerd-lite, netd and certd, and
// puts them through kill -9 of each host daemon, a power cut and a memory and a fork bomb;
// TestFaultsDiskFull fills the state directory's file system.

// faultChain is the dependency chain among the fault suite's packages: each depends on the
// one before it (on its interface web).
var faultChain = []string{"f-base", "f-mid", "f-top"}

// faultPackages are the ten packages TestFaults runs.
var faultPackages = append([]string{"f0", "f1", "f2", "f3", "f4", "f5", "f6"}, faultChain...)

// faultLab is an edge lab running the fault suite's packages.
type faultLab struct {
	*edgeLab
	ex string
}

// newFaultLab starts containerd-lite, netd and certd and installs the ten packages, two at
// a time (the chain in its order).
func newFaultLab(t *testing.T) *faultLab {
	t.Helper()
	l, ex := installLab(t, "busybox")
	f := &faultLab{edgeLab: newEdgeLab(t, l, nil), ex: ex}
	t0 := time.Now()
	files := map[string]string{}
	for _, id := range faultPackages {
		var more [][2]string
		if i := slices.Index(faultChain, id); i > 0 {
			more = append(more, [2]string{"interfaces:\n", fmt.Sprintf("dependencies:\n  %s: {version: \">=1.0\", requires: [web]}\ninterfaces:\n", faultChain[i-1])})
		}
		// Each package writes its id into its page, so a mix-up would show.
		more = append(more, [2]string{`hello from busybox`, "hello from " + id})
		files[id] = busyboxAs(t, l, ex, id, "[lan]", more...)
	}
	t.Logf("packed %d packages in %v", len(files), time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	install := func(id string) error {
		if out, err := hearthctl(t, l.runDir, "--timeout", "3m", "install", files[id]); err != nil {
			return fmt.Errorf("install %s: %v\n%s", id, err, out)
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(faultPackages))
	plain := faultPackages[:len(faultPackages)-len(faultChain)]
	sem := make(chan struct{}, 2)
	for _, id := range plain {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- install(id)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, id := range faultChain {
			sem <- struct{}{}
			err := install(id)
			<-sem
			errs <- err
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range faultPackages {
		l.waitDaemons(t, id, "ready", time.Minute, settledJobs)
	}
	t.Logf("installed %d packages in %v", len(faultPackages), time.Since(t0).Round(time.Millisecond))
	return f
}

// daemonRun is what identifies one run of a daemon: a restart changes it.
type daemonRun struct {
	Pid       int32
	Restarts  uint32
	StartedAt string
}

// faultState is what must survive a host daemon's death: the packages, their bindings,
// netd's ruleset, and each package's container and daemons still on the same run.
type faultState struct {
	Packages  string
	Addresses map[string]string
	Ruleset   string
	Inits     map[string]int32
	Daemons   map[string]map[string]daemonRun
}

func (f *faultLab) state(t *testing.T) faultState {
	t.Helper()
	s := faultState{Addresses: map[string]string{}, Inits: map[string]int32{}, Daemons: map[string]map[string]daemonRun{}, Ruleset: f.ruleset(t)}
	out, err := hearthctl(t, f.runDir, "-o", "json", "ls")
	if err != nil {
		t.Fatal(err)
	}
	s.Packages = out
	for _, id := range faultPackages {
		out, err := hearthctl(t, f.runDir, "-o", "json", "addresses", id)
		if err != nil {
			t.Fatal(err)
		}
		s.Addresses[id] = out
		s.Inits[id] = f.inspect(t, id).GetContainer().GetInitPid()
		s.Daemons[id] = map[string]daemonRun{}
		for name, d := range f.daemons(t, id) {
			s.Daemons[id][name] = daemonRun{Pid: d.GetPid(), Restarts: d.GetRestarts(), StartedAt: d.GetStartedAt().AsTime().String()}
		}
	}
	return s
}

// answers fetches every package's page from inside the package from, by its internal
// name through netd's DNS and bridge: each must answer with its own.
func (f *faultLab) answers(t *testing.T, from string) {
	t.Helper()
	var script strings.Builder
	for _, id := range faultPackages {
		fmt.Fprintf(&script, "echo %s: $(timeout 5 wget -qO- http://%s.hearth.internal:8080/);", id, id)
	}
	out, err := hearthctl(t, f.runDir, "exec", from, "web", "--", "sh", "-c", script.String())
	if err != nil {
		t.Fatalf("fetch the pages from %s: %v", from, err)
	}
	for _, id := range faultPackages {
		if !strings.Contains(out, id+": hello from "+id+" ") {
			t.Errorf("%s's page fetched from %s: not in\n%s", id, from, out)
		}
	}
}

// TestFaults: ten packages run; each host daemon in turn is killed with kill -9 and
// started again, and no package notices; then a power cut.
func TestFaults(t *testing.T) {
	f := newFaultLab(t)

	t.Run("kill -9 each host daemon", func(t *testing.T) {
		before := f.state(t)
		if len(before.Ruleset) == 0 || !strings.Contains(before.Packages, "running") {
			t.Fatalf("nothing to compare: %+v", before)
		}
		t.Logf("before: f0's bindings %s, daemons %v; the ruleset %d lines", strings.Join(strings.Fields(before.Addresses["f0"]), " "), before.Daemons["f0"], strings.Count(before.Ruleset, "\n"))
		for _, d := range []struct {
			name  string
			proc  func() *daemonProc
			start func(t *testing.T)
		}{
			{"containerd-lite", func() *daemonProc { return f.cld }, func(t *testing.T) { f.lab.start(t) }},
			{"netd", func() *daemonProc { return f.netd }, f.startNetd},
			{"certd", func() *daemonProc { return f.certd }, f.startCertd},
		} {
			p := d.proc()
			pid := p.cmd.Process.Pid
			p.stop(syscall.SIGKILL)
			if err := syscall.Kill(pid, 0); err == nil {
				t.Fatalf("%s (pid %d) still alive after kill -9", d.name, pid)
			}
			t0 := time.Now()
			d.start(t)
			t.Logf("%s: killed (pid %d), SERVING again %v after its start", d.name, pid, time.Since(t0).Round(time.Millisecond))
			after := f.state(t)
			if diff := jsonDiff(before, after); diff != "" {
				t.Errorf("after kill -9 of %s, the state changed:\n%s", d.name, diff)
			}
			f.answers(t, "f0")
		}
	})

	t.Run("power cut", func(t *testing.T) { f.powerCut(t) })
	t.Run("bombs", func(t *testing.T) { f.bombs(t) })
}

// powerCut: data is written with fsync into two packages' volumes; then everything dies
// at once (the host daemons, every process of every container, the LXC monitors) and
// what the kernel would forget goes too (netd's bridge and nftables table, the lab's
// mounts). Started again, the daemons bring every package back, the chain in its
// dependency order, with the data intact.
func (f *faultLab) powerCut(t *testing.T) {
	sums := map[string]string{}
	for _, id := range []string{"f0", "f-top"} {
		out, err := hearthctl(t, f.runDir, "exec", id, "web", "--", "sh", "-c",
			"dd if=/dev/urandom of=/www/blob bs=64k count=16 conv=fsync 2>/dev/null && sha256sum /www/blob")
		if err != nil || len(strings.Fields(out)) != 2 {
			t.Fatalf("write with fsync in %s: %q %v", id, out, err)
		}
		sums[id] = out
	}
	before := f.state(t)
	packages := func() []string {
		ls := &containerv1.ListPackagesResponse{}
		hearthctlJSON(t, f.runDir, ls, "ls")
		var out []string
		for _, p := range ls.GetPackages() {
			out = append(out, p.GetId()+" "+p.GetVersion()+" "+p.GetState())
		}
		sort.Strings(out)
		return out
	}
	pkgs := packages()

	for _, d := range []*daemonProc{f.cld, f.netd, f.certd} {
		d.stop(syscall.SIGKILL)
	}
	f.killPowerCut(t)
	waitFor(t, "the containers gone after the power cut", 30*time.Second, func() bool {
		o, _ := run(t, "lxc-ls", "-P", f.lxcPath(), "--running")
		return strings.TrimSpace(o) == ""
	})
	// What the kernel forgets.
	for _, args := range [][]string{{"ip", "link", "del", f.br[1]}, {"nft", "delete", "table", "inet", f.br[1]}} {
		if out, err := run(t, args[0], args[1:]...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	m := mountsUnder(t, f.dir)
	for i := len(m) - 1; i >= 0; i-- {
		if out, err := run(t, "umount", "-l", m[i]); err != nil {
			t.Fatalf("umount %s: %v\n%s", m[i], err, out)
		}
	}
	t.Logf("power cut: %d mounts dropped", len(m))

	t0 := time.Now()
	f.startCertd(t)
	f.startNetd(t)
	f.lab.start(t)
	t.Logf("the host daemons SERVING %v after the first started", time.Since(t0).Round(time.Millisecond))
	waitFor(t, "every package running again after the power cut", 2*time.Minute, func() bool {
		return slices.Equal(packages(), pkgs)
	})
	for _, id := range faultPackages {
		f.waitDaemons(t, id, "ready", time.Minute, allReady("web"))
	}
	t.Logf("all %d packages running and ready %v after the first daemon started", len(faultPackages), time.Since(t0).Round(time.Millisecond))

	// The chain in its order: each started once the one it depends on was ready.
	var started []string
	for _, line := range strings.Split(f.cld.log.String(), "\n") {
		if strings.Contains(line, "dependencies are there: starting the package") {
			for _, id := range faultPackages {
				if strings.Contains(line, "package="+id+" ") {
					started = append(started, id)
				}
			}
		}
	}
	if len(started) != len(faultPackages) {
		t.Errorf("start-up started %v; want every package once", started)
	}
	for i := 1; i < len(faultChain); i++ {
		if slices.Index(started, faultChain[i-1]) > slices.Index(started, faultChain[i]) {
			t.Errorf("start-up started %v: %s before %s, which it depends on", started, faultChain[i], faultChain[i-1])
		}
		dep, web := f.daemons(t, faultChain[i-1])["web"], f.daemons(t, faultChain[i])["web"]
		if !web.GetStartedAt().AsTime().After(dep.GetStartedAt().AsTime()) {
			t.Errorf("%s's web started at %v, not after %s's (%v)", faultChain[i], web.GetStartedAt().AsTime(), faultChain[i-1], dep.GetStartedAt().AsTime())
		}
	}
	t.Logf("start-up order: %v", started)

	for id, sum := range sums {
		out, err := hearthctl(t, f.runDir, "exec", id, "web", "--", "sha256sum", "/www/blob")
		if err != nil || out != sum {
			t.Errorf("%s's data written with fsync before the cut: %q %v, want %q", id, out, err, sum)
		}
	}
	after := f.state(t)
	if diff := jsonDiff(before.Addresses, after.Addresses); diff != "" {
		t.Errorf("the bindings changed across the power cut:\n%s", diff)
	}
	f.answers(t, "f-top")
}

// bombHog waits for /www/go in its volume, then does what the bomb does.
func bombPackage(t *testing.T, f *faultLab, id, hog string) string {
	t.Helper()
	cmd := "while [ ! -f /www/go ]; do sleep 0.2; done; " + hog
	return busyboxAs(t, f.lab, f.ex, id, "[lan]", [2]string{"daemons:\n", fmt.Sprintf(`daemons:
  hog:
    image: bb
    command: [/bin/sh, -c, %q]
    mounts: [{volume: www, path: /www}]
`, cmd)})
}

// probe asks the host daemons' health services and, in turn, the ten packages' guestd
// (through containerd-lite) for their status, one call after another, until stop is
// closed; it reports the slowest answer of each and what failed.
type probe struct {
	mu      sync.Mutex
	slowest map[string]time.Duration
	calls   int
	errs    []string
	stop    chan struct{}
	done    chan struct{}
}

func (f *faultLab) startProbe(t *testing.T) *probe {
	t.Helper()
	conn, err := dial.Unix(f.cld.socket)
	if err != nil {
		t.Fatal(err)
	}
	guest := guestv1.NewGuestServiceClient(conn)
	p := &probe{slowest: map[string]time.Duration{}, stop: make(chan struct{}), done: make(chan struct{})}
	sockets := map[string]string{"containerd-lite": f.cld.socket, "netd": f.netd.socket, "certd": f.certd.socket}
	record := func(what string, d time.Duration, err error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.calls++
		if d > p.slowest[what] {
			p.slowest[what] = d
		}
		if err != nil {
			p.errs = append(p.errs, fmt.Sprintf("%s: %v (after %v)", what, err, d))
		}
	}
	go func() {
		defer close(p.done)
		defer conn.Close()
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, name := range slices.Sorted(maps.Keys(sockets)) {
				t0 := time.Now()
				err := healthCheck(sockets[name], 5*time.Second)
				record(name, time.Since(t0), err)
			}
			id := faultPackages[i%len(faultPackages)]
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "hearth-container", id), 5*time.Second)
			t0 := time.Now()
			st, err := guest.GetStatus(ctx, &guestv1.GetStatusRequest{})
			cancel()
			if err == nil && len(st.GetDaemons()) == 0 {
				err = fmt.Errorf("no daemons")
			}
			record("guestd of a package", time.Since(t0), err)
		}
	}()
	return p
}

// end stops the probe and fails t if a call failed or took longer than limit.
func (p *probe) end(t *testing.T, during string, limit time.Duration) {
	t.Helper()
	close(p.stop)
	<-p.done
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(p.slowest)) {
		parts = append(parts, fmt.Sprintf("%s %v", k, p.slowest[k].Round(time.Millisecond)))
		if p.slowest[k] > limit {
			t.Errorf("during %s, %s took %v to answer (limit %v)", during, k, p.slowest[k], limit)
		}
	}
	t.Logf("during %s: %d calls; the slowest answers: %s", during, p.calls, strings.Join(parts, ", "))
	for _, e := range p.errs {
		t.Errorf("during %s: %s", during, e)
	}
}

// cgroup reads one file of a running container's cgroup.
func (f *faultLab) cgroup(t *testing.T, id, item string) string {
	t.Helper()
	out, err := run(t, "lxc-cgroup", "-P", f.lxcPath(), "-n", id, item)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// bombs: a package that allocates without bound is OOM-killed inside its own memory
// limit, again and again; one that forks without bound stops at its own pids limit. The
// ten packages and the host daemons keep answering throughout, their daemons untouched.
func (f *faultLab) bombs(t *testing.T) {
	mem := bombPackage(t, f, "f-mem", "x=0123456789abcdef; while :; do x=$x$x; done")
	fork := bombPackage(t, f, "f-fork", "while :; do sleep 600 & done")
	for _, p := range []string{mem, fork} {
		if out, err := hearthctl(t, f.runDir, "--timeout", "3m", "install", p); err != nil {
			t.Fatalf("install %s: %v\n%s", p, err, out)
		}
	}
	before := f.state(t)
	trigger := func(id string) time.Time {
		if _, err := hearthctl(t, f.runDir, "exec", id, "web", "--", "touch", "/www/go"); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	oomKills := func() int {
		for _, line := range strings.Split(f.cgroup(t, "f-mem", "memory.oom_control"), "\n") {
			if n, ok := strings.CutPrefix(line, "oom_kill "); ok {
				return atoi(n)
			}
		}
		t.Fatal("memory.oom_control has no oom_kill line")
		return 0
	}

	t.Run("memory", func(t *testing.T) {
		p := f.startProbe(t)
		t0 := trigger("f-mem")
		var hog *guestv1.Daemon
		waitFor(t, "the memory hog OOM-killed and restarted twice", time.Minute, func() bool {
			hog = f.daemons(t, "f-mem")["hog"]
			return hog.GetRestarts() >= 2 && oomKills() >= 2
		})
		took := time.Since(t0)
		p.end(t, "the memory bomb", 3*time.Second)
		t.Logf("memory bomb: %d OOM kills and %d restarts of the hog in %v; its last exit %v; the container's peak %s bytes of %s",
			oomKills(), hog.GetRestarts(), took.Round(time.Millisecond), hog.GetLastExit(),
			f.cgroup(t, "f-mem", "memory.max_usage_in_bytes"), f.cgroup(t, "f-mem", "memory.limit_in_bytes"))
		if hog.GetLastExit().GetSignal() != "killed" && hog.GetLastExit().GetSignal() != "SIGKILL" {
			t.Errorf("the hog's last exit: %v; want killed by SIGKILL", hog.GetLastExit())
		}
		if web := f.daemons(t, "f-mem")["web"]; web.GetRestarts() != 0 || web.GetState() != guestv1.DaemonState_DAEMON_STATE_READY {
			t.Errorf("the bomb package's own web daemon: %v; the OOM killer should take the hog", web)
		}
	})
	t.Run("fork", func(t *testing.T) {
		p := f.startProbe(t)
		t0 := trigger("f-fork")
		limit := f.cgroup(t, "f-fork", "pids.max")
		refused := func() int { return atoi(strings.TrimPrefix(f.cgroup(t, "f-fork", "pids.events"), "max ")) }
		waitFor(t, "the fork bomb refused a fork at its pids limit", time.Minute, func() bool { return refused() > 0 })
		took := time.Since(t0)
		// Its shell gives up when a fork fails; what it forked goes with it, and it is
		// restarted (to bomb again: it goes on).
		waitFor(t, "the fork bomb restarted", 20*time.Second, func() bool { return f.daemons(t, "f-fork")["hog"].GetRestarts() >= 1 })
		time.Sleep(2 * time.Second)
		p.end(t, "the fork bomb", 3*time.Second)
		t.Logf("fork bomb: a fork refused at its limit of %s pids %v after the trigger; %v after it, %s pids, %d forks refused, %d restarts",
			limit, took.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), f.cgroup(t, "f-fork", "pids.current"), refused(),
			f.daemons(t, "f-fork")["hog"].GetRestarts())
	})
	// The bombs go; the others never noticed.
	for _, id := range []string{"f-mem", "f-fork"} {
		t0 := time.Now()
		if out, err := hearthctl(t, f.runDir, "uninstall", "--purge", id); err != nil {
			t.Errorf("uninstall %s: %v\n%s", id, err, out)
		}
		took := time.Since(t0)
		t.Logf("%s uninstalled in %v", id, took.Round(time.Millisecond))
		if took > 10*time.Second {
			t.Errorf("%s took %v to uninstall: it did not stop when asked", id, took)
		}
	}
	after := f.state(t)
	if diff := jsonDiff([]any{before.Inits, before.Daemons}, []any{after.Inits, after.Daemons}); diff != "" {
		t.Errorf("the bombs touched the other packages:\n%s", diff)
	}
	f.answers(t, "f0")
}
