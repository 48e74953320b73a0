package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
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

// The density benchmark: N busybox packages installed and running on one host, with
// containerd-lite, netd and certd. It runs only when HEARTH_BENCH_DENSITY is N (make bench
// sets it: BENCH_DENSITY, 100 by default), once (-benchtime 1x), and prints a table and
// one "DENSITY n=N NAME VALUE" line per figure (NAME ends with the unit).

// densityRestarts is how many times containerd-lite is restarted at N (the median is shown).
const densityRestarts = 3

// densityBudget bounds the whole run: past it the benchmark fails rather than hold the
// machine (HEARTH_BENCH_DENSITY_BUDGET, a Go duration, changes it).
const densityBudget = 15 * time.Minute

// densityLab is a lab with certd and netd, and clients on containerd-lite.
type densityLab struct {
	*lab
	certd    *daemonProc
	bridge   string
	cl       containerv1.ContainerServiceClient
	guest    guestv1.GuestServiceClient
	deadline time.Time
	figures  []densityFigure
	load     string // the load average when the run began
}

// densityFigure is one line of the table.
type densityFigure struct {
	key, label, unit string
	value            float64
}

func (d *densityLab) add(key, label, unit string, v float64) {
	d.figures = append(d.figures, densityFigure{key, label, unit, v})
}

