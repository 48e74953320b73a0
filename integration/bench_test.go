package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/dial"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	"hearth.dev/services/containerd-lite/imagetest"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// benchLab starts containerd-lite for a benchmark and returns its clients.
func benchLab(b *testing.B) (*lab, containerv1.ContainerServiceClient, containerv1.ImageServiceClient) {
	requireRoot(b)
	l := newLab(b)
	conn, err := dial.Unix(l.cld.socket)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return l, containerv1.NewContainerServiceClient(conn), containerv1.NewImageServiceClient(conn)
}

// percentiles reports the median and 99th percentile of ds as benchmark metrics.
func percentiles(b *testing.B, prefix string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	p50, p99 := quantiles(ds)
	b.ReportMetric(ms(p50), prefix+"-p50-ms")
	b.ReportMetric(ms(p99), prefix+"-p99-ms")
}

// BenchmarkContainerCreateStartStop measures a container's whole life through
// containerd-lite's API: create, start until guestd answers inside, stop, delete; and
// reports create+start alone.
func BenchmarkContainerCreateStartStop(b *testing.B) {
	l, cl, _ := benchLab(b)
	ctx := context.Background()
	conn, err := dial.Unix(l.cld.socket)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	guest := guestv1.NewGuestServiceClient(conn)
	var up []time.Duration
	tr := startTraces{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("bench%d", i)
		start := time.Now()
		if _, err := cl.CreateContainer(ctx, &containerv1.CreateContainerRequest{Name: name}); err != nil {
			b.Fatal(err)
		}
		created := time.Now()
		resp, err := cl.StartContainer(ctx, &containerv1.StartContainerRequest{Name: name})
		if err != nil {
			b.Fatal(err)
		}
		up = append(up, time.Since(start))
		b.StopTimer()
		tr.add(b, start, map[string]time.Time{"create": created}, resp, guest, name)
		b.StartTimer()
		if _, err := cl.StopContainer(ctx, &containerv1.StopContainerRequest{Name: name}); err != nil {
			b.Fatal(err)
		}
		if _, err := cl.DeleteContainer(ctx, &containerv1.DeleteContainerRequest{Name: name}); err != nil {
			b.Fatal(err)
		}
	}
	percentiles(b, "create+start", up)
	tr.report(b)
}

// startTraces collects the trace of each start of a benchmark: when each step ended, as
// an offset from the start's request, on the host's clock (the container shares it).
type startTraces map[string][]time.Duration

// add records one start's trace: client-side marks, containerd-lite's steps ("host."),
// guestd's init and serving process ("guest.init", "guest.serving") and guestd's own
// steps ("guest.").
func (tr startTraces) add(b *testing.B, t0 time.Time, client map[string]time.Time, resp *containerv1.StartContainerResponse, guest guestv1.GuestServiceClient, name string) {
	for n, at := range client {
		tr[n] = append(tr[n], at.Sub(t0))
	}
	for _, st := range resp.GetSteps() {
		tr["host."+st.GetName()] = append(tr["host."+st.GetName()], st.GetAt().AsTime().Sub(t0))
	}
	gctx := metadata.AppendToOutgoingContext(context.Background(), "hearth-container", name)
	info, err := guest.GetInfo(gctx, &guestv1.GetInfoRequest{})
	if err != nil {
		b.Fatal(err)
	}
	i := info.GetInfo()
	tr["guest.init"] = append(tr["guest.init"], i.GetBootTime().AsTime().Sub(t0))
	tr["guest.serving"] = append(tr["guest.serving"], i.GetStartedAt().AsTime().Sub(t0))
	for _, m := range i.GetStartTrace() {
		tr["guest."+m.GetName()] = append(tr["guest."+m.GetName()], m.GetAt().AsTime().Sub(t0))
	}
}

// report reports each step's median end as a metric "at-STEP-ms" (bench/run.sh prints
// them in time order as the start's breakdown).
func (tr startTraces) report(b *testing.B) {
	for n, ds := range tr {
		b.ReportMetric(ms(median(ds)), "at-"+n+"-ms")
	}
}

