package integration

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hearth.dev/internal/hpkg"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
)

var (
	examplesMu  sync.Mutex
	examplesDir string
	examplesHad = map[string]bool{}
)

// examplePackages builds the example packages (examples/build.sh) once per test run and
// returns their directory (dev.key, dev.pub and the .hpkg files).
func examplePackages(t testing.TB, which ...string) string {
	t.Helper()
	examplesMu.Lock()
	defer examplesMu.Unlock()
	if examplesDir == "" {
		d, err := os.MkdirTemp("", "hearth-examples-")
		if err != nil {
			t.Fatal(err)
		}
		examplesDir = d
	}
	for _, w := range which {
		if examplesHad[w] {
			continue
		}
		cmd := exec.Command("../examples/build.sh", examplesDir, w)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if out, err := cmd.Output(); err != nil {
			t.Fatalf("examples/build.sh %s: %v\n%s%s", w, err, out, stderr.String())
		}
		examplesHad[w] = true
	}
	return examplesDir
}

// installLab is a lab that trusts the examples' key.
func installLab(t *testing.T, which ...string) (*lab, string) {
	t.Helper()
	requireRoot(t)
	ex := examplePackages(t, which...)
	l := newLab(t)
	if _, err := hearthctl(t, l.runDir, "keys", "trust", filepath.Join(ex, "dev.pub")); err != nil {
		t.Fatal(err)
	}
	return l, ex
}

// hostState is what a refused or undone operation must leave as it was.
type hostState struct {
	Images, Containers, Packages string
	Disks, Staging, Kept         []string
	Mounts                       []string
}