// BenchmarkDensity installs N busybox packages (the example, repacked under N ids) one
// after the other and measures: the install times (p50, p99); each service's memory (its
// container's cgroup, guestd's init + serving PSS, its LXC monitor's PSS) at N=1 and at N;
// the host daemons' RSS at N; containerd-lite's restart to SERVING at N (all containers
// keep running); stopping and starting all N, with sequential hearthctl calls and with
// all calls at once, and with one hearthctl start --all; the uninstalls (--purge).
// It is one run whatever b.N: run it with -benchtime 1x.
func BenchmarkDensity(b *testing.B) {
	n := densityN(b)
	requireRoot(b)
	budget := densityBudget
	if v := os.Getenv("HEARTH_BENCH_DENSITY_BUDGET"); v != "" {
		var err error
		if budget, err = time.ParseDuration(v); err != nil {
			b.Fatalf("HEARTH_BENCH_DENSITY_BUDGET=%q: give a duration such as 15m: %v", v, err)
		}
	}
	begun := time.Now()
	d := newDensityLab(b, begun.Add(budget))
	d.load = loadAverage()
	ex := examplePackages(b, "busybox")
	if _, err := hearthctl(b, d.runDir, "keys", "trust", filepath.Join(ex, "dev.pub")); err != nil {
		b.Fatal(err)
	}
	ids, files := d.repack(b, ex, n)
	b.Logf("repacked %d packages in %v", n, time.Since(begun).Round(time.Millisecond))
	// Whatever happens, every package is uninstalled with its data (the lab then
	// removes any container left, and stops the daemons).
	installed := map[string]bool{}
	b.Cleanup(func() {
		for _, id := range ids {
			if installed[id] {
				hearthctl(b, d.runDir, "uninstall", "--purge", id)
			}
		}
	})
	b.ResetTimer()

	// Installs, one after the other: each from the file to its daemon ready.
	var installs []time.Duration
	for i, id := range ids {
		d.checkBudget(b, "installing "+id)
		t0 := time.Now()
		if _, err := hearthctl(b, d.runDir, "install", files[i]); err != nil {
			b.Fatalf("install %d of %d (%s): %v", i+1, n, id, err)
		}
		installs = append(installs, time.Since(t0))
		installed[id] = true
		if i == 0 {
			// One service alone: the memory of a service with nothing else running, once
			// idle (as the N services are when they are measured): its install's last
			// calls are a few seconds behind it, as its checks are.
			time.Sleep(3 * time.Second)
			d.memory(b, ids[:1], "n1", "N=1")
		}
	}
	p50, p99 := quantiles(installs)
	d.add("install-p50-ms", fmt.Sprintf("install, per package (p50 of %d)", n), "ms", ms(p50))
	d.add("install-p99-ms", fmt.Sprintf("install, per package (p99 of %d)", n), "ms", ms(p99))
	d.add("install-all-s", fmt.Sprintf("install of all %d, one after the other", n), "s", sum(installs).Seconds())
	d.waitReady(b, ids)

	pids := d.initPIDs(b, ids)
	waitKSM(b)
	d.memory(b, ids, "nN", fmt.Sprintf("N=%d, per service", n))
	// What N services cost the host while nobody uses them: their health checks, guestd's
	// timers, the daemons' own.
	d.add("idle-cpu-pct", fmt.Sprintf("host CPU busy with %d services idle (%% of one CPU, over 5 s)", n), "%", idleCPU(b, 5*time.Second))
	for _, p := range []*daemonProc{d.cld, d.netd, d.certd} {
		d.add(p.name+"-rss-MiB", fmt.Sprintf("%s RSS at N=%d", p.name, n), "MiB", kib(procStatusKiB(b, p.cmd.Process.Pid, "VmRSS:")))
	}

	// containerd-lite restarts: from its start to SERVING (its health check), the
	// containers untouched.
	var restarts []time.Duration
	for i := 0; i < densityRestarts; i++ {
		d.checkBudget(b, "restarting containerd-lite")
		d.cld.stop(syscall.SIGTERM)
		t0 := time.Now()
		d.start(b)
		restarts = append(restarts, time.Since(t0))
		d.dial(b)
	}
	if after := d.initPIDs(b, ids); !equalPIDs(pids, after) {
		b.Fatalf("containers restarted with containerd-lite: init PIDs before %v, after %v", pids, after)
	}
	d.add("cld-restart-serving-ms", fmt.Sprintf("containerd-lite restart to SERVING at N=%d (median of %d)", n, densityRestarts), "ms", ms(median(restarts)))

	// Stop all and start all: hearthctl stop/start ID, one after the other, then all
	// at once (one hearthctl per package, in parallel), then with one start --all. Start
	// counts until every package's daemon is ready.
	for _, mode := range []struct {
		key, label    string
		parallel, all bool
	}{{"seq", "sequential hearthctl", false, false}, {"par", fmt.Sprintf("%d hearthctl at once", n), true, false},
		{"all", "stops at once, then one hearthctl start --all", true, true}} {
		d.checkBudget(b, "stopping all")
		t0 := time.Now()
		d.each(b, ids, mode.parallel, "stop")
		stop := time.Since(t0)
		d.checkStopped(b, ids)
		d.checkBudget(b, "starting all")
		t0 = time.Now()
		cpu0 := busyCPU(b)
		if mode.all {
			if out, err := hearthctl(b, d.runDir, "--timeout", "10m", "start", "--all"); err != nil {
				b.Fatalf("start --all: %v\n%s", err, out)
			}
		} else {
			d.each(b, ids, mode.parallel, "start")
		}
		d.waitReady(b, ids)
		start := time.Since(t0)
		cpu := busyCPU(b) - cpu0
		// The window, on the wall clock, for a profile of the run (perf record -k realtime).
		b.Logf("start all (%s): %.6f to %.6f", mode.label, float64(t0.UnixNano())/1e9, float64(time.Now().UnixNano())/1e9)
		d.add("stop-all-"+mode.key+"-s", fmt.Sprintf("stop all %d (%s)", n, mode.label), "s", stop.Seconds())
		d.add("start-all-"+mode.key+"-s", fmt.Sprintf("start all %d to ready (%s)", n, mode.label), "s", start.Seconds())
		// The host's CPU busy while they start, every process and the kernel: less noisy
		// than the wall clock on a shared machine, and what a change of the start's work shows.
		d.add("start-all-"+mode.key+"-cpu-s", fmt.Sprintf("host CPU busy while starting all %d (%s)", n, mode.label), "s", cpu)
	}

	// Uninstalls with their data, one after the other.
	var uninstalls []time.Duration
	for _, id := range ids {
		d.checkBudget(b, "uninstalling "+id)
		t0 := time.Now()
		if _, err := hearthctl(b, d.runDir, "uninstall", "--purge", id); err != nil {
			b.Fatalf("uninstall --purge %s: %v", id, err)
		}
		uninstalls = append(uninstalls, time.Since(t0))
		delete(installed, id)
	}
	b.StopTimer()
	p50, p99 = quantiles(uninstalls)
	d.add("uninstall-p50-ms", fmt.Sprintf("uninstall --purge, per package (p50 of %d)", n), "ms", ms(p50))
	d.add("uninstall-p99-ms", fmt.Sprintf("uninstall --purge, per package (p99 of %d)", n), "ms", ms(p99))
	d.add("total-s", "whole run, repacking included", "s", time.Since(begun).Seconds())
	if out, err := hearthctl(b, d.runDir, "container", "ls"); err != nil || len(strings.Split(strings.TrimSpace(out), "\n")) > 1 {
		b.Errorf("containers left after uninstalling all: %v\n%s", err, out)
	}
	d.report(b, n)
}

