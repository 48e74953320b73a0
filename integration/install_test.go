package integration

// Installing Hearth as system services: `make install` into a staging DESTDIR lays out the
// binaries, the base rootfs, the systemd units and the sysusers.d and tmpfiles.d files;
// systemd-analyze verifies the installed units; `make uninstall` takes it all away and
// leaves the daemons' state alone. certd's unit confines it the most, so certd is run
// under the same restrictions (as far as they can be imposed without systemd) and traced
// to show it never makes a call the rest of its unit's settings would refuse.

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	certv1 "hearth.dev/proto/hearth/cert/v1"
)

// installed lists what make install puts under DESTDIR, relative to PREFIX, with its mode.
var installed = []struct {
	path string
	mode fs.FileMode
}{
	{"lib/hearth/containerd-lite", 0o755},
	{"lib/hearth/netd", 0o755},
	{"lib/hearth/certd", 0o755},
	{"lib/hearth/guestd", 0o755},
	{"lib/hearth/hearth-effect", 0o755},
	{"lib/hearth/base-rootfs/sbin/guestd", 0o755},
	{"lib/hearth/base-rootfs/usr/local/bin/hearth-effect", 0o755},
	{"bin/hearthctl", 0o755},
	{"lib/systemd/system/hearth.target", 0o644},
	{"lib/systemd/system/hearth-certd.service", 0o644},
	{"lib/systemd/system/hearth-netd.service", 0o644},
	{"lib/systemd/system/hearth-containerd-lite.service", 0o644},
	{"lib/sysusers.d/hearth.conf", 0o644},
	{"lib/tmpfiles.d/hearth.conf", 0o644},
}

var hearthUnits = []string{"hearth.target", "hearth-certd.service", "hearth-netd.service", "hearth-containerd-lite.service"}

// makeTarget runs make in the repository with the test's binaries and base rootfs.
func makeTarget(t *testing.T, target, destdir, prefix string) string {
	t.Helper()
	cmd := exec.Command("make", "--no-print-directory", "-C", "..", target,
		"DESTDIR="+destdir, "PREFIX="+prefix, "BIN="+binDir, "BASE="+baseRootfs)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s DESTDIR=%s PREFIX=%s: %v\n%s", target, destdir, prefix, err, out)
	}
	return string(out)
}

func TestInstallUninstall(t *testing.T) {
	requireRoot(t) // the base rootfs is copied with its owners
	groupBefore, _ := exec.Command("getent", "group", "hearth").Output()
	for _, prefix := range []string{"/usr", "/usr/local"} {
		t.Run(strings.ReplaceAll(prefix, "/", "_"), func(t *testing.T) {
			d := t.TempDir()
			// State a running Hearth left: uninstall must keep it.
			kept := filepath.Join(d, "var/lib/hearth/certd/ca/index.json")
			if err := os.MkdirAll(filepath.Dir(kept), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(kept, []byte("{}"), 0o600); err != nil {
				t.Fatal(err)
			}
			makeTarget(t, "install", d, prefix)
			for _, f := range installed {
				p := filepath.Join(d, prefix, f.path)
				fi, err := os.Stat(p)
				if err != nil {
					t.Errorf("not installed: %v", err)
					continue
				}
				if fi.Mode().Perm() != f.mode || !fi.Mode().IsRegular() {
					t.Errorf("%s: mode %v, want a file of %v", p, fi.Mode(), f.mode)
				}
			}
			checkUnitsPointAtInstall(t, d, prefix)
			if got, _ := exec.Command("getent", "group", "hearth").Output(); string(got) != string(groupBefore) {
				t.Errorf("make install with DESTDIR changed the host's hearth group: %q, was %q", got, groupBefore)
			}
			if prefix == "/usr" {
				verifyUnits(t, d)
			}

			out := makeTarget(t, "uninstall", d, prefix)
			var left []string
			filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
				if err == nil && !e.IsDir() {
					left = append(left, strings.TrimPrefix(p, d))
				}
				return nil
			})
			if want := []string{strings.TrimPrefix(kept, d)}; !slices.Equal(left, want) {
				t.Errorf("after make uninstall the staging tree holds %v, want only the state %v", left, want)
			}
			if _, err := os.Stat(filepath.Join(d, prefix, "lib/hearth")); err == nil {
				t.Errorf("%s/lib/hearth is still there after make uninstall", prefix)
			}
			if !strings.Contains(out, "/var/lib/hearth is kept") {
				t.Errorf("make uninstall does not say the state is kept:\n%s", out)
			}
		})
	}
}