func (l *lab) hostState(t *testing.T) hostState {
	t.Helper()
	list := func(args ...string) string {
		out, err := hearthctl(t, l.runDir, append([]string{"-o", "json"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	dir := func(p string) []string {
		ents, _ := os.ReadDir(p)
		var out []string
		for _, e := range ents {
			// The formatted templates new disks are copied from are a cache, made by the
			// first disk of a size and kept for the next: not a package's state.
			if e.Name() != ".templates" {
				out = append(out, e.Name())
			}
		}
		return out
	}
	return hostState{
		Images: list("image", "ls"), Containers: list("container", "ls"), Packages: list("ls"),
		Disks: dir(filepath.Join(l.stateDir, "disks")), Staging: dir(filepath.Join(l.stateDir, "packages", "staging")),
		Mounts: mountsUnder(t, l.stateDir),
	}
}

func (s hostState) diff(o hostState) string { return jsonDiff(s, o) }

// jsonDiff is "" when before and after encode alike, and both, indented, when not.
func jsonDiff(before, after any) string {
	a, _ := json.MarshalIndent(before, "", "  ")
	b, _ := json.MarshalIndent(after, "", "  ")
	if bytes.Equal(a, b) {
		return ""
	}
	return fmt.Sprintf("before:\n%s\nafter:\n%s", a, b)
}

// TestPackageRefusals: a package with one byte flipped, truncated, with an entry added,
// signed by a key the host does not trust, or holding a manifest that does not validate
// is refused with a message saying so, and the image store, the containers, the disks and
// the staging area are as they were.
func TestPackageRefusals(t *testing.T) {
	l, ex := installLab(t, "busybox")
	good, err := os.ReadFile(filepath.Join(ex, "busybox-1.0.0.hpkg"))
	must(t, err)
	dir := tempDir(t)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, data, 0o644))
		return p
	}
	flip := func(at int) []byte {
		b := slices.Clone(good)
		b[at] ^= 0x01
		return b
	}
	// An entry added before the end of the archive (the format ends with two zero blocks).
	end := len(good) - 1024
	if !bytes.Equal(good[end:], make([]byte, 1024)) {
		t.Fatal("the package does not end with two zero blocks")
	}
	hdr := make([]byte, 512)
	copy(hdr, "extra.txt")
	copy(hdr[100:], "0000644\x00")
	copy(hdr[124:], fmt.Sprintf("%011o\x00", 5))
	copy(hdr[148:], "        ")
	hdr[156] = '0'
	copy(hdr[257:], "ustar\x0000")
	sum := 0
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:], fmt.Sprintf("%06o\x00 ", sum))
	body := make([]byte, 512)
	copy(body, "extra")
	added := append(append(append(slices.Clone(good[:end]), hdr...), body...), make([]byte, 1024)...)

	// Signed by a key the host does not trust.
	other := filepath.Join(dir, "other")
	if _, err := hearthctl(t, l.runDir, "keys", "generate", "--out", other); err != nil {
		t.Fatal(err)
	}
	src := tempDir(t)
	must(t, exec.Command("tar", "-xf", filepath.Join(ex, "busybox-1.0.0.hpkg"), "-C", src).Run())
	os.Remove(filepath.Join(src, hpkg.TOCName))
	os.Remove(filepath.Join(src, hpkg.SigName))
	// pack reads images from files named in the manifest: point it at the package's layout.
	mf, _ := os.ReadFile(filepath.Join(src, "manifest.yaml"))
	must(t, os.WriteFile(filepath.Join(src, "manifest.yaml"), bytes.Replace(mf, []byte("images/busybox.tar"), []byte("images"), 1), 0o644))
	untrusted := filepath.Join(dir, "untrusted.hpkg")
	if _, err := hearthctl(t, l.runDir, "pack", src, "--key", other+".key", "--out", untrusted); err != nil {
		t.Fatal(err)
	}
	// Signed by the trusted key, well formed, but its manifest does not validate.
	priv, err := hpkg.ReadPrivateKey(filepath.Join(ex, "dev.key"))
	must(t, err)
	var bad bytes.Buffer
	must(t, hpkg.WriteUnchecked(&bad, []hpkg.File{hpkg.Bytes(hpkg.ManifestName, []byte("id: busybox\nversion: 1.0.0\nimages: {bb: {oci: images}}\ndaemons: {web: {image: nope}}\n"))}, "busybox", "1.0.0", ed25519.PrivateKey(priv)))

	before := l.hostState(t)
	for _, tc := range []struct {
		name string
		file string
		want []string
	}{
		{"a byte flipped in the table of contents", write("toc.hpkg", flip(600)), []string{"InvalidArgument"}},
		{"a byte flipped in an image", write("mid.hpkg", flip(len(good)/2)), []string{"InvalidArgument", "sha256"}},
		{"a byte flipped near the end", write("late.hpkg", flip(end-100)), []string{"InvalidArgument"}},
		{"truncated", write("trunc.hpkg", good[:len(good)*2/3]), []string{"InvalidArgument", "truncated"}},
		{"an entry added", write("added.hpkg", added), []string{"InvalidArgument", "extra.txt"}},
		{"an untrusted key", untrusted, []string{"PermissionDenied", "does not trust", "keys trust"}},
		{"a manifest that does not validate", write("badmf.hpkg", bad.Bytes()), []string{"InvalidArgument", "daemons.web.image", "unknown image"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hearthctl(t, l.runDir, "install", tc.file)
			if err == nil {
				t.Fatal("installed")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if d := before.diff(l.hostState(t)); d != "" {
				t.Errorf("the host changed:\n%s", d)
			}
		})
	}
	// The same untrusted package installs with --allow-untrusted, and says so.
	out, stderr, err := runSplit(filepath.Join(binDir, "hearthctl"), "--run-dir", l.runDir, "install", "--allow-untrusted", untrusted)
	if err != nil || !strings.Contains(stderr, "does not trust") || !strings.Contains(out, "untrusted key") {
		t.Fatalf("install --allow-untrusted: %v\n%s%s", err, out, stderr)
	}
}

