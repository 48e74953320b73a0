package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// A canary is what an attacker inside a container must never change on the host: trees
// of files hashed with their types, modes, owners, sizes, contents and link targets, and
// the host's mount table outside the attacker's own directory.
type canary struct {
	trees map[string]string // label → host directory
	// ownDirs are the attacking containers' directories; mounts below them are their own.
	ownDirs []string
	// labDir is the test's directory: every mount in it counts, even new ones.
	labDir string
}

// entry is one file of a tree, as a line.
type entry struct {
	kind              string
	mode              fs.FileMode
	uid, gid          uint32
	size              int64
	sha256, linkTo    string
	unreadableContent string
}

func (e entry) String() string {
	s := fmt.Sprintf("%s %v %d:%d size %d", e.kind, e.mode, e.uid, e.gid, e.size)
	if e.sha256 != "" {
		s += " sha256 " + e.sha256[:12]
	}
	if e.linkTo != "" {
		s += " -> " + e.linkTo
	}
	if e.unreadableContent != "" {
		s += " (" + e.unreadableContent + ")"
	}
	return s
}

// snapshot is a canary's state at one moment: "label:relative path" or "mount:target" → line.
type snapshot map[string]string

func (c *canary) take(t testing.TB) snapshot {
	t.Helper()
	s := snapshot{}
	for label, dir := range c.trees {
		if err := hashTree(dir, func(rel string, e entry) { s[label+":"+rel] = e.String() }); err != nil {
			t.Fatalf("canary %s (%s): %v", label, dir, err)
		}
	}
	for target, line := range c.mounts(t) {
		s["mount:"+target] = line
	}
	return s
}

// hashTree walks dir without following symlinks and calls fn for every entry.
func hashTree(dir string, fn func(rel string, e entry)) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && rel == "." {
				fn(rel, entry{kind: "missing"})
				return nil
			}
			fn(rel, entry{kind: "error", unreadableContent: err.Error()})
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			fn(rel, entry{kind: "error", unreadableContent: err.Error()})
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{mode: fi.Mode(), uid: st.Uid, gid: st.Gid}
		switch fi.Mode().Type() {
		case 0:
			e.kind, e.size = "file", fi.Size()
			e.sha256, e.unreadableContent = fileSHA256(p)
		case fs.ModeDir:
			e.kind = "dir"
		case fs.ModeSymlink:
			e.kind = "symlink"
			e.linkTo, _ = os.Readlink(p)
		case fs.ModeSocket:
			e.kind = "socket"
		case fs.ModeNamedPipe:
			e.kind = "fifo"
		default:
			e.kind = "other"
		}
		fn(rel, e)
		return nil
	})
}

func fileSHA256(p string) (string, string) {
	// O_NONBLOCK: a FIFO swapped in for the file must not hang the walk.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", err.Error()
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err.Error()
	}
	return hex.EncodeToString(h.Sum(nil)), ""
}

// noisyMounts are host places where other work on this machine mounts and unmounts.
var noisyMounts = []string{"/run/netns/", "/var/run/netns/", "/run/user/", "/run/docker/", "/var/lib/docker/"}

// mounts lists the host's mounts outside the attacker's directory: target → what is
// mounted there (source, file system and options; several mounts at one target are
// joined). Other tests' labs and noisy places are left out; everything in our lab counts.
func (c *canary) mounts(t testing.TB) map[string]string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Clean(os.TempDir()) + "/"
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		target := f[4]
		own := false
		for _, d := range c.ownDirs {
			own = own || target == d || strings.HasPrefix(target, d+"/")
		}
		if own {
			continue
		}
		inLab := target == c.labDir || strings.HasPrefix(target, c.labDir+"/")
		if !inLab {
			if strings.HasPrefix(target, tmp) {
				continue
			}
			noisy := false
			for _, p := range noisyMounts {
				noisy = noisy || strings.HasPrefix(target+"/", p)
			}
			if noisy {
				continue
			}
		}
		sep := 6
		for sep < len(f) && f[sep] != "-" {
			sep++
		}
		desc := strings.Join(f[sep+1:], " ") + " opts " + f[5]
		if out[target] != "" {
			desc = out[target] + " | " + desc
		}
		out[target] = desc
	}
	return out
}