// checkUnitsPointAtInstall checks that each unit starts the binary installed under prefix,
// and that containerd-lite's unit names the base rootfs installed with it: for the
// default prefix, the very path containerd-lite looks in when given none.
func checkUnitsPointAtInstall(t *testing.T, d, prefix string) {
	t.Helper()
	lib := filepath.Join(prefix, "lib/hearth")
	for _, name := range []string{"certd", "netd", "containerd-lite"} {
		unit, err := os.ReadFile(filepath.Join(d, prefix, "lib/systemd/system/hearth-"+name+".service"))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^ExecStart=(\S+)(.*)$`).FindSubmatch(unit)
		if m == nil {
			t.Errorf("hearth-%s.service has no ExecStart", name)
			continue
		}
		if want := filepath.Join(lib, name); string(m[1]) != want {
			t.Errorf("hearth-%s.service starts %s, want %s", name, m[1], want)
		}
		if !strings.Contains(string(m[2]), "--group hearth") {
			t.Errorf("hearth-%s.service does not give its socket to the hearth group: %s", name, m[0])
		}
		if name != "containerd-lite" {
			continue
		}
		base := regexp.MustCompile(`--base-rootfs (\S+)`).FindSubmatch(m[2])
		if base == nil || string(base[1]) != filepath.Join(lib, "base-rootfs") {
			t.Errorf("containerd-lite's unit: %s, want --base-rootfs %s", m[0], filepath.Join(lib, "base-rootfs"))
		}
		if prefix != "/usr" {
			continue
		}
		help, _ := exec.Command(filepath.Join(d, lib, "containerd-lite"), "--help").CombinedOutput()
		def := regexp.MustCompile(`-base-rootfs[^\n]*\n[^\n]*\(default "([^"]+)"\)`).FindSubmatch(help)
		if def == nil || base == nil || string(def[1]) != string(base[1]) {
			t.Errorf("containerd-lite's default base rootfs %q differs from where make install puts it (%s)", def, base)
		}
	}
}

// verifyUnits runs systemd-analyze verify on the installed units, which must pass without
// a word, and checks its security exposure scores; then that verify does see the
// installed tree (a unit whose binary is missing fails).
func verifyUnits(t *testing.T, d string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not found (package systemd; deploy/install-deps.sh installs it): the units are not verified")
	}
	// The units refer to the host's own (sysinit.target, network-online.target…): the root
	// systemd-analyze reads gets a copy of them beside the installed ones.
	hostUnits := filepath.Join(d, "lib/systemd/system")
	if err := os.MkdirAll(filepath.Dir(hostUnits), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", "/usr/lib/systemd/system", hostUnits).CombinedOutput(); err != nil {
		t.Fatalf("copy the host's units: %v\n%s", err, out)
	}
	defer os.RemoveAll(filepath.Join(d, "lib"))
	unitDir := filepath.Join(d, "usr/lib/systemd/system")
	var paths []string
	for _, u := range hearthUnits {
		paths = append(paths, filepath.Join(unitDir, u))
	}
	verify := func() (string, error) {
		out, err := exec.Command("systemd-analyze", append([]string{"verify", "--root=" + d, "--man=no"}, paths...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(); err != nil || out != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure (0 safe … 10 unsafe) as systemd-analyze security scores it. containerd-lite
	// has no bound: it is root with what LXC needs, and its unit says why each option is
	// absent.
	for _, tc := range []struct {
		unit  string
		bound float64
	}{{"hearth-certd.service", 2.0}, {"hearth-netd.service", 4.0}, {"hearth-containerd-lite.service", 10}} {
		out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", "--root="+d,
			"--threshold="+strconv.Itoa(int(tc.bound*10)), filepath.Join(unitDir, tc.unit)).CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s: %v\n%s", tc.unit, err, out)
			continue
		}
		score, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("%s: exposure %.1f (bound %.1f)", tc.unit, score, tc.bound)
		if score > tc.bound || err != nil {
			t.Errorf("%s: exposure %.1f above %.1f (%v)", tc.unit, score, tc.bound, err)
		}
	}

	netd := filepath.Join(d, "usr/lib/hearth/netd")
	if err := os.Rename(netd, netd+".away"); err != nil {
		t.Fatal(err)
	}
	out, err := verify()
	if err := os.Rename(netd+".away", netd); err != nil {
		t.Fatal(err)
	}
	if err == nil || !strings.Contains(out, "/usr/lib/hearth/netd") {
		t.Errorf("systemd-analyze verify passed the units with netd's binary missing: %v\n%s", err, out)
	}
}