// densityN is HEARTH_BENCH_DENSITY: the number of packages; the benchmark is skipped
// without it.
func densityN(b *testing.B) int {
	v := os.Getenv("HEARTH_BENCH_DENSITY")
	if v == "" || v == "0" {
		b.Skip("set HEARTH_BENCH_DENSITY=N to install and run N packages (make bench does: BENCH_DENSITY, 100 by default)")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 999 {
		b.Fatalf("HEARTH_BENCH_DENSITY=%q: give a number of packages from 1 to 999", v)
	}
	return n
}

// newDensityLab starts containerd-lite, certd and netd; netd's bridge has a /16 of its
// own (room for every container), no LAN names and its proxy on the bridge's gateway (ports
// of its own: another netd may hold the wildcard 443 and 80).
func newDensityLab(b *testing.B, deadline time.Time) *densityLab {
	const gw = "10.232.0.1"
	if out, _ := run(b, "ip", "-4", "-o", "addr"); strings.Contains(out, " 10.232.") {
		b.Fatalf("10.232.0.0/16 is in use on this machine: the density bench's bridge needs it\n%s", out)
	}
	bridge := fmt.Sprintf("hden%d", os.Getpid()%10000)
	b.Cleanup(func() { // last, once netd is stopped
		exec.Command("ip", "link", "del", bridge).Run()
		exec.Command("nft", "delete", "table", "inet", bridge).Run()
	})
	l := newLab(b)
	d := &densityLab{lab: l, bridge: bridge, deadline: deadline}
	d.certd = startDaemon(b, "certd", filepath.Join(l.runDir, "certd.sock"),
		"--run-dir", l.runDir, "--state-dir", filepath.Join(l.dir, "certd"))
	// The lab stops netd (after its containers are gone).
	l.netd = startDaemonOwned(b, nil, "netd", filepath.Join(l.runDir, "netd.sock"),
		"--run-dir", l.runDir, "--state-dir", filepath.Join(l.dir, "netd"),
		"--bridge", d.bridge, "--subnet", "10.232.0.0/16", "--lan-interfaces", "none",
		"--https-addr", gw+":20443", "--http-addr", gw+":20080")
	d.dial(b)
	return d
}

// dial makes the clients on containerd-lite's socket (again after a restart).
func (d *densityLab) dial(b *testing.B) {
	conn, err := dial.Unix(d.cld.socket)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	d.cl, d.guest = containerv1.NewContainerServiceClient(conn), guestv1.NewGuestServiceClient(conn)
}

func (d *densityLab) checkBudget(b *testing.B, doing string) {
	if time.Now().After(d.deadline) {
		b.Fatalf("the density run is over its time budget while %s (HEARTH_BENCH_DENSITY_BUDGET changes it)", doing)
	}
}

// repack packs the busybox example under n ids (d000, d001, ...), signed with the
// examples' key.
func (d *densityLab) repack(b *testing.B, ex string, n int) ([]string, []string) {
	ids, files := make([]string, n), make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("d%03d", i)
		files[i] = repackBusybox(b, d.lab, ex, ids[i]+".hpkg", func(mf []byte) []byte {
			return bytes.Replace(mf, []byte("id: busybox\n"), []byte("id: "+ids[i]+"\n"), 1)
		})
	}
	return ids, files
}

// each runs hearthctl VERB ID for every id, one after the other or all at once.
func (d *densityLab) each(b *testing.B, ids []string, parallel bool, verb string) {
	if !parallel {
		for _, id := range ids {
			if _, err := hearthctl(b, d.runDir, verb, id); err != nil {
				b.Fatalf("%s %s: %v", verb, id, err)
			}
		}
		return
	}
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = hearthctl(b, d.runDir, "--timeout", "10m", verb, id)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			b.Fatalf("%s %s (all at once): %v", verb, ids[i], err)
		}
	}
}

// waitReady waits until the web daemon of every package is ready, as its guestd says.
func (d *densityLab) waitReady(b *testing.B, ids []string) {
	pending := append([]string(nil), ids...)
	for len(pending) > 0 {
		d.checkBudget(b, fmt.Sprintf("waiting for %d packages to be ready (%s first)", len(pending), pending[0]))
		var still []string
		for _, id := range pending {
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "hearth-container", id), 5*time.Second)
			resp, err := d.guest.GetStatus(ctx, &guestv1.GetStatusRequest{})
			cancel()
			ready := false
			for _, dm := range resp.GetDaemons() {
				ready = ready || (dm.GetName() == "web" && dm.GetState() == guestv1.DaemonState_DAEMON_STATE_READY)
			}
			if err != nil || !ready {
				still = append(still, id)
			}
		}
		pending = still
		if len(pending) > 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// checkStopped fails unless every container is stopped.