// diff says what changed between two snapshots, one line per entry, sorted. Mounts
// outside the lab that appeared are not counted (the machine is shared); mounts that
// vanished or changed are.
func (c *canary) diff(before, after snapshot) []string {
	var out []string
	for k, b := range before {
		a, ok := after[k]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("REMOVED  %s (was %s)", k, b))
		case a != b:
			out = append(out, fmt.Sprintf("CHANGED  %s: %s => %s", k, b, a))
		}
	}
	for k, a := range after {
		if _, ok := before[k]; ok {
			continue
		}
		if strings.HasPrefix(k, "mount:") {
			target := strings.TrimPrefix(k, "mount:")
			if target != c.labDir && !strings.HasPrefix(target, c.labDir+"/") {
				continue
			}
		}
		out = append(out, fmt.Sprintf("ADDED    %s (%s)", k, a))
	}
	sort.Strings(out)
	return out
}

// check fails t with every change since before, naming the attack.
func (c *canary) check(t testing.TB, attack string, before snapshot) {
	t.Helper()
	if d := c.diff(before, c.take(t)); len(d) > 0 {
		t.Errorf("%s changed the host outside the attacker's container (%d changes):\n  %s", attack, len(d), strings.Join(d, "\n  "))
	}
}

// canaryFile is one entry of the canary tree the tests make on the host.
type canaryFile struct {
	path     string
	mode     fs.FileMode // with fs.ModeDir or fs.ModeSymlink for those
	uid, gid int
	body     string // the link target for a symlink
}

// canaryTree is made of files of several modes and owners, empty directories and a
// nested tree; the attacks name its entries as targets.
var canaryTree = []canaryFile{
	{path: "file-0644", mode: 0o644, body: "a host file\n"},
	{path: "secret-0600", mode: 0o600, uid: 1000, gid: 1000, body: "another user's secret\n"},
	{path: "setuid-4755", mode: 0o755 | fs.ModeSetuid, body: "#!/bin/sh\n"},
	{path: "readonly-0444", mode: 0o444, body: "read only\n"},
	{path: "swap-target", mode: 0o644, body: "swapped at\n"},
	{path: "race-target", mode: 0o600, body: "chmod me not\n"},
	{path: "race-target-exec", mode: 0o755, uid: 1000, gid: 1000, body: "#!/bin/sh\n"},
	{path: "empty-dir", mode: fs.ModeDir | 0o755},
	{path: "empty-0700", mode: fs.ModeDir | 0o700, uid: 1000, gid: 1000},
	{path: "nested", mode: fs.ModeDir | 0o755},
	{path: "nested/deeper", mode: fs.ModeDir | 0o750, gid: 1000},
	{path: "nested/deeper/file", mode: 0o640, gid: 1000, body: "deep\n"},
	{path: "nested/deeper/empty", mode: fs.ModeDir | 0o755},
	{path: "link", mode: fs.ModeSymlink | 0o777, body: "file-0644"},
	// A tree shaped like a container's /media, for a symlink to lead the host into.
	{path: "media-like", mode: fs.ModeDir | 0o755},
	{path: "media-like/hearth", mode: fs.ModeDir | 0o755},
	{path: "media-like/hearth/file", mode: 0o644, body: "not the container's\n"},
}

// makeTree creates (or puts back) files below dir: missing entries are made, and modes
// and owners are set again, so that every attack starts from the same tree.
func makeTree(t testing.TB, dir string, files []canaryFile) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		switch {
		case f.mode&fs.ModeDir != 0:
			if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				t.Fatal(err)
			}
		case f.mode&fs.ModeSymlink != 0:
			if _, err := os.Lstat(p); err != nil {
				must(t, os.Symlink(f.body, p))
			}
		default:
			if b, err := os.ReadFile(p); err != nil || string(b) != f.body {
				os.Remove(p)
				must(t, os.WriteFile(p, []byte(f.body), 0o600))
			}
		}
		must(t, os.Lchown(p, f.uid, f.gid))
		if f.mode&fs.ModeSymlink == 0 {
			must(t, os.Chmod(p, f.mode&fs.ModePerm|f.mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)))
		}
	}
}