// BenchmarkLXCExecuteSameRootfs is the peer: bare lxc-execute running /bin/true in an
// unprivileged container with the same id map and security settings on a copy of the
// same base rootfs.
func BenchmarkLXCExecuteSameRootfs(b *testing.B) {
	requireRoot(b)
	dir := tempDir(b)
	rootfs := filepath.Join(dir, "rootfs")
	if out, err := exec.Command("cp", "-a", baseRootfs, rootfs).CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	// The first 65536 ids of root's subordinate range, as Hearth's first container gets
	// (lxc-execute maps them with newuidmap, which allows only what /etc/subuid grants).
	base := rootSubIDStart(b)
	if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", base, base), rootfs).CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	cfg := filepath.Join(dir, "config")
	conf := fmt.Sprintf(`lxc.cap.drop = mac_admin mac_override sys_time sys_module sys_rawio
lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp
lxc.pty.max = 1024
lxc.rootfs.path = dir:%[1]s
lxc.idmap = u 0 %[2]d 65536
lxc.idmap = g 0 %[2]d 65536
lxc.net.0.type = empty
lxc.net.0.flags = up
lxc.autodev = 1
lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed
lxc.tty.max = 0
`, rootfs, base)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	lxcPath := filepath.Join(dir, "lxc")
	os.MkdirAll(lxcPath, 0o711)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := exec.Command("lxc-execute", "-P", lxcPath, "-n", fmt.Sprintf("x%d", i), "-f", cfg, "--", "/bin/true").CombinedOutput()
		if err != nil {
			b.Fatalf("lxc-execute: %v %s", err, out)
		}
	}
}

// BenchmarkOverlayCreateDestroy measures CreateOverlay + DestroyOverlay through a
// running container's host.sock.
func BenchmarkOverlayCreateDestroy(b *testing.B) {
	l, cl, imgs := benchLab(b)
	ctx := context.Background()
	importBusybox(b, l, imgs)
	if _, err := cl.CreateContainer(ctx, &containerv1.CreateContainerRequest{Name: "ov", Spec: &containerv1.ContainerSpec{Images: map[string]string{"bb": "bb"}}}); err != nil {
		b.Fatal(err)
	}
	if _, err := cl.StartContainer(ctx, &containerv1.StartContainerRequest{Name: "ov"}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.DeleteContainer(ctx, &containerv1.DeleteContainerRequest{Name: "ov", Force: true}) })
	conn, err := dial.Unix(filepath.Join(l.stateDir, "containers", "ov", "media", "host", "host.sock"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	host := hostv1.NewHostServiceClient(conn)
	// host.sock's rate budget (50 calls a second, bursts of 100) holds for the
	// benchmark as for any package: a call it refuses is retried once the budget allows,
	// and only the call that passed is timed.
	timed := func(call func() error) time.Duration {
		for {
			t0 := time.Now()
			err := call()
			if err == nil {
				return time.Since(t0)
			}
			if status.Code(err) != codes.ResourceExhausted {
				b.Fatal(err)
			}
			b.StopTimer()
			time.Sleep(20 * time.Millisecond)
			b.StartTimer()
		}
	}
	var create, destroy []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		create = append(create, timed(func() error {
			_, err := host.CreateOverlay(ctx, &hostv1.CreateOverlayRequest{Image: "bb", Name: "o"})
			return err
		}))
		destroy = append(destroy, timed(func() error {
			_, err := host.DestroyOverlay(ctx, &hostv1.DestroyOverlayRequest{Name: "o"})
			return err
		}))
	}
	b.StopTimer()
	percentiles(b, "create", create)
	percentiles(b, "destroy", destroy)
}

// benchRootfsTar is the debootstrapped Postgres rootfs tarball the tests use too.
func benchRootfsTar(b *testing.B) string {
	if p := os.Getenv("HEARTH_BENCH_ROOTFS_TAR"); p != "" {
		return p
	}
	return postgresRootfs(b)
}

