package initproc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildInit compiles guestd-init (as the Makefile does: with musl where it is installed) into a new directory and returns
// its path there.
func buildInit(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	exe := filepath.Join(dir, Name)
	cc := "cc"
	if p, err := exec.LookPath("musl-gcc"); err == nil {
		cc = p
	}
	if out, err := exec.Command(cc, "-static", "-Os", "-Wall", "-Wextra", "-Werror", "-o", exe, "../../init/guestd-init.c").CombinedOutput(); err != nil {
		t.Fatalf("build guestd-init: %v\n%s", err, out)
	}
	return exe
}

// TestRefusesOutsideAContainer: run as anything but PID 1 (by hand on a host), init
// refuses at once, before it makes a socket or starts anything.
func TestRefusesOutsideAContainer(t *testing.T) {
	exe := buildInit(t)
	// A guestd next to it that would leave a mark if it ran.
	mark := filepath.Join(filepath.Dir(exe), "ran")
	if err := os.WriteFile(filepath.Join(filepath.Dir(exe), Serving), []byte("#!/bin/sh\ntouch "+mark+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{nil, {"--version"}, {"init"}} {
		var stderr bytes.Buffer
		cmd := exec.Command(exe, args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "first process (PID 1)") {
			t.Errorf("guestd-init %q as PID %d: %v, stderr %q; want exit 2 and why", args, cmd.Process.Pid, err, stderr.String())
		}
	}
	if _, err := os.Stat(mark); err == nil {
		t.Error("guestd-init started guestd although it is not PID 1")
	}
}

// fakeGuestd records each start (its arguments, the environment init passed, what
// descriptor 3 and the effects socket are) in DIR/start.N, leaves an orphan that exits
// soon (init must reap it), exits 3 the first time (init must restart it), and on SIGTERM
// writes DIR/term and exits.
const fakeGuestd = `#!/bin/sh
dir=%s
n=$(ls $dir | grep -c '^start\.')
{
	echo "args $*"
	env | grep -E '^(HEARTH_|GOMAXPROCS=|GOGC=)' | sort
	echo "fd3 $(readlink /proc/self/fd/3)"
	echo "sock $(stat -c '%%a %%F' /media/hearth/rpc/effects.sock)"
} > $dir/start.$n.tmp
mv $dir/start.$n.tmp $dir/start.$n
(sleep 0.1 &)
[ $n = 0 ] && exit 3
trap 'touch $dir/term; exit 0' TERM
while :; do sleep 0.05; done
`

// TestServesRestartsAndStops runs init as the PID 1 of a new PID and mount namespace (a
// tmpfs on /media for the effects socket): it starts guestd with its arguments and the
// effects socket as descriptor 3, restarts it after it exits, reaps orphans, and on SIGTERM
// stops guestd and exits 0.
func TestServesRestartsAndStops(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: init runs as the PID 1 of a new PID namespace")
	}
	if fi, err := os.Stat("/media"); err != nil || !fi.IsDir() {
		t.Skip("needs a /media directory to mount a tmpfs on, in the test's own mount namespace")
	}
	exe := buildInit(t)
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(filepath.Dir(exe), Serving), fmt.Appendf(nil, fakeGuestd, out), 0o755); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("/bin/sh", "-c", `mount --make-rprivate / && mount -t tmpfs tmpfs /media && exec "$0" init -v x`, exe)
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "HEARTH_GUESTD_RESTARTS=7", "GOGC=100") // init sets its own
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	start := func(n int) string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if data, err := os.ReadFile(filepath.Join(out, "start."+strconv.Itoa(n))); err == nil {
				return string(data)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("guestd start %d not seen in 5 s; init's stderr:\n%s", n, stderr.String())
		return ""
	}
	for n, restarts := range []string{"0", "1"} {
		got := start(n)
		for _, want := range []string{"args -v x\n", "HEARTH_EFFECTS_FD=3\n", "HEARTH_GUESTD_RESTARTS=" + restarts + "\n", "HEARTH_GUESTD_BOOT_TIME=", "fd3 socket:[", "sock 666 socket\n", "GOGC=off\n", "GOMAXPROCS=1\n"} {
			if !strings.Contains(got, want) {
				t.Errorf("start %d: no %q in what guestd saw:\n%s", n, want, got)
			}
		}
		for _, v := range []string{"HEARTH_GUESTD_RESTARTS=", "GOGC="} {
			if strings.Count(got, v) != 1 {
				t.Errorf("start %d: %s twice in guestd's environment:\n%s", n, v, got)
			}
		}
	}
	// The orphans (each start's sleep) exited and were reaped: init's only child left is
	// the running guestd, and no zombie.
	time.Sleep(500 * time.Millisecond)
	children := func() []string {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(data))
	}
	if c := children(); len(c) != 1 {
		t.Errorf("init's children: %v, want only the serving guestd", c)
	} else if st, err := os.ReadFile("/proc/" + c[0] + "/stat"); err != nil || strings.Contains(string(st), ") Z ") {
		t.Errorf("init's child %s: %q %v", c[0], st, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("init after SIGTERM: %v, want exit 0; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("init did not exit within 5 s of SIGTERM; stderr:\n%s", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(out, "term")); err != nil {
		t.Errorf("guestd did not get SIGTERM before init exited: %v", err)
	}
	for _, want := range []string{"guestd exited: exit status 3; restarting in 100 ms", ": stopping"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("init's log has no %q:\n%s", want, stderr.String())
		}
	}
	if _, err := os.Stat(filepath.Join(out, "start.2")); err == nil {
		t.Error("guestd was started a third time")
	}
}