func (d *densityLab) checkStopped(b *testing.B, ids []string) {
	for _, id := range ids {
		resp, err := d.cl.GetContainer(context.Background(), &containerv1.GetContainerRequest{Name: id})
		if err != nil {
			b.Fatalf("inspect %s: %v", id, err)
		}
		if st := resp.GetContainer().GetState(); st != containerv1.ContainerState_CONTAINER_STATE_STOPPED {
			b.Fatalf("%s is %v after its stop", id, st)
		}
	}
}

// initPIDs is every container's init PID (host view).
func (d *densityLab) initPIDs(b *testing.B, ids []string) []int32 {
	var out []int32
	for _, id := range ids {
		resp, err := d.cl.GetContainer(context.Background(), &containerv1.GetContainerRequest{Name: id})
		if err != nil {
			b.Fatalf("inspect %s: %v", id, err)
		}
		if resp.GetContainer().GetInitPid() <= 0 {
			b.Fatalf("%s has no init: %v", id, resp.GetContainer())
		}
		out = append(out, resp.GetContainer().GetInitPid())
	}
	return out
}

func equalPIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// serviceMemory is one container's memory, KiB.
type serviceMemory struct {
	cgroup, anon, guestd, monitor int64
	maps                          int64 // the serving guestd's mappings
	// init, serving and mon split guestd's init, the serving guestd and the monitor.
	init, serving, mon pss
}

// pss is one process's proportional set size and its anonymous and file-backed parts, KiB.
type pss struct{ total, anon, file int64 }

// memory measures the services of ids (their averages and medians go in the table
// under key; at N=1, the median of three samples a second apart).
func (d *densityLab) memory(b *testing.B, ids []string, key, label string) {
	rounds := 1
	if len(ids) == 1 {
		rounds = 3
	}
	var all []serviceMemory
	for r := 0; r < rounds; r++ {
		if r > 0 {
			time.Sleep(time.Second)
		}
		procs := scanProcs()
		for i, pid := range d.initPIDs(b, ids) {
			all = append(all, d.serviceMemory(b, procs, ids[i], int(pid)))
		}
	}
	for _, f := range []struct {
		name, what string
		get        func(serviceMemory) int64
	}{
		{"overhead-pss", "per-service overhead PSS (guestd init + serving + LXC monitor)", func(m serviceMemory) int64 { return m.guestd + m.monitor }},
		{"cgroup", "container's memory cgroup (usage)", func(m serviceMemory) int64 { return m.cgroup }},
		{"cgroup-anon", "  of which anonymous", func(m serviceMemory) int64 { return m.anon }},
		{"guestd-pss", "guestd PSS (init + serving)", func(m serviceMemory) int64 { return m.guestd }},
		{"init-pss", "  guestd init PSS", func(m serviceMemory) int64 { return m.init.total }},
		{"init-pss-anon", "    anonymous", func(m serviceMemory) int64 { return m.init.anon }},
		{"init-pss-file", "    file-backed", func(m serviceMemory) int64 { return m.init.file }},
		{"serving-pss", "  serving guestd PSS", func(m serviceMemory) int64 { return m.serving.total }},
		{"serving-pss-anon", "    anonymous", func(m serviceMemory) int64 { return m.serving.anon }},
		{"serving-pss-file", "    file-backed", func(m serviceMemory) int64 { return m.serving.file }},
		{"monitor-pss", "LXC monitor PSS", func(m serviceMemory) int64 { return m.monitor }},
		{"monitor-pss-anon", "  anonymous", func(m serviceMemory) int64 { return m.mon.anon }},
		{"monitor-pss-file", "  file-backed", func(m serviceMemory) int64 { return m.mon.file }},
	} {
		var vs []int64
		var total int64
		for _, m := range all {
			vs = append(vs, f.get(m))
			total += f.get(m)
		}
		sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
		if len(ids) == 1 {
			d.add(key+"-"+f.name+"-MiB", f.what+", "+label, "MiB", kib(vs[len(vs)/2]))
			continue
		}
		d.add(key+"-"+f.name+"-avg-MiB", f.what+", "+label+" (average)", "MiB", kib(total/int64(len(vs))))
		d.add(key+"-"+f.name+"-p50-MiB", f.what+", "+label+" (median)", "MiB", kib(vs[len(vs)/2]))
	}
	// Not in any PSS: the kernel keeps ~220 bytes per mapping (in the cgroup's usage).
	var maps []int64
	for _, m := range all {
		maps = append(maps, m.maps)
	}
	slices.Sort(maps)
	d.add(key+"-serving-maps", "serving guestd's mappings (kernel memory, ~220 B each), "+label+" (median)", "", float64(maps[len(maps)/2]))
}