// BenchmarkImageImportVsTar imports a debootstrapped root file system tarball into an
// empty store, and, as its peer, extracts the same tarball with tar -x (keeping owners)
// into an empty directory, one after the other in each iteration, the order alternating
// from one run to the next. It reports each side's MB/s and their ratio; the same
// against tar -x followed by a sync of its file system (an import returns only once its
// files are on disk, tar -x leaves them in the page cache); and each side's CPU time
// (containerd-lite's through the import, tar's own).
//
// Both sides write to one fresh ext4 file system that the benchmark makes (on a loop
// device over a sparse file), the lab's state directory on it, and nothing is deleted
// while it runs: each side's tree is moved aside (the image's out of the store before
// its record is deleted). On the machine's own disk, files made in the minutes after
// thousands were deleted are made several times slower (ext4 without a journal skips
// each recently deleted inode, one buffer lookup each: fs/ext4/ialloc.c,
// recently_deleted), so the figures depended on what the runs before had removed.
func BenchmarkImageImportVsTar(b *testing.B) {
	tarPath := benchRootfsTar(b)
	requireRoot(b)
	fi, err := os.Stat(tarPath)
	if err != nil {
		b.Fatal(err)
	}
	var fsDir string
	l := newLabWith(b, func(l *lab) {
		// Room for both sides' trees of every iteration (at most a few: each takes seconds).
		fsDir = smallFS(b, l.dir, int(16*fi.Size()>>20)+1024)
		l.stateDir = filepath.Join(fsDir, "state")
	})
	conn, err := dial.Unix(l.cld.socket)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	imgs := containerv1.NewImageServiceClient(conn)
	daemon := l.cld.cmd.Process.Pid
	var ourCPU, peerCPU, peerSync time.Duration
	ctx := context.Background()
	dir := filepath.Join(fsDir, "bench")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	kept := 0
	aside := func(tree string) {
		kept++
		if err := os.Rename(tree, filepath.Join(dir, fmt.Sprint("kept-", kept))); err != nil {
			b.Fatal(err)
		}
	}
	// Before each side, what the other wrote goes to disk (an import's sync would
	// otherwise write tar's files too), and the disk is left a few seconds: this
	// virtual disk stays slower for a second or more after many syncs (a tar -x + sync
	// right after an import took up to 2.5 times as long with one second).
	settle := func() {
		syscall.Sync()
		time.Sleep(5 * time.Second)
	}
	importOnce := func() time.Duration {
		settle()
		c0 := procCPU(b, daemon)
		t0 := time.Now()
		stream, err := imgs.ImportImage(ctx, &containerv1.ImportImageRequest{Path: tarPath, Name: "deb"})
		if err != nil {
			b.Fatal(err)
		}
		var img *containerv1.Image
		for img == nil {
			resp, err := stream.Recv()
			if err != nil {
				b.Fatal(err)
			}
			img = resp.GetImage()
		}
		took := time.Since(t0)
		ourCPU += procCPU(b, daemon) - c0
		aside(img.GetRootfs())
		if _, err := imgs.DeleteImage(ctx, &containerv1.DeleteImageRequest{Ref: img.GetDigest()}); err != nil {
			b.Fatal(err)
		}
		return took
	}
	tarOnce := func() time.Duration {
		out := filepath.Join(dir, "x")
		if err := os.Mkdir(out, 0o755); err != nil {
			b.Fatal(err)
		}
		settle()
		t0 := time.Now()
		cmd := exec.Command("tar", "--numeric-owner", "-xpf", tarPath, "-C", out)
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("tar: %v %s", err, o)
		}
		took := time.Since(t0)
		peerCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		// An import returns once its files are on disk (it syncs their file system
		// before it commits): so does tar -x followed by the same sync, the durable peer.
		t1 := time.Now()
		syncFS(b, out)
		peerSync += time.Since(t1)
		aside(out)
		return took
	}
	var ours, peer time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		importVsTarRuns++
		if importVsTarRuns%2 == 0 {
			peer += tarOnce()
			ours += importOnce()
		} else {
			ours += importOnce()
			peer += tarOnce()
		}
	}
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(fi.Size()) * float64(b.N) / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(ours), "import-MB/s")
	b.ReportMetric(mbps(peer), "tar-MB/s")
	b.ReportMetric(mbps(ours)/mbps(peer), "import/tar")
	b.ReportMetric(mbps(peer+peerSync), "tar+sync-MB/s")
	b.ReportMetric(mbps(ours)/mbps(peer+peerSync), "import/tar+sync")
	b.ReportMetric(ourCPU.Seconds()/float64(b.N), "import-cpu-s")
	b.ReportMetric(peerCPU.Seconds()/float64(b.N), "tar-cpu-s")
	b.ReportMetric(peerCPU.Seconds()/ourCPU.Seconds(), "import/tar-by-cpu")
}

// syncFS writes the file system that holds path to disk (syncfs).
func syncFS(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		b.Fatal(err)
	}
}

