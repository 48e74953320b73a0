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

	"hearth.dev/internal/testtool"
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
	{"lib/hearth/guestd-init", 0o755},
	{"lib/hearth/hearth-effect", 0o755},
	{"lib/hearth/base-rootfs/sbin/guestd", 0o755},
	{"lib/hearth/base-rootfs/sbin/guestd-init", 0o755},
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
				// Subtests: without systemd's tools they skip, and the rest goes on.
				t.Run("systemd-analyze", func(t *testing.T) { verifyUnits(t, d) })
				t.Run("sysusers-tmpfiles", func(t *testing.T) { checkSysusersTmpfiles(t, d) })
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

// checkSysusersTmpfiles applies the installed sysusers.d and tmpfiles.d files to the
// staging tree as systemd would at boot: the hearth group, and /run/hearth 0750 of it.
func checkSysusersTmpfiles(t *testing.T, d string) {
	t.Helper()
	for _, tool := range []string{"systemd-sysusers", "systemd-tmpfiles"} {
		if _, err := exec.LookPath(tool); err != nil {
			testtool.Missing(t, "%s not found (package systemd; deploy/install-deps.sh installs it)", tool)
		}
	}
	if err := os.MkdirAll(filepath.Join(d, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(filepath.Join(d, "etc"))
	defer os.RemoveAll(filepath.Join(d, "run"))
	if out, err := exec.Command("systemd-sysusers", "--root="+d).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	groups, _ := os.ReadFile(filepath.Join(d, "etc/group"))
	m := regexp.MustCompile(`(?m)^hearth:x:(\d+):`).FindSubmatch(groups)
	if m == nil {
		t.Fatalf("sysusers.d/hearth.conf made no hearth group:\n%s", groups)
	}
	out, err := exec.Command("systemd-tmpfiles", "--root="+d, "--create", filepath.Join(d, "usr/lib/tmpfiles.d/hearth.conf")).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-tmpfiles: %v\n%s", err, out)
	}
	fi, err := os.Stat(filepath.Join(d, "run/hearth"))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 || strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Gid)) != string(m[1]) ||
		fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("/run/hearth from tmpfiles.d/hearth.conf: %v, want a directory 0750 of root and group hearth (%s)", fi, m[1])
	}
}