// hostProc is a process as the host sees it.
type hostProc struct {
	pid     int
	name    string
	cgroup  string // its memory cgroup, relative to the hierarchy's root
	cmdline []string
}

// scanProcs lists the host's processes.
func scanProcs() []hostProc {
	var out []hostProc
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p := hostProc{pid: pid, cgroup: memoryCgroup(pid)}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			line, _, _ := strings.Cut(string(st), "\n")
			p.name = strings.TrimSpace(strings.TrimPrefix(line, "Name:"))
		}
		if cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
			p.cmdline = strings.Split(strings.TrimRight(string(cl), "\x00"), "\x00")
		}
		out = append(out, p)
	}
	return out
}

// memoryCgroup is a process's memory cgroup: the memory controller's (cgroup v1) or the
// unified hierarchy's (v2) path.
func memoryCgroup(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	unified := ""
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == "memory" {
				return f[2]
			}
		}
		if f[0] == "0" {
			unified = f[2]
		}
	}
	return unified
}

// cgroupMemoryKiB is a memory cgroup's usage and its anonymous part, KiB: memory.current
// and memory.stat's anon on cgroup v2, memory.usage_in_bytes and total_rss on v1.
func cgroupMemoryKiB(b *testing.B, cg string) (usage, anon int64) {
	dir, usageFile, anonKey := filepath.Join("/sys/fs/cgroup/memory", cg), "memory.usage_in_bytes", "total_rss"
	if _, err := os.Stat(dir); err != nil {
		dir, usageFile, anonKey = filepath.Join("/sys/fs/cgroup", cg), "memory.current", "anon"
	}
	data, err := os.ReadFile(filepath.Join(dir, usageFile))
	if err != nil {
		b.Fatalf("the memory cgroup %s: %v", cg, err)
	}
	usage, _ = strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	stat, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(stat), "\n") {
		if v, ok := strings.CutPrefix(line, anonKey+" "); ok {
			anon, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return usage / 1024, anon / 1024
}

// serviceMemory measures one container: its cgroup is the one LXC made for it
// (lxc.payload.NAME, holding init's); guestd's processes are its init and the serving
// guestd (named guestd, in that cgroup or below: there must be one); its monitor is the
// process "[lxc monitor] LXCPATH NAME". With HEARTH_BENCH_DENSITY_SMAPS=DIR, the smaps of
// the three go to DIR/NAME.{init,serving,monitor}.smaps.
func (d *densityLab) serviceMemory(b *testing.B, procs []hostProc, name string, initPID int) serviceMemory {
	var m serviceMemory
	cg := memoryCgroup(initPID)
	i := strings.Index(cg, "/lxc.payload."+name)
	if i < 0 {
		b.Fatalf("%s's init (PID %d) is in the memory cgroup %q, not in lxc.payload.%s", name, initPID, cg, name)
	}
	cg = cg[:i+len("/lxc.payload."+name)]
	m.cgroup, m.anon = cgroupMemoryKiB(b, cg)
	measure := func(pid int, what string) pss {
		p, err := procPSS(pid)
		if err != nil {
			b.Fatalf("%s's %s: %v", name, what, err)
		}
		if dir := os.Getenv("HEARTH_BENCH_DENSITY_SMAPS"); dir != "" {
			if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid)); err == nil {
				os.WriteFile(filepath.Join(dir, name+"."+what+".smaps"), data, 0o644)
			}
		}
		return p
	}
	m.init = measure(initPID, "init")
	servings := 0
	for _, p := range procs {
		if p.pid != initPID && p.name == "guestd" && (p.cgroup == cg || strings.HasPrefix(p.cgroup, cg+"/")) {
			m.serving = measure(p.pid, "serving")
			m.maps = countMappings(p.pid)
			servings++
		}
		if c := p.cmdline; len(c) > 0 && strings.HasPrefix(c[0], "[lxc monitor]") {
			f := strings.Fields(strings.Join(c, " "))
			if len(f) >= 2 && f[len(f)-1] == name && f[len(f)-2] == d.lxcPath() {
				m.mon = measure(p.pid, "monitor")
			}
		}
	}
	m.guestd, m.monitor = m.init.total+m.serving.total, m.mon.total
	if servings != 1 || m.monitor == 0 {
		b.Fatalf("%s: found %d serving guestd processes (want one) and monitor PSS %d KiB", name, servings, m.monitor)
	}
	return m
}