// procCPU is the CPU time (user and system) process pid has used so far.
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command name (which may hold spaces), from the 3rd on:
	// utime and stime are the 14th and 15th, in clock ticks (100 a second).
	_, rest, _ := strings.Cut(string(data), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// importVsTarRuns counts BenchmarkImageImportVsTar's iterations across its runs (-count),
// so that the order of the two sides alternates.
var importVsTarRuns int

// BenchmarkImageReimport imports an image that is already stored: only its digest is
// read, nothing is unpacked.
func BenchmarkImageReimport(b *testing.B) {
	tarPath := benchRootfsTar(b)
	l, _, imgs := benchLab(b)
	ctx := context.Background()
	// An OCI layout of the same tree: its config digest is in the manifest, so a
	// second import needs no pass over the layer.
	layout := filepath.Join(l.dir, "layout")
	layer, err := imagetest.LayerFromFile(tarPath)
	if err != nil {
		b.Fatal(err)
	}
	must(b, imagetest.WriteOCILayout(layout, imagetest.ImageOfLayers(v1.Config{}, layer)))
	importOnce := func() {
		stream, err := imgs.ImportImage(ctx, &containerv1.ImportImageRequest{Path: layout, Name: "deb"})
		if err != nil {
			b.Fatal(err)
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				b.Fatal(err)
			}
			if resp.GetImage() != nil {
				return
			}
		}
	}
	importOnce()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		importOnce()
	}
}

const twoBusyboxManifest = `
id: two
version: 1.0.0
images:
  bb: {ref: bb}
daemons:
  a:
    image: bb
    command: [/bin/sh, -c, "mkdir -p /www && echo a > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ready: {http: {port: 8080, path: /}, interval: 20ms}
  b:
    image: bb
    command: [/bin/sh, -c, "mkdir -p /www && echo b > /www/index.html && exec httpd -f -p 8081 -h /www"]
    requires: [a]
    ready: {http: {port: 8081, path: /}, interval: 20ms}
`