// TestPackageLifecycle: install, uninstall keeping the data, a reinstall that finds it,
// uninstall --purge; the verbs' JSON; two installs of different packages at once; two
// installs of the same package at once (one wins, the other says why).
func TestPackageLifecycle(t *testing.T) {
	l, ex := installLab(t, "busybox")
	pkg := filepath.Join(ex, "busybox-1.0.0.hpkg")
	res := &containerv1.PackageResult{}
	hearthctlJSON(t, l.runDir, res, "install", pkg)
	if p := res.GetPackage(); p.GetId() != "busybox" || p.GetVersion() != "1.0.0" || !p.GetTrusted() || p.GetState() != "running" {
		t.Fatalf("install: %v", res)
	}
	// The install hook wrote the page; the daemon serves it.
	if out, err := hearthctl(t, l.runDir, "exec", "busybox", "web", "--", "wget", "-qO-", "http://127.0.0.1:8080/"); err != nil || !strings.Contains(out, "hello from busybox 1.0.0") {
		t.Fatalf("page: %q %v", out, err)
	}
	if _, err := hearthctl(t, l.runDir, "exec", "busybox", "web", "--", "sh", "-c", "echo kept > /www/mine"); err != nil {
		t.Fatal(err)
	}
	ls := &containerv1.ListPackagesResponse{}
	hearthctlJSON(t, l.runDir, ls, "ls")
	if len(ls.GetPackages()) != 1 {
		t.Fatalf("ls: %v", ls)
	}
	info := &containerv1.GetPackageResponse{}
	hearthctlJSON(t, l.runDir, info, "info", "busybox")
	if !strings.Contains(string(info.GetManifest()), "id: busybox") || info.GetPackage().GetImages()["bb"] == "" ||
		!strings.Contains(info.GetReadme(), "smallest Hearth package") || info.GetLicense() == "" {
		t.Fatalf("info: %v", info)
	}
	// Its assets, read-only in the daemon's subcontainer.
	if out, err := hearthctl(t, l.runDir, "exec", "busybox", "web", "--", "cat", "/media/hearth/assets/motd.txt"); err != nil || !strings.Contains(out, "read-only in every daemon") {
		t.Fatalf("assets: %q %v", out, err)
	}
	if _, err := hearthctl(t, l.runDir, "exec", "busybox", "web", "--", "sh", "-c", "echo x > /media/hearth/assets/motd.txt"); err == nil {
		t.Fatal("the assets are writable")
	}
	for _, verb := range []string{"stop", "start", "restart"} {
		if _, err := hearthctl(t, l.runDir, verb, "busybox"); err != nil {
			t.Fatalf("%s: %v", verb, err)
		}
	}
	if _, err := hearthctl(t, l.runDir, "uninstall", "busybox"); err != nil {
		t.Fatal(err)
	}
	if out, _ := hearthctl(t, l.runDir, "image", "ls"); strings.Contains(out, "busybox/") {
		t.Errorf("the package's image stayed after uninstall:\n%s", out)
	}
	hearthctlJSON(t, l.runDir, res, "install", pkg)
	if out, err := hearthctl(t, l.runDir, "exec", "busybox", "web", "--", "cat", "/www/mine"); err != nil || strings.TrimSpace(out) != "kept" {
		t.Fatalf("a reinstall did not find the kept data: %q %v", out, err)
	}
	if _, err := hearthctl(t, l.runDir, "uninstall", "--purge", "busybox"); err != nil {
		t.Fatal(err)
	}
	hearthctlJSON(t, l.runDir, res, "install", pkg)
	if out, _ := hearthctl(t, l.runDir, "exec", "busybox", "web", "--", "cat", "/www/mine"); strings.Contains(out, "kept") {
		t.Fatal("data survived --purge")
	}
	if _, err := hearthctl(t, l.runDir, "uninstall", "--purge", "busybox"); err != nil {
		t.Fatal(err)
	}

	// A second package: the same files under another id.
	src := tempDir(t)
	must(t, exec.Command("tar", "-xf", pkg, "-C", src).Run())
	os.Remove(filepath.Join(src, hpkg.TOCName))
	os.Remove(filepath.Join(src, hpkg.SigName))
	mf, _ := os.ReadFile(filepath.Join(src, "manifest.yaml"))
	mf = bytes.Replace(bytes.Replace(mf, []byte("id: busybox"), []byte("id: busybox-two"), 1), []byte("images/busybox.tar"), []byte("images"), 1)
	must(t, os.WriteFile(filepath.Join(src, "manifest.yaml"), mf, 0o644))
	two := filepath.Join(tempDir(t), "two.hpkg")
	if _, err := hearthctl(t, l.runDir, "pack", src, "--key", filepath.Join(ex, "dev.key"), "--out", two); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, f := range []string{pkg, two} {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = hearthctl(t, l.runDir, "install", f) }()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("two packages at once: %v", errs)
	}
	for _, id := range []string{"busybox", "busybox-two"} {
		if _, err := hearthctl(t, l.runDir, "uninstall", "--purge", id); err != nil {
			t.Fatal(err)
		}
	}
	// The same package twice at once: one wins, the other says why; nothing half made.
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = hearthctl(t, l.runDir, "install", pkg) }()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case strings.Contains(err.Error(), "under way") || strings.Contains(err.Error(), "is installed"):
		default:
			t.Errorf("the loser's error: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of two installs of the same package won: %v", won, errs)
	}
	hearthctlJSON(t, l.runDir, ls, "ls")
	if len(ls.GetPackages()) != 1 || ls.GetPackages()[0].GetState() != "running" {
		t.Fatalf("after the race: %v", ls)
	}
}