// countMappings is the number of a process's mappings (0 if it is gone).
func countMappings(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	return int64(bytes.Count(b, []byte("\n")))
}

// pssKiB is a process's proportional set size, KiB (smaps_rollup's Pss).
func pssKiB(pid int) (int64, error) {
	p, err := procPSS(pid)
	return p.total, err
}

// procPSS is a process's proportional set size and its anonymous and file-backed parts
// (smaps_rollup's Pss, Pss_Anon and Pss_File; the parts are 0 on kernels before 5.8).
func procPSS(pid int) (pss, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return pss{}, err
	}
	kb, ok := kiBField(data, "Pss:")
	if !ok {
		return pss{}, fmt.Errorf("PID %d: no Pss in smaps_rollup", pid)
	}
	p := pss{total: kb}
	p.anon, _ = kiBField(data, "Pss_Anon:")
	p.file, _ = kiBField(data, "Pss_File:")
	return p, nil
}

// kiBField is the value of a "Field:   123 kB" line of a /proc file.
func kiBField(data []byte, field string) (int64, bool) {
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb, err == nil
		}
	}
	return 0, false
}

// procStatusKiB is a /proc/PID/status field in KiB (VmRSS:, ...).
func procStatusKiB(b *testing.B, pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	kb, ok := kiBField(data, field)
	if !ok {
		b.Fatalf("PID %d: no %s in its status", pid, field)
	}
	return kb
}

// report prints the table and a DENSITY line per figure, and reports each figure as a
// benchmark metric.
func (d *densityLab) report(b *testing.B, n int) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n== density: %d busybox packages (load average %s at the start, %s at the end) ==\n", n, d.load, loadAverage())
	for _, f := range d.figures {
		fmt.Fprintf(&sb, "%-62s %10.1f %s\n", f.label, f.value, f.unit)
	}
	for _, f := range d.figures {
		fmt.Fprintf(&sb, "DENSITY n=%d %s %.3f\n", n, f.key, f.value)
		b.ReportMetric(f.value, f.key)
	}
	fmt.Print(sb.String())
}

// loadAverage is the host's 1, 5 and 15 minute load averages.
func loadAverage() string {
	data, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

func quantiles(ds []time.Duration) (p50, p99 time.Duration) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}

func median(ds []time.Duration) time.Duration { p50, _ := quantiles(ds); return p50 }

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
func kib(v int64) float64        { return float64(v) / 1024 }

// idleCPU measures the host's busy CPU time over d (every CPU's, from /proc/stat), as a
// percentage of one CPU.
func idleCPU(b *testing.B, d time.Duration) float64 {
	before := busyCPU(b)
	time.Sleep(d)
	return 100 * (busyCPU(b) - before) / d.Seconds()
}

// busyCPU is the CPU time, in seconds over all CPUs, the host has spent busy since it
// booted: all but idle and iowait (guest time is in user already).
func busyCPU(b *testing.B) (s float64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	// cpu user nice system idle iowait irq softirq steal guest guest_nice, in USER_HZ (100).
	f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, _ := strconv.ParseFloat(f[i], 64)
		s += n / 100
	}
	return s
}

// waitKSM waits, when the kernel's same-page merging runs, for two more full scans of
// what was offered to it (a page merges once it was seen unchanged in two scans), at most
// two minutes: the memory then measured is the host's once it has settled.
func waitKSM(b *testing.B) {
	read := func(name string) int {
		v, err := os.ReadFile("/sys/kernel/mm/ksm/" + name)
		if err != nil {
			return -1
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(v)))
		return n
	}
	if read("run") != 1 {
		return
	}
	t0, scans := time.Now(), read("full_scans")
	for read("full_scans") < scans+2 && time.Since(t0) < 2*time.Minute {
		time.Sleep(100 * time.Millisecond)
	}
	b.Logf("KSM: %d full scans in %v; pages shared %d, sharing %d", read("full_scans")-scans, time.Since(t0).Round(time.Millisecond), read("pages_shared"), read("pages_sharing"))
}