// BenchmarkPackageStartTwoBusybox measures a package of two busybox daemons, b waiting
// for a: from the start request until guestd reports both ready (bench/peers.sh runs
// the same two under podman and lxc-execute). It also reports guestd's resident memory
// (init and the serving process) with the two daemons running.
func BenchmarkPackageStartTwoBusybox(b *testing.B) {
	l, cl, imgs := benchLab(b)
	ctx := context.Background()
	importBusybox(b, l, imgs)
	if _, err := cl.CreateContainer(ctx, &containerv1.CreateContainerRequest{Name: "two", Spec: &containerv1.ContainerSpec{Manifest: []byte(twoBusyboxManifest)}}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.DeleteContainer(ctx, &containerv1.DeleteContainerRequest{Name: "two", Force: true}) })
	conn, err := dial.Unix(l.cld.socket)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	guest := guestv1.NewGuestServiceClient(conn)
	gctx := metadata.AppendToOutgoingContext(ctx, "hearth-container", "two")
	var times []time.Duration
	var rss []int64
	tr := startTraces{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		resp, err := cl.StartContainer(ctx, &containerv1.StartContainerRequest{Name: "two"})
		if err != nil {
			b.Fatal(err)
		}
		wctx, cancelWatch := context.WithCancel(gctx)
		watch, err := guest.WatchStatus(wctx, &guestv1.WatchStatusRequest{})
		if err != nil {
			b.Fatal(err)
		}
		ready := map[string]bool{}
		for !ready["a"] || !ready["b"] {
			ev, err := watch.Recv()
			if err != nil {
				b.Fatal(err)
			}
			ready[ev.GetDaemon().GetName()] = ev.GetDaemon().GetState() == guestv1.DaemonState_DAEMON_STATE_READY
		}
		readyAt := time.Now()
		times = append(times, readyAt.Sub(t0))
		b.StopTimer()
		cancelWatch()
		tr.add(b, t0, map[string]time.Time{"both-ready-seen": readyAt}, resp, guest, "two")
		rss = append(rss, guestdRSS(b, l, "two"))
		if _, err := cl.StopContainer(ctx, &containerv1.StopContainerRequest{Name: "two"}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	percentiles(b, "start-to-ready", times)
	tr.report(b)
	sort.Slice(rss, func(i, j int) bool { return rss[i] < rss[j] })
	b.ReportMetric(float64(rss[len(rss)/2]), "guestd-pss-KiB")
}

// guestdRSS sums the proportional resident memory (PSS, KiB) of guestd's two processes
// in a container, init (PID 1) and the serving guestd: the binary's pages they share are
// counted once.
func guestdRSS(b *testing.B, l *lab, name string) int64 {
	var total int64
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cg, err := os.ReadFile("/proc/" + e.Name() + "/cgroup")
		if err != nil || !strings.Contains(string(cg), "lxc.payload."+name) {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil || !strings.Contains(string(st), "Name:\tguestd") {
			continue
		}
		pid, _ := strconv.Atoi(e.Name())
		if kb, err := pssKiB(pid); err == nil {
			total += kb
		}
	}
	return total
}

// importBusybox imports a busybox image named bb.
func importBusybox(b *testing.B, l *lab, imgs containerv1.ImageServiceClient) {
	bb, err := imagetest.Busybox("/bin/busybox")
	if err != nil {
		b.Fatal(err)
	}
	layout := filepath.Join(l.dir, "bb")
	must(b, imagetest.WriteOCILayout(layout, imagetest.Image(v1.Config{}, bb)))
	stream, err := imgs.ImportImage(context.Background(), &containerv1.ImportImageRequest{Path: layout, Name: "bb"})
	if err != nil {
		b.Fatal(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			b.Fatal(err)
		}
		if resp.GetImage() != nil {
			return
		}
	}
}

// benchPackageLab is a lab trusting the examples' key, with busybox 1.0.0 and 1.1.0.
func benchPackageLab(b *testing.B) (*lab, string, string) {
	requireRoot(b)
	ex := examplePackages(b, "busybox")
	l := newLab(b)
	if _, err := hearthctl(b, l.runDir, "keys", "trust", filepath.Join(ex, "dev.pub")); err != nil {
		b.Fatal(err)
	}
	return l, filepath.Join(ex, "busybox-1.0.0.hpkg"), busyboxNext(b, l, ex)
}

// BenchmarkPackageInstallBusybox measures hearthctl install of the busybox package, from
// the file to every daemon ready (its install hook run); each is uninstalled, untimed.
func BenchmarkPackageInstallBusybox(b *testing.B) {
	l, v1, _ := benchPackageLab(b)
	var ds []time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := hearthctl(b, l.runDir, "install", v1); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
		b.StopTimer()
		if _, err := hearthctl(b, l.runDir, "uninstall", "--purge", "busybox"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	percentiles(b, "install", ds)
}

// BenchmarkPackageUpdateBusybox measures hearthctl update of busybox 1.0.0 to 1.1.0
// (stop, copy the data aside, swap, migrate hook, start, ready).
func BenchmarkPackageUpdateBusybox(b *testing.B) {
	l, v1, v2 := benchPackageLab(b)
	var ds []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if _, err := hearthctl(b, l.runDir, "install", v1); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if _, err := hearthctl(b, l.runDir, "update", v2); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
		b.StopTimer()
		if _, err := hearthctl(b, l.runDir, "uninstall", "--purge", "busybox"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	percentiles(b, "update", ds)
}

// rootSubIDStart is the start of root's first range of at least 65536 ids that both
// /etc/subuid and /etc/subgid grant.
func rootSubIDStart(b *testing.B) int {
	b.Helper()
	ranges := func(file string) map[int]int {
		data, err := os.ReadFile(file)
		if err != nil {
			b.Fatalf("read %s: %v", file, err)
		}
		out := map[int]int{}
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Split(line, ":")
			if len(f) != 3 || f[0] != "root" {
				continue
			}
			start, err1 := strconv.Atoi(f[1])
			n, err2 := strconv.Atoi(f[2])
			if err1 == nil && err2 == nil {
				out[start] = n
			}
		}
		return out
	}
	uids, gids := ranges("/etc/subuid"), ranges("/etc/subgid")
	best := -1
	for start, n := range uids {
		if n >= 65536 && gids[start] >= 65536 && (best < 0 || start < best) {
			best = start
		}
	}
	if best < 0 {
		b.Fatal("root has no range of 65536 subordinate ids in both /etc/subuid and /etc/subgid: run deploy/install-deps.sh")
	}
	return best
}