// killPowerCut kills what a power cut would: every process of the lab's containers and
// their LXC monitors (containerd-lite is dead already).
func (l *lab) killPowerCut(t *testing.T) {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid := atoi(e.Name())
		if pid <= 1 {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		c := string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		if strings.HasPrefix(c, "[lxc monitor] "+l.lxcPath()+" ") {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	lxcs, _ := os.ReadDir(l.lxcPath())
	for _, e := range lxcs {
		if out, err := exec.Command("lxc-info", "-P", l.lxcPath(), "-n", e.Name(), "-p", "-H").Output(); err == nil {
			if pid := atoi(strings.TrimSpace(string(out))); pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	// Inits gone, their namespaces with them; wait until LXC says so.
	deadline := time.Now().Add(10 * time.Second)
	for _, e := range lxcs {
		for time.Now().Before(deadline) {
			out, _ := exec.Command("lxc-info", "-P", l.lxcPath(), "-n", e.Name(), "-s", "-H").Output()
			if strings.TrimSpace(string(out)) != "RUNNING" {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The lab forgets their cgroups when it ends: by then the processes killed have been
	// reaped (a zombie holds its cgroup).
	for _, e := range lxcs {
		if !slices.Contains(l.killed, e.Name()) {
			l.killed = append(l.killed, e.Name())
		}
	}
}

// forgetCgroups removes the cgroups LXC made for container name, in every hierarchy, as a
// power cut does: LXC, killed, never removes them, and left they pile up on the host (LXC
// then names each later start's cgroups past them, name-1, name-2...). Only empty ones go
// (rmdir refuses the others), retried for up to wait while one that lists no process
// (a cgroup the kernel is still taking down) is refused.
func forgetCgroups(name string, wait time.Duration) {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*") // v1: one per controller
	hierarchies = append(hierarchies, "/sys/fs/cgroup") // v2
	deadline := time.Now().Add(wait)
	for {
		left := 0
		for _, h := range hierarchies {
			for _, kind := range []string{"payload", "monitor"} {
				base := filepath.Join(h, "lxc."+kind+"."+name)
				tops, _ := filepath.Glob(base + "-[0-9]*")
				if _, err := os.Stat(base); err == nil {
					tops = append(tops, base)
				}
				for _, top := range tops {
					var dirs []string
					_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
						if err == nil && d.IsDir() {
							dirs = append(dirs, p)
						}
						return nil
					})
					for i := len(dirs) - 1; i >= 0; i-- {
						err := syscall.Rmdir(dirs[i])
						if err == nil || errors.Is(err, fs.ErrNotExist) {
							continue
						}
						if procs, rerr := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs")); rerr == nil && len(procs) == 0 {
							left++
						}
					}
				}
			}
		}
		if left == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// crashAt runs args (an install or update) against a containerd-lite that kills itself
// at step, then, for a power cut, kills the containers and their monitors too, and starts
// containerd-lite again, which must finish or undo the operation.
func (l *lab) crashAt(t *testing.T, step string, powerCut bool, args ...string) {
	t.Helper()
	l.cld.stop(syscall.SIGTERM)
	l.env = []string{"HEARTH_TEST_CRASH_AT=" + step}
	l.start(t)
	l.env = nil
	_, err := hearthctl(t, l.runDir, args...)
	select {
	case <-l.cld.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("containerd-lite did not die at %s (the call said: %v)", step, err)
	}
	if err == nil {
		t.Fatalf("%v succeeded though containerd-lite died at %s", args, step)
	}
	if !strings.Contains(l.cld.log.String(), "dying at a journaled step") {
		t.Fatalf("containerd-lite died, but not at the test's step:\n%s", l.cld.log.String())
	}
	if powerCut {
		l.killPowerCut(t)
	}
	l.start(t)
}

// packageIs checks that the package is wholly at version (running and ready), or wholly
// absent when version is "".
func (l *lab) packageIs(t *testing.T, id, version string) {
	t.Helper()
	ls := &containerv1.ListPackagesResponse{}
	hearthctlJSON(t, l.runDir, ls, "ls")
	var got []string
	for _, p := range ls.GetPackages() {
		got = append(got, p.GetId()+" "+p.GetVersion()+" "+p.GetState())
	}
	want := []string{}
	if version != "" {
		want = []string{id + " " + version + " running"}
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("packages: %v, want %v", got, want)
	}
	if version == "" {
		if out, _ := hearthctl(t, l.runDir, "container", "ls"); strings.Contains(out, id) {
			t.Fatalf("container of %s left:\n%s", id, out)
		}
		return
	}
	l.waitDaemons(t, id, "ready", 30*time.Second, settledJobs)
}

// settledJobs: every daemon ready, every oneshot done.
func settledJobs(ds map[string]*guestv1.Daemon) bool {
	for _, d := range ds {
		if (d.GetOneshot() && d.GetState() != guestv1.DaemonState_DAEMON_STATE_DONE) || (!d.GetOneshot() && d.GetState() != guestv1.DaemonState_DAEMON_STATE_READY) {
			return false
		}
	}
	return len(ds) > 0
}

// busyboxNext packs busybox 1.1.0 from the 1.0.0 package: its migrate hook marks the
// page with the versions, so a test can tell which ran.
func busyboxNext(t testing.TB, l *lab, ex string) string {
	t.Helper()
	return repackBusybox(t, l, ex, "busybox-1.1.0.hpkg", func(mf []byte) []byte {
		mf = bytes.Replace(mf, []byte("version: 1.0.0"), []byte("version: 1.1.0"), 1)
		return bytes.Replace(mf, []byte("hooks:\n"), []byte(`hooks:
  migrate:
    image: bb
    command: [/bin/sh, -c, "echo migrated $HEARTH_FROM_VERSION to $HEARTH_TO_VERSION >> /www/index.html"]
    mounts: [{volume: www, path: /www}]
`), 1)
	})
}

// page reads files of busybox's volume (the page by default).
func (l *lab) page(t *testing.T, files ...string) string {
	t.Helper()
	if len(files) == 0 {
		files = []string{"/www/index.html"}
	}
	out, err := hearthctl(t, l.runDir, append([]string{"exec", "busybox", "web", "--", "cat"}, files...)...)
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	return out
}

// TestPackageCrashes: containerd-lite is killed (kill -9) at each journaled step of an
// install, an update and a restore in place, alone or with every process of the package and its LXC
// monitor (a power cut), then started again. The package is then wholly on the old
// version or wholly on the new one, running, with its data intact.
func TestPackageCrashes(t *testing.T) {
	l, ex := installLab(t, "busybox")
	v1 := filepath.Join(ex, "busybox-1.0.0.hpkg")
	v2 := busyboxNext(t, l, ex)
	for _, cut := range []bool{false, true} {
		how := "kill -9"
		if cut {
			how = "power cut"
		}
		for _, step := range []string{"verified", "images", "created", "started", "committed"} {
			t.Run(how+"/install:"+step, func(t *testing.T) {
				before := l.hostState(t)
				l.crashAt(t, "install:"+step, cut, "install", v1)
				if step == "committed" {
					defer hearthctl(t, l.runDir, "uninstall", "--purge", "busybox")
					l.packageIs(t, "busybox", "1.0.0")
					if p := l.page(t); !strings.Contains(p, "hello from busybox 1.0.0") {
						t.Fatalf("page after an install finished at start-up: %q", p)
					}
					if _, err := hearthctl(t, l.runDir, "uninstall", "--purge", "busybox"); err != nil {
						t.Fatal(err)
					}
				} else {
					l.packageIs(t, "busybox", "")
				}
				if d := before.diff(l.hostState(t)); d != "" {
					t.Fatalf("the host is not as before the install:\n%s", d)
				}
			})
		}
		for _, step := range []string{"verified", "images", "stopped", "snapshot", "replaced", "started", "committed"} {
			t.Run(how+"/update:"+step, func(t *testing.T) {
				if _, err := hearthctl(t, l.runDir, "install", v1); err != nil {
					t.Fatal(err)
				}
				defer hearthctl(t, l.runDir, "uninstall", "--purge", "busybox")
				mark := "data of " + how + " " + step
				if _, err := hearthctl(t, l.runDir, "exec", "busybox", "web", "--", "sh", "-c", "echo '"+mark+"' > /www/mine"); err != nil {
					t.Fatal(err)
				}
				l.crashAt(t, "update:"+step, cut, "update", v2)
				page := l.page(t, "/www/index.html", "/www/mine")
				if step == "committed" {
					l.packageIs(t, "busybox", "1.1.0")
					if !strings.Contains(page, "migrated 1.0.0 to 1.1.0") {
						t.Errorf("1.1.0 runs but its migration is not in the data: %q", page)
					}
				} else {
					l.packageIs(t, "busybox", "1.0.0")
					if strings.Contains(page, "migrated") {
						t.Errorf("rolled back to 1.0.0, but the data holds 1.1.0's migration: %q", page)
					}
				}
				if !strings.Contains(page, mark) || !strings.Contains(page, "hello from busybox 1.0.0") {
					t.Errorf("the data is not intact: %q", page)
				}
				if out, _ := hearthctl(t, l.runDir, "image", "ls"); strings.Count(out, "busybox/") != 1 {
					t.Errorf("images after the update settled: want one of the package's:\n%s", out)
				}
				if ents, _ := os.ReadDir(filepath.Join(l.stateDir, "packages", "snapshots")); len(ents) != 0 {
					t.Errorf("snapshots left: %v", ents)
				}
			})
		}
		for _, step := range []string{"verified", "stopped", "restored", "swapping", "started", "committed"} {
			t.Run(how+"/restore:"+step, func(t *testing.T) {
				if _, err := hearthctl(t, l.runDir, "install", v1); err != nil {
					t.Fatal(err)
				}
				defer hearthctl(t, l.runDir, "uninstall", "--purge", "busybox")
				repo, pass := filepath.Join(tempDir(t), "backups"), filepath.Join(l.dir, "pass")
				must(t, os.WriteFile(pass, []byte("pw"), 0o600))
				write := func(what string) {
					if _, err := hearthctl(t, l.runDir, "exec", "busybox", "web", "--", "sh", "-c", "echo '"+what+"' > /www/mine"); err != nil {
						t.Fatal(err)
					}
				}
				write("as backed up")
				if _, err := hearthctl(t, l.runDir, "backup", "busybox", "--to", repo, "--passphrase-file", pass); err != nil {
					t.Fatal(err)
				}
				write("live, after the backup")
				l.crashAt(t, "restore:"+step, cut, "restore", "busybox", "--from", repo, "--passphrase-file", pass)
				l.packageIs(t, "busybox", "1.0.0")
				want := "live, after the backup"
				if step == "committed" {
					want = "as backed up"
				}
				if got := strings.TrimSpace(l.page(t, "/www/mine")); got != want {
					t.Errorf("the data after a crash at restore:%s is %q, want %q", step, got, want)
				}
				if ents, _ := os.ReadDir(filepath.Join(l.stateDir, "disks", "busybox", "volumes")); len(ents) != 1 {
					t.Errorf("volumes on the disk after the crash: %v, want only www", ents)
				}
			})
		}
	}
}