// TestCertdUnderItsUnitsRestrictions runs certd as hearth-certd.service confines it, as far
// as that can be done without systemd: in a mount namespace where everything is read-only
// but its state and socket directories (stricter than ProtectSystem=strict with its
// private /tmp), as root's uid with no capabilities and no new privileges, with one
// supplementary group that its socket must be given. It issues a local certificate and an
// ACME one from Pebble. Under strace, every system call it makes after exec is checked
// against what the unit's seccomp-based settings allow: SystemCallFilter=@system-service,
// RestrictAddressFamilies=, MemoryDenyWriteExecute=, RestrictNamespaces=,
// RestrictSUIDSGID=, LockPersonality=, and the files it opens against ProtectProc=,
// ProtectKernelTunables= and PrivateDevices=.
func TestCertdUnderItsUnitsRestrictions(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"strace", "setpriv", "unshare", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: deploy/install-deps.sh installs it", tool)
		}
	}
	allowed := syscallGroup(t, "@system-service")
	p := startPebble(t, false)

	dir := tempDir(t)
	state, run, traceDir := filepath.Join(dir, "state"), filepath.Join(dir, "run"), filepath.Join(dir, "trace")
	trace := filepath.Join(traceDir, "certd.strace")
	for _, p := range []string{state, run, traceDir} {
		if err := os.Mkdir(p, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	const group = 4242 // a group no one on the host has: only the supplementary group lets certd hand its socket to it
	socket := filepath.Join(run, "certd.sock")
	// Make every mount read-only but the state, socket and trace directories (bound onto
	// themselves), and check that it worked before certd starts.
	script := `set -eu
for d in "$1" "$2" "$3"; do mount --bind "$d" "$d"; done
awk '{print $5}' /proc/self/mountinfo | while read -r m; do mount -o remount,bind,ro "$m" 2>/dev/null || true; done
for d in "$1" "$2" "$3"; do mount -o remount,bind,rw "$d"; done
for probe in /etc /var/tmp /tmp /root /usr/lib "$(dirname "$1")"; do
	if touch "$probe/.hearth-probe" 2>/dev/null; then rm -f "$probe/.hearth-probe"; echo "sandbox: $probe is writable" >&2; exit 1; fi
done
shift 3
exec "$@"`
	args := []string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", state, run, traceDir,
		"strace", "-f", "-qq", "-o", trace,
		"setpriv", "--no-new-privs", "--bounding-set", "-all", "--inh-caps", "-all", "--ambient-caps", "-all",
		"--groups", strconv.Itoa(group),
		filepath.Join(binDir, "certd"), "--run-dir", run, "--state-dir", state, "--group", strconv.Itoa(group),
		"--socket", socket, "--acme-directory", p.Directory, "--acme-ca-roots", p.RootsFile,
		"--http01-addr", p.HTTP01Addr}
	d := &daemonProc{name: "certd", socket: socket, log: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command("unshare", args...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	// SIGTERM goes to certd, strace's child: strace itself would detach and leave it running.
	stop := func() {
		pid := d.cmd.Process.Pid
		if kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
			for _, k := range strings.Fields(string(kids)) {
				if n, err := strconv.Atoi(k); err == nil {
					syscall.Kill(n, syscall.SIGTERM)
				}
			}
		}
		d.stop(syscall.SIGTERM)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("certd log:\n%s", d.log.String())
		}
	})
	for deadline := time.Now().Add(60 * time.Second); d.healthy() != nil; time.Sleep(50 * time.Millisecond) {
		select {
		case <-d.done:
			t.Fatalf("certd exited under the restrictions: %v\n%s", d.cmd.ProcessState, d.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("certd not SERVING under the restrictions after 60s\n%s", d.log.String())
		}
	}
	if fi, err := os.Stat(socket); err != nil || fi.Sys().(*syscall.Stat_t).Gid != group || fi.Mode().Perm() != 0o660 {
		t.Errorf("certd's socket: %v, want mode 0660 and group %d", fi, group)
	}

	var local certv1.IssueCertificateResponse
	hearthctlJSON(t, run, &local, "cert", "issue", "nas.local")
	if len(local.GetCertificate().GetChainPem()) == 0 {
		t.Errorf("no local certificate: %v", &local)
	}
	var acme certv1.IssueCertificateResponse
	hearthctlJSON(t, run, &acme, "cert", "issue", "www.sandbox.hearth.test", "--acme", "--challenge", "http-01")
	verifyACME(t, p, acme.GetCertificate().GetChainPem(), "www.sandbox.hearth.test")
	stop()
	if !d.cmd.ProcessState.Success() {
		t.Errorf("certd under strace: %v", d.cmd.ProcessState)
	}

	calls, refused := checkTrace(t, trace, filepath.Join(binDir, "certd"), allowed)
	t.Logf("certd made %d distinct system calls", calls)
	for _, r := range refused {
		t.Error(r)
	}
}

