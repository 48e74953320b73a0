package integration

import (
	"context"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"hearth.dev/internal/dial"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
)

// guestInfo asks a container's guestd who it is, through containerd-lite.
func (l *lab) guestInfo(t *testing.T, name string) *guestv1.GuestInfo {
	t.Helper()
	conn, err := dial.Unix(l.cld.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "hearth-container", name), 10*time.Second)
	defer cancel()
	resp, err := guestv1.NewGuestServiceClient(conn).GetInfo(ctx, &guestv1.GetInfoRequest{})
	if err != nil {
		t.Fatalf("guestd of %s: %v", name, err)
	}
	return resp.GetInfo()
}

// traceMark is when guestd's first start of the package passed the step name.
func traceMark(t *testing.T, info *guestv1.GuestInfo, name string) time.Time {
	t.Helper()
	for _, m := range info.GetStartTrace() {
		if m.GetName() == name {
			return m.GetAt().AsTime()
		}
	}
	t.Fatalf("guestd's start trace has no %s: %v", name, info.GetStartTrace())
	return time.Time{}
}

// TestStartAll: dep-b depends on dep-a's interface web (ready ~4 s after dep-a starts);
// busybox depends on nothing. With all three stopped, start --all starts them all: busybox
// and dep-a side by side, dep-b only once dep-a's web daemon is ready. A second start --all
// finds them running. Then containerd-lite restarts and adopts the three running
// containers (side by side): the same inits, addresses, and dep-b still reaches dep-a by
// name; a start --all then changes nothing.
func TestStartAll(t *testing.T) {
	l, ex := installLab(t, "busybox")
	l.startNetd(t, testBridge(t))
	pkgA, pkgB := packWithManifest(t, ex, depA), packWithManifest(t, ex, depB)
	for _, p := range []string{pkgA, pkgB, ex + "/busybox-1.0.0.hpkg"} {
		if _, err := hearthctl(t, l.runDir, "install", p); err != nil {
			t.Fatal(err)
		}
	}
	ids := []string{"busybox", "dep-a", "dep-b"}
	t.Cleanup(func() {
		for _, id := range ids {
			hearthctl(t, l.runDir, "uninstall", "--purge", id)
		}
	})
	waitFor(t, "dep-b running", 60*time.Second, func() bool { return l.pkgState(t, "dep-b") == "running" })
	for _, args := range [][]string{{"stop", "--cascade", "dep-a"}, {"stop", "busybox"}} {
		if _, err := hearthctl(t, l.runDir, args...); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		if st := l.pkgState(t, id); st == "running" {
			t.Fatalf("%s still runs after stop", id)
		}
	}

	// Bad input changes nothing.
	if out, err := hearthctl(t, l.runDir, "start", "--all", "dep-a"); err == nil || !strings.Contains(out+err.Error(), "give no ID with it") {
		t.Errorf("start --all dep-a: %v\n%s", err, out)
	}
	if st := l.pkgState(t, "dep-a"); st == "running" {
		t.Error("a refused start --all started dep-a")
	}

	t0 := time.Now()
	resp := &containerv1.StartAllPackagesResponse{}
	hearthctlJSON(t, l.runDir, resp, "start", "--all")
	took := time.Since(t0)
	outcome := map[string]string{}
	for _, p := range resp.GetPackages() {
		outcome[p.GetId()] = p.GetOutcome()
		if p.GetOutcome() != "started" {
			t.Errorf("%s: %s %s %s", p.GetId(), p.GetOutcome(), p.GetError(), waitsText(p.GetWaitingFor()))
		}
	}
	if len(outcome) != 3 {
		t.Fatalf("start --all reported %v, want the three packages", outcome)
	}
	t.Logf("start --all took %v", took.Round(time.Millisecond))

	// dep-b's container started only once dep-a's web daemon was ready.
	infoA, infoB, infoBB := l.guestInfo(t, "dep-a"), l.guestInfo(t, "dep-b"), l.guestInfo(t, "busybox")
	readyA := traceMark(t, infoA, "web.ready")
	if bootB := infoB.GetBootTime().AsTime(); !bootB.After(readyA) {
		t.Errorf("dep-b's init started at %v, before dep-a's web was ready at %v", bootB, readyA)
	}
	// busybox and dep-a started side by side: each one's start began before the other's
	// ended (containerd-lite's "container started" lines: when each ended, and took).
	bootA, bootBB := infoA.GetBootTime().AsTime(), infoBB.GetBootTime().AsTime()
	spans := startSpans(t, l.cld.log.String())
	if a, bb := spans["dep-a"], spans["busybox"]; !a[0].Before(bb[1]) || !bb[0].Before(a[1]) {
		t.Errorf("busybox (%v to %v) and dep-a (%v to %v) did not start side by side", bb[0], bb[1], a[0], a[1])
	}
	l.waitDaemons(t, "dep-b", "web ready", 60*time.Second, allReady("web"))

	// A second start --all: all run already.
	again := &containerv1.StartAllPackagesResponse{}
	hearthctlJSON(t, l.runDir, again, "start", "--all")
	for _, p := range again.GetPackages() {
		if p.GetOutcome() != "running" {
			t.Errorf("second start --all: %s %s", p.GetId(), p.GetOutcome())
		}
	}

	// containerd-lite restarts and adopts them.
	boots := map[string]time.Time{"dep-a": bootA, "dep-b": infoB.GetBootTime().AsTime(), "busybox": bootBB}
	before := map[string]*containerv1.Container{}
	for _, id := range ids {
		before[id] = l.inspect(t, id).GetContainer()
	}
	l.cld.stop(syscall.SIGTERM)
	l.start(t)
	if !strings.Contains(l.cld.log.String(), "reconcile: containers done") {
		t.Errorf("containerd-lite's reconcile logged no end:\n%s", l.cld.log.String())
	}
	for _, id := range ids {
		c := l.inspect(t, id).GetContainer()
		if c.GetState() != containerv1.ContainerState_CONTAINER_STATE_RUNNING || c.GetInitPid() != before[id].GetInitPid() || c.GetAddress() != before[id].GetAddress() {
			t.Errorf("%s after the restart: %v pid %d at %q; before: pid %d at %q", id, c.GetState(), c.GetInitPid(), c.GetAddress(), before[id].GetInitPid(), before[id].GetAddress())
		}
		if n := len(regexp.MustCompile(`msg="reconcile: adopted running container".* container=`+id+` `).FindAllString(l.cld.log.String(), -1)); n != 1 {
			t.Errorf("%s adopted %d times by the restarted containerd-lite", id, n)
		}
		if info := l.guestInfo(t, id); !info.GetBootTime().AsTime().Equal(boots[id]) {
			t.Errorf("%s's init started again (boot %v)", id, info.GetBootTime().AsTime())
		}
	}
	out, err := hearthctl(t, l.runDir, "exec", "dep-b", "web", "--", "sh", "-c", "timeout 5 wget -qO- http://dep-a.hearth.internal:8080/")
	if err != nil || strings.TrimSpace(out) != "dep-a answers" {
		t.Errorf("dep-b → dep-a after the restart: %q, %v", out, err)
	}
	third := &containerv1.StartAllPackagesResponse{}
	hearthctlJSON(t, l.runDir, third, "start", "--all")
	for _, p := range third.GetPackages() {
		if p.GetOutcome() != "running" {
			t.Errorf("start --all after the restart: %s %s", p.GetId(), p.GetOutcome())
		}
	}
}

// startSpans reads when each container's last start began and ended from
// containerd-lite's log ("container started" lines: the time it ended, and took).
func startSpans(t *testing.T, log string) map[string][2]time.Time {
	t.Helper()
	re := regexp.MustCompile(`time=(\S+) level=INFO msg="container started" .*container=(\S+) .* took=(\S+)`)
	out := map[string][2]time.Time{}
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		end, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatalf("time in %q: %v", m[0], err)
		}
		took, err := time.ParseDuration(m[3])
		if err != nil {
			t.Fatalf("took in %q: %v", m[0], err)
		}
		out[m[2]] = [2]time.Time{end.Add(-took), end}
	}
	return out
}