// verifyUnits runs systemd-analyze verify on the installed units, which must pass without
// a word, and checks its security exposure scores; then that verify does see the
// installed tree (a unit whose binary is missing fails).
func verifyUnits(t *testing.T, d string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		testtool.Missing(t, "systemd-analyze not found (package systemd; deploy/install-deps.sh installs it): the units are not verified")
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
	}{{"hearth-certd.service", 2.0}, {"hearth-netd.service", 3.0}, {"hearth-containerd-lite.service", 10}} {
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

// confinement runs a daemon the way its unit confines it, as far as that can be done
// without systemd: in a mount namespace where every mount is read-only (stricter than
// ProtectSystem=strict with a private /tmp) but the given directories and the mounts kept
// as they are, as root's uid with the given capability bounding set, no new privileges
// and one supplementary group, under strace.
type confinement struct {
	writable []string // bound read-write onto themselves: state, sockets, the trace
	keep     []string // mount points left alone, with those below them (netd: /proc, /sys, /dev)
	caps     string   // setpriv --bounding-set: -all, or -all,+net_admin,...
	group    int
	trace    string // directory of strace's output, one file per start
	hidepid  bool   // ProtectProc=invisible: /proc shows only the processes it may trace
}

// wrap makes a copy of binDir where name runs confined, and returns it.
func (c confinement) wrap(t *testing.T, name string) string {
	t.Helper()
	for _, tool := range []string{"strace", "setpriv", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: deploy/install-deps.sh installs it", tool)
		}
	}
	dir := t.TempDir()
	ents, err := os.ReadDir(binDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != name {
			if err := os.Symlink(filepath.Join(binDir, e.Name()), filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	keep := ""
	for _, k := range c.keep {
		keep += fmt.Sprintf("%s|%s/*|", k, k)
	}
	ws := strings.Join(c.writable, " ")
	hidepid := ""
	if c.hidepid {
		hidepid = "mount -t proc -o hidepid=invisible proc /proc"
	}
	// Mounts under /tmp and /run/netns are other tests' (containers, namespaces: hundreds
	// on a busy machine) and left as they are; /tmp itself is read-only. The probes check
	// the sandbox before the daemon starts. SIGTERM is passed to the daemon (strace's
	// child), which strace would otherwise detach from and leave running.
	script := fmt.Sprintf(`set -eu
for d in %[1]s; do mount --bind "$d" "$d"; done
awk '{print $5}' /proc/self/mountinfo | while read -r m; do
	case "$m" in %[2]s/tmp/*|/run/netns/*) continue ;; esac
	mount -o remount,bind,ro "$m" 2>/dev/null || true
done
for d in %[1]s; do mount -o remount,bind,rw "$d"; done
%[8]s
for probe in /etc /var/tmp /tmp /root /usr/lib %[3]s; do
	if touch "$probe/.hearth-probe" 2>/dev/null; then rm -f "$probe/.hearth-probe"; echo "sandbox: $probe is writable" >&2; exit 1; fi
done
strace -f -qq -o %[4]s/strace.$$ setpriv --no-new-privs --bounding-set %[5]s --inh-caps -all --ambient-caps -all \
	--groups %[6]d %[7]s "$@" &
s=$!
trap 'for c in $(cat /proc/$s/task/$s/children); do kill -TERM $c; done' TERM INT
wait $s || wait $s
`, ws, keep, filepath.Dir(c.writable[0]), c.trace, c.caps, c.group, filepath.Join(binDir, name), hidepid)
	inner := filepath.Join(dir, name+".confined.sh")
	writeFile(t, inner, []byte(script))
	writeFile(t, filepath.Join(dir, name), []byte("#!/bin/sh\nexec unshare --mount --propagation private sh "+inner+` "$@"`+"\n"))
	if err := os.Chmod(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// containerdLiteBounding is hearth-containerd-lite.service's CapabilityBoundingSet= as
// setpriv takes it: all but what the unit drops.
const containerdLiteBounding = "+all,-sys_module,-sys_time,-wake_alarm,-sys_boot,-mac_admin,-mac_override,-syslog,-audit_control,-audit_read,-block_suspend,-sys_pacct"

// boundedBinDir makes a copy of binDir where containerd-lite runs with its unit's
// capability bounding set and nothing else of the unit (it has no mount namespace).
func boundedBinDir(t *testing.T) string {
	t.Helper()
	unit, err := os.ReadFile("../deploy/systemd/hearth-containerd-lite.service")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^CapabilityBoundingSet=~(.*)$`).FindSubmatch(unit)
	if m == nil {
		t.Fatal("hearth-containerd-lite.service has no CapabilityBoundingSet=~")
	}
	var want []string
	for _, c := range strings.Fields(string(m[1])) {
		want = append(want, "-"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	if got := strings.TrimPrefix(containerdLiteBounding, "+all,"); got != strings.Join(want, ",") {
		t.Fatalf("the test drops %s, the unit %s", got, strings.Join(want, ","))
	}
	dir := t.TempDir()
	ents, err := os.ReadDir(binDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "containerd-lite" {
			if err := os.Symlink(filepath.Join(binDir, e.Name()), filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeFile(t, filepath.Join(dir, "containerd-lite"), []byte("#!/bin/sh\nexec setpriv --bounding-set "+
		containerdLiteBounding+" "+filepath.Join(binDir, "containerd-lite")+` "$@"`+"\n"))
	if err := os.Chmod(filepath.Join(dir, "containerd-lite"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startConfined starts name from the wrapped bin directory.
func startConfined(t *testing.T, wrapped, name, socket string, args ...string) *daemonProc {
	t.Helper()
	real := binDir
	binDir = wrapped
	defer func() { binDir = real }()
	return startDaemonOwned(t, nil, name, socket, args...)
}

// TestCertdUnderItsUnitsRestrictions runs certd confined as hearth-certd.service confines
// it: every mount read-only but its state and socket directories, /proc with
// hidepid=invisible, no capabilities at all,
// and the group its socket must be given only as a supplementary group. It issues a local
// certificate and an ACME one from Pebble (HTTP-01, on a port of its own). Every system
// call it made is then checked against what the unit's seccomp-based settings allow:
// SystemCallFilter=@system-service, RestrictAddressFamilies=, MemoryDenyWriteExecute=,
// RestrictNamespaces=, RestrictSUIDSGID=, LockPersonality=, and the files it opened
// against ProtectProc=, ProtectKernelTunables= and PrivateDevices=.
func TestCertdUnderItsUnitsRestrictions(t *testing.T) {
	requireRoot(t)
	allowed := syscallGroup(t, "@system-service")
	p := startPebble(t, false)
	dir := tempDir(t)
	c := confinement{caps: "-all", group: 4242, trace: filepath.Join(dir, "trace"), hidepid: true}
	for _, d := range []string{"state", "run", "trace"} {
		c.writable = append(c.writable, filepath.Join(dir, d))
		if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	state, run := c.writable[0], c.writable[1]
	socket := filepath.Join(run, "certd.sock")
	d := startConfined(t, c.wrap(t, "certd"), "certd", socket, "--run-dir", run, "--state-dir", state,
		"--group", strconv.Itoa(c.group), "--acme-directory", p.Directory, "--acme-ca-roots", p.RootsFile,
		"--http01-addr", p.HTTP01Addr)
	t.Cleanup(func() {
		d.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("certd log:\n%s", d.log.String())
		}
	})
	// 4242 is a group no one on the host has: only the supplementary group lets a process
	// without CAP_CHOWN give it its socket.
	if fi, err := os.Stat(socket); err != nil || fi.Sys().(*syscall.Stat_t).Gid != uint32(c.group) || fi.Mode().Perm() != 0o660 {
		t.Errorf("certd's socket: %v, want mode 0660 and group %d", fi, c.group)
	}

	var local certv1.IssueCertificateResponse
	hearthctlJSON(t, run, &local, "cert", "issue", "nas.local")
	if len(local.GetCertificate().GetChainPem()) == 0 {
		t.Errorf("no local certificate: %v", &local)
	}
	var acme certv1.IssueCertificateResponse
	hearthctlJSON(t, run, &acme, "cert", "issue", "www.sandbox.hearth.test", "--acme", "--challenge", "http-01")
	verifyACME(t, p, acme.GetCertificate().GetChainPem(), "www.sandbox.hearth.test")
	d.stop(syscall.SIGTERM)
	if !d.cmd.ProcessState.Success() {
		t.Errorf("certd confined: %v", d.cmd.ProcessState)
	}

	calls, refused := checkTrace(t, c.trace, filepath.Join(binDir, "certd"), allowed, traceRules{
		families: []string{"AF_UNIX", "AF_INET", "AF_INET6"}, protectProc: true, readOnlySys: true})
	t.Logf("certd made %d distinct system calls: %v", len(calls), calls)
	for _, r := range refused {
		t.Error(r)
	}
}

// TestNetdUnderItsUnitsRestrictions runs netd confined as hearth-netd.service confines it:
// every mount read-only but its state and socket directories and /proc, /sys and /dev,
// /proc mounted with hidepid=invisible, with only the capabilities the unit keeps. Containers get their veth, address and route
// (netd enters their network namespaces), the proxy answers on port 80, the DNS server on
// 53 names the other container, and it all holds across a restart of netd. Its system
// calls are checked as certd's are, with the unit's own address families and namespaces.
// containerd-lite runs beside it with its unit's capability bounding set.
func TestNetdUnderItsUnitsRestrictions(t *testing.T) {
	requireRoot(t)
	allowed := syscallGroup(t, "@system-service")
	// containerd-lite runs with its own unit's capability bounding set.
	real := binDir
	binDir = boundedBinDir(t)
	l := newLab(t)
	binDir = real
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", l.cld.cmd.Process.Pid))
	bnd := regexp.MustCompile(`CapBnd:\s*([0-9a-f]+)`).FindSubmatch(status)
	if bnd == nil {
		t.Fatalf("no CapBnd in containerd-lite's status:\n%s", status)
	}
	if n, err := strconv.ParseUint(string(bnd[1]), 16, 64); err != nil || n&(1<<16) != 0 || n&(1<<21) == 0 {
		t.Fatalf("containerd-lite's bounding set: %q, want CAP_SYS_ADMIN without CAP_SYS_MODULE", bnd)
	}
	br := testBridge(t)
	gateway := gatewayOf(br)
	c := confinement{caps: "-all,+net_admin,+net_bind_service,+sys_admin", group: 4242,
		keep: []string{"/proc", "/sys", "/dev"}, trace: filepath.Join(l.dir, "trace"), hidepid: true,
		writable: []string{filepath.Join(l.dir, "netd"), l.runDir, filepath.Join(l.dir, "trace")}}
	for _, d := range c.writable {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	wrapped := c.wrap(t, "netd")
	startNetd := func() {
		l.netd = startConfined(t, wrapped, "netd", filepath.Join(l.runDir, "netd.sock"),
			append([]string{"--run-dir", l.runDir, "--state-dir", c.writable[0], "--group", strconv.Itoa(c.group)}, br...)...)
	}
	startNetd()
	for _, n := range []string{"cnet1", "cnet2"} {
		if _, err := hearthctl(t, l.runDir, "container", "create", n); err != nil {
			t.Fatal(err)
		}
		if _, err := hearthctl(t, l.runDir, "container", "start", n); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		a1, a2 := l.inspect(t, "cnet1").GetContainer().GetAddress(), l.inspect(t, "cnet2").GetContainer().GetAddress()
		if a1 == "" || a2 == "" {
			t.Fatalf("%s: addresses %q and %q", when, a1, a2)
		}
		if out, err := l.inside(t, "cnet1", nil, "ip", "route"); err != nil || !strings.Contains(out, "default via "+gateway) {
			t.Errorf("%s: routes inside: %v\n%s", when, err, out)
		}
		out, err := l.inside(t, "cnet1", nil, "sh", "-c", "printf 'GET / HTTP/1.0\\r\\nHost: x.local\\r\\n\\r\\n' | nc -w 2 "+gateway+" 80")
		if err != nil || !strings.Contains(out, "308") {
			t.Errorf("%s: netd's proxy on %s:80 from inside: %q %v", when, gateway, out, err)
		}
		if out, err := l.inside(t, "cnet1", nil, "nslookup", "cnet2.hearth.internal", gateway); err != nil || !strings.Contains(out, a2) {
			t.Errorf("%s: netd's DNS for cnet2 (%s): %v\n%s", when, a2, err, out)
		}
	}
	check("confined netd")
	l.netd.stop(syscall.SIGTERM)
	if !l.netd.cmd.ProcessState.Success() {
		t.Errorf("netd confined: %v\n%s", l.netd.cmd.ProcessState, l.netd.log.String())
	}
	startNetd()
	check("confined netd restarted")
	l.netd.stop(syscall.SIGTERM)

	calls, refused := checkTrace(t, c.trace, filepath.Join(binDir, "netd"), allowed, traceRules{
		families: []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}, setns: "CLONE_NEWNET"})
	t.Logf("netd made %d distinct system calls over its two runs: %v", len(calls), calls)
	if !slices.Contains(calls, "setns") {
		t.Errorf("netd never entered a container's network namespace: the trace missed what the test is for")
	}
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

// traceRules are a unit's settings that checkTrace holds a trace to.
type traceRules struct {
	families    []string // RestrictAddressFamilies=
	setns       string   // RestrictNamespaces=: the one kind it may enter, or none
	protectProc bool     // ProtectProc=invisible: only its own /proc/PID
	readOnlySys bool     // ProtectKernelTunables=: /proc/sys read-only
}

// checkTrace reads strace's output (each file in dir) from the exec of bin on and returns
// the calls made and what the unit's settings would have refused.
func checkTrace(t *testing.T, dir, bin string, allowed map[string]bool, rules traceRules) ([]string, []string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "strace.*"))
	if len(files) == 0 {
		t.Fatalf("no trace in %s", dir)
	}
	seen := map[string]bool{}
	var refused []string
	for _, f := range files {
		refused = append(refused, checkTraceFile(t, f, bin, allowed, rules, seen)...)
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, refused
}

func checkTraceFile(t *testing.T, trace, bin string, allowed map[string]bool, rules traceRules, seen map[string]bool) []string {
	t.Helper()
	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
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
			if fam := socketFam.FindString(args); !slices.Contains(rules.families, fam) {
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
		case "unshare":
			refuse("RestrictNamespaces=", line)
		case "setns":
			if rules.setns == "" || !strings.Contains(args, rules.setns) {
				refuse("RestrictNamespaces=", line)
			}
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
			case rules.protectProc && strings.HasPrefix(p[1], "/proc/") && !procAllowed.MatchString(p[1]):
				refuse("ProtectProc=invisible", line)
			case rules.readOnlySys && strings.HasPrefix(p[1], "/proc/sys/") && !strings.Contains(args, "O_RDONLY"):
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
		t.Fatalf("%s never shows %s starting", trace, bin)
	}
	return refused
}