// syscallGroup expands a systemd system call group (with the groups it names) into names.
func syscallGroup(t *testing.T, name string) map[string]bool {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "syscall-filter").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	groups := map[string][]string{}
	var cur string
	for _, line := range strings.Split(string(out), "\n") {
		switch f := strings.TrimSpace(line); {
		case strings.HasPrefix(line, "@"):
			cur = f
		case f == "" || strings.HasPrefix(f, "#"):
		case cur != "":
			groups[cur] = append(groups[cur], f)
		}
	}
	set := map[string]bool{}
	var add func(string)
	add = func(g string) {
		for _, m := range groups[g] {
			if strings.HasPrefix(m, "@") {
				add(m)
			} else {
				set[m] = true
			}
		}
	}
	add(name)
	if len(set) < 100 {
		t.Fatalf("%s expands to %d calls only: systemd-analyze's output changed?\n%s", name, len(set), out)
	}
	return set
}

var (
	straceCall  = regexp.MustCompile(`^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)(\(| resumed>)(.*)$`)
	socketFam   = regexp.MustCompile(`^(AF_[A-Z0-9]+)`)
	openedPath  = regexp.MustCompile(`^(?:AT_FDCWD|-?\d+), "([^"]*)"`)
	procAllowed = regexp.MustCompile(`^/proc/(self|thread-self)(/|$)|^/proc/sys/`) // /proc/sys read-only: ProtectKernelTunables=
	setID       = regexp.MustCompile(`, 0[2-7][0-7]{3}\)`)                         // a mode with the setuid or setgid bit
	devAllowed  = map[string]bool{"/dev/null": true, "/dev/zero": true, "/dev/full": true, "/dev/random": true, "/dev/urandom": true}
)

// checkTrace reads strace's output from the exec of bin on and returns how many distinct
// calls were made and what the unit's settings would have refused.
func checkTrace(t *testing.T, trace, bin string, allowed map[string]bool) (int, []string) {
	t.Helper()
	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	var refused []string
	refuse := func(why, line string) {
		if len(refused) < 30 {
			refused = append(refused, why+": "+line)
		}
	}
	started := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !started {
			started = strings.Contains(line, `execve("`+bin+`"`) && strings.Contains(line, "= 0")
			continue
		}
		m := straceCall.FindStringSubmatch(line)
		if m == nil {
			continue // signals, exits
		}
		name, args := m[1], m[3]
		seen[name] = true
		if !allowed[name] {
			refuse("SystemCallFilter=@system-service", line)
		}
		if m[2] != "(" {
			continue // the arguments were on the unfinished line
		}
		switch name {
		case "socket", "socketpair":
			if fam := socketFam.FindString(args); fam != "AF_UNIX" && fam != "AF_INET" && fam != "AF_INET6" {
				refuse("RestrictAddressFamilies=", line)
			}
		case "mmap":
			if strings.Contains(args, "PROT_WRITE") && strings.Contains(args, "PROT_EXEC") {
				refuse("MemoryDenyWriteExecute=", line)
			}
		case "mprotect", "pkey_mprotect":
			if strings.Contains(args, "PROT_EXEC") {
				refuse("MemoryDenyWriteExecute=", line)
			}
		case "unshare", "setns":
			refuse("RestrictNamespaces=", line)
		case "clone", "clone3":
			if strings.Contains(args, "CLONE_NEW") {
				refuse("RestrictNamespaces=", line)
			}
		case "chmod", "fchmod", "fchmodat":
			if setID.MatchString(args) {
				refuse("RestrictSUIDSGID=", line)
			}
		case "personality":
			if !strings.HasPrefix(args, "0xffffffff") {
				refuse("LockPersonality=", line)
			}
		case "open", "openat", "openat2":
			p := openedPath.FindStringSubmatch(args)
			if p == nil && name == "open" {
				p = regexp.MustCompile(`^"([^"]*)"`).FindStringSubmatch(args)
			}
			switch {
			case p == nil:
			case strings.HasPrefix(p[1], "/proc/") && !procAllowed.MatchString(p[1]):
				refuse("ProtectProc=invisible", line)
			case strings.HasPrefix(p[1], "/proc/sys/") && !strings.Contains(args, "O_RDONLY"):
				refuse("ProtectKernelTunables=", line)
			case strings.HasPrefix(p[1], "/dev/") && !devAllowed[p[1]]:
				refuse("PrivateDevices=", line)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !started {
		t.Fatalf("the trace never shows certd (%s) starting", bin)
	}
	return len(seen), refused
}
