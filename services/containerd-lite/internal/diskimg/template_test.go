package diskimg

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newTemplates returns templates kept in a new temporary directory.
func newTemplates(t testing.TB, keep int) *Templates {
	t.Helper()
	return NewTemplates(filepath.Join(t.TempDir(), ".templates"), keep, nil)
}

// fsIDs are what tells file systems apart, as e2fsprogs reads them.
type fsIDs struct{ uuid, hashSeed string }

// dumpe2fs reads the UUID and the directory hash seed of the superblock at block sb (0:
// the primary) of the image at path.
func dumpe2fs(t *testing.T, path string, sb int64) fsIDs {
	t.Helper()
	args := []string{"-h", path}
	if sb != 0 {
		args = append([]string{"-o", fmt.Sprintf("superblock=%d", sb), "-o", fmt.Sprintf("blocksize=%d", BlockSize)}, args...)
	}
	out, err := exec.Command("dumpe2fs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs %v: %v: %s", args, err, out)
	}
	var ids fsIDs
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "Filesystem UUID":
			ids.uuid = strings.TrimSpace(v)
		case "Directory Hash Seed":
			ids.hashSeed = strings.TrimSpace(v)
		}
	}
	if ids.uuid == "" || ids.hashSeed == "" {
		t.Fatalf("dumpe2fs %v shows no UUID or hash seed: %s", args, out)
	}
	return ids
}

func blkidUUID(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("blkid", "-p", "-o", "value", "-s", "UUID", path).CombinedOutput()
	if err != nil {
		t.Fatalf("blkid %s: %v: %s", path, err, out)
	}
	return strings.TrimSpace(string(out))
}

// fsckClean runs e2fsck -fn, which changes nothing and exits 0 only on a clean file system.
func fsckClean(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("e2fsck", "-fn", path).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn %s: %v\n%s", path, err, out)
	}
}

// templateFiles lists the template directory.
func templateFiles(t *testing.T, tp *Templates) []string {
	t.Helper()
	ents, err := os.ReadDir(tp.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func diskUse(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestTemplateCopiesAreDistinct: copies made at once from one template are each a clean
// file system with a UUID and a hash seed of its own, in every superblock, and as sparse as
// the template.
func TestTemplateCopiesAreDistinct(t *testing.T) {
	needRoot(t)
	for _, size := range []int64{64 * mib, 8 << 30} { // 1 block group; 64, 8 of them with backups
		t.Run(fmt.Sprintf("%dMiB", size/mib), func(t *testing.T) {
			tp := newTemplates(t, 0)
			dir := t.TempDir()
			const n = 3
			paths := make([]string, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				paths[i] = filepath.Join(dir, fmt.Sprintf("copy%d.img", i))
				wg.Go(func() { errs[i] = tp.Create(paths[i], size, 0, 0) })
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			tpls := templateFiles(t, tp)
			if len(tpls) != 1 {
				t.Fatalf("templates after %d copies of one size: %v, want one", n, tpls)
			}
			tpl := filepath.Join(tp.dir, tpls[0])
			seen := map[string]string{}
			for _, p := range append([]string{tpl}, paths...) {
				ids := dumpe2fs(t, p, 0)
				for _, v := range []string{ids.uuid, ids.hashSeed} {
					if other, ok := seen[v]; ok {
						t.Errorf("%s and %s share %s", filepath.Base(other), filepath.Base(p), v)
					}
					seen[v] = p
				}
				if p == tpl {
					continue
				}
				if got := blkidUUID(t, p); got != ids.uuid {
					t.Errorf("blkid reads UUID %s in %s, dumpe2fs %s", got, filepath.Base(p), ids.uuid)
				}
				fsckClean(t, p)
				checkBackups(t, p, size, ids)
				if use, tplUse := diskUse(t, p), diskUse(t, tpl); use > tplUse+64<<10 {
					t.Errorf("%s takes %d KiB on the host, its template %d KiB", filepath.Base(p), use>>10, tplUse>>10)
				}
			}
			t.Logf("template %s: %d KiB on the host", tpls[0], diskUse(t, tpl)>>10)
		})
	}
}

// checkBackups checks that each backup superblock of the image at path agrees with its
// primary, ids.
func checkBackups(t *testing.T, path string, size int64, ids fsIDs) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sbs, err := superblocks(f, size)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, s := range sbs[1:] {
		if got := dumpe2fs(t, path, s.off/BlockSize); got != ids {
			t.Errorf("%s: the backup superblock at block %d holds %+v, the primary %+v", filepath.Base(path), s.off/BlockSize, got, ids)
		}
	}
	if want := (size + 128*mib - 1) / (128 * mib); want > 1 && len(sbs) == 1 {
		t.Errorf("%s: no backup superblocks found in %d block groups", filepath.Base(path), want)
	}
}

// TestTemplatePerSizeAndOwner: each size and owner has a template of its own; only the
// most recently used ones are kept.
func TestTemplatePerSizeAndOwner(t *testing.T) {
	needRoot(t)
	tp := newTemplates(t, 3)
	dir := t.TempDir()
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Fatal(err)
	}
	type img struct {
		size     int64
		uid, gid int
	}
	name := func(i img) string {
		n, err := templateName(mkfs, i.size, i.uid, i.gid)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	a, b, c, d := img{32 * mib, 0, 0}, img{48 * mib, 0, 0}, img{32 * mib, 1000, 1001}, img{64 * mib, 0, 0}
	for k, step := range []struct {
		make img
		want []img
	}{
		{a, []img{a}},
		{b, []img{a, b}},
		{c, []img{a, b, c}},
		{a, []img{a, b, c}}, // a used again: b is now the least recently used
		{d, []img{a, c, d}},
		{b, []img{a, b, d}}, // c is the least recently used now

	} {
		time.Sleep(30 * time.Millisecond) // past the file system's timestamp granularity
		p := filepath.Join(dir, fmt.Sprintf("%d.img", k))
		if err := tp.Create(p, step.make.size, step.make.uid, step.make.gid); err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, i := range step.want {
			want = append(want, name(i))
		}
		slices.Sort(want)
		if got := templateFiles(t, tp); !slices.Equal(got, want) {
			t.Errorf("step %d: templates %v, want %v", k, got, want)
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != step.make.size {
			t.Errorf("step %d: image of %d bytes, want %d", k, st.Size, step.make.size)
		}
		fsckClean(t, p)
	}
	fi, err := os.Stat(tp.dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("template directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
}

// TestTemplateName: a template's name changes with whatever changes what mkfs.ext4 makes.
func TestTemplateName(t *testing.T) {
	mkfs := filepath.Join(t.TempDir(), "mkfs.ext4")
	if err := os.WriteFile(mkfs, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "mke2fs.conf")
	if err := os.WriteFile(conf, []byte("[defaults]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MKE2FS_CONFIG", conf)
	name := func() string {
		n, err := templateName(mkfs, 64*mib, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	base := name()
	if again := name(); again != base {
		t.Fatalf("the same template is named %s, then %s", base, again)
	}
	for _, tc := range []struct {
		what   string
		change func() string
	}{
		{"size", func() string { n, _ := templateName(mkfs, 128*mib, 0, 0); return n }},
		{"owner", func() string { n, _ := templateName(mkfs, 64*mib, 1000, 0); return n }},
		{"group", func() string { n, _ := templateName(mkfs, 64*mib, 0, 1000); return n }},
		{"mke2fs configuration", func() string {
			if err := os.WriteFile(conf, []byte("[defaults]\n\tinode_size = 128\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return name()
		}},
		{"mkfs.ext4 binary", func() string {
			if err := os.WriteFile(mkfs, []byte("#!/bin/sh\n# upgraded\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			return name()
		}},
	} {
		if got := tc.change(); got == base || got == "" {
			t.Errorf("another %s gives template name %q, the same as %q", tc.what, got, base)
		}
	}
}

// TestTemplateLeftovers: what a crash, a bug or a disk error left under a template's name
// is never copied; the template is made again and the copy is good.
func TestTemplateLeftovers(t *testing.T) {
	needRoot(t)
	const size = 256 * mib // two block groups: a backup superblock in group 1
	name := nameOf(t, size)
	other, _ := newImage(t, MinSize, 0, 0) // an image of another size, to link to
	otherSum := fileSum(t, other)
	label := func(off int64) int64 { return off + sbUUID + 16 } // s_volume_name follows s_uuid
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, tpl string) // with a good template at tpl
	}{
		{"half-made temporary", func(t *testing.T, tpl string) {
			rm(t, tpl)
			writeFile(t, tpl+".mkfs-tmp", bytes.Repeat([]byte{0xff}, 8192))
		}},
		{"truncated", func(t *testing.T, tpl string) {
			if err := os.Truncate(tpl, 1*mib); err != nil {
				t.Fatal(err)
			}
		}},
		{"no file system", func(t *testing.T, tpl string) {
			rm(t, tpl)
			writeFile(t, tpl, nil)
			if err := os.Truncate(tpl, size); err != nil {
				t.Fatal(err)
			}
		}},
		{"primary superblock damaged", func(t *testing.T, tpl string) { poke(t, tpl, label(sbStart)) }},
		{"backup superblock damaged", func(t *testing.T, tpl string) { poke(t, tpl, label(128*mib)) }},
		{"symlink", func(t *testing.T, tpl string) {
			rm(t, tpl)
			if err := os.Symlink(other, tpl); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTemplates(t, 0)
			dir := t.TempDir()
			if err := tp.Create(filepath.Join(dir, "first.img"), size, 0, 0); err != nil {
				t.Fatal(err)
			}
			tc.prepare(t, filepath.Join(tp.dir, name))
			p := filepath.Join(dir, "second.img")
			if err := tp.Create(p, size, 0, 0); err != nil {
				t.Fatal(err)
			}
			fsckClean(t, p)
			checkBackups(t, p, size, dumpe2fs(t, p, 0))
			if out, err := exec.Command("e2label", p).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != Label {
				t.Errorf("label of the copy: %q, %v; want %s", out, err, Label)
			}
			if got := templateFiles(t, tp); !slices.Equal(got, []string{name}) {
				t.Errorf("templates %v, want only %s", got, name)
			}
			f, err := os.Open(filepath.Join(tp.dir, name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := superblocks(f, size); err != nil {
				t.Errorf("the template made again: %v", err)
			}
			if fileSum(t, other) != otherSum {
				t.Error("the file a symlink under the template's name pointed at was changed")
			}
		})
	}
}

func rm(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// poke flips a byte of the file at path.
func poke(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// fileSum is a digest of the file's first superblock, enough to tell a change made by a
// template's copy.
func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 2*sbSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHasBackup: the groups with a backup superblock, as e2fsprogs places them.
func TestHasBackup(t *testing.T) {
	sb := func(compat, roCompat uint32, bgs ...uint32) *superblock {
		s := &superblock{}
		put := func(off int, v uint32) {
			s.data[off], s.data[off+1], s.data[off+2], s.data[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
		put(sbFeatureCompat, compat)
		put(sbFeatureROCompat, roCompat)
		for i, g := range bgs {
			put(sbBackupBGs+4*i, g)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		sb   *superblock
		want []uint32
	}{
		{"sparse_super", sb(0, roCompatSparseSuper), []uint32{1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343}},
		{"sparse_super2", sb(compatSparseSuper2, roCompatSparseSuper, 1, 300), []uint32{1, 300}},
		{"every group", sb(0, 0), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []uint32
			for g := uint32(1); g < 400; g++ {
				if hasBackup(tc.sb, g) {
					got = append(got, g)
				}
			}
			if tc.want == nil && len(got) == 399 {
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("groups with backups: %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTemplateSpares: with spares on, each image made from a template leaves one made
// ahead beside it; the next image of that size and owner is it (its own UUID, clean), and
// another is made. A half-made spare is removed; the spare of a template pruned goes too.
func TestTemplateSpares(t *testing.T) {
	needRoot(t)
	const size = 256 * mib
	tp := NewTemplates(filepath.Join(t.TempDir(), ".templates"), 1, nil).WithSpares()
	t.Cleanup(tp.Wait)
	name := nameOf(t, size)
	spare := filepath.Join(tp.dir, name+spareSuffix)
	dir := t.TempDir()
	first := filepath.Join(dir, "first.img")
	if err := tp.Create(first, size, 0, 0); err != nil {
		t.Fatal(err)
	}
	tp.Wait()
	var st unix.Stat_t
	if err := unix.Stat(spare, &st); err != nil {
		t.Fatalf("no spare after an image was made: %v (templates: %v)", err, templateFiles(t, tp))
	}
	spareIDs := dumpe2fs(t, spare, 0)

	second := filepath.Join(dir, "second.img")
	if err := tp.Create(second, size, 0, 0); err != nil {
		t.Fatal(err)
	}
	var got unix.Stat_t
	if err := unix.Stat(second, &got); err != nil || got.Ino != st.Ino {
		t.Fatalf("the second image is inode %d (%v), want the spare, %d", got.Ino, err, st.Ino)
	}
	fsckClean(t, second)
	ids := map[fsIDs]string{}
	for _, p := range []string{filepath.Join(tp.dir, name), first, second} {
		id := dumpe2fs(t, p, 0)
		if other, ok := ids[id]; ok {
			t.Errorf("%s and %s share their UUID or hash seed", other, p)
		}
		ids[id] = p
	}
	if dumpe2fs(t, second, 0) != spareIDs {
		t.Error("taking the spare changed its identity")
	}
	checkBackups(t, second, size, spareIDs)

	// A spare the daemon died making: the next one made replaces it.
	tp.Wait()
	rm(t, spare)
	writeFile(t, spare+".mkfs-tmp", bytes.Repeat([]byte{0xff}, 8192))
	if err := tp.Create(filepath.Join(dir, "third.img"), size, 0, 0); err != nil {
		t.Fatal(err)
	}
	tp.Wait()
	if got := templateFiles(t, tp); !slices.Equal(got, []string{name, name + spareSuffix}) {
		t.Errorf("templates %v, want %s and its spare", got, name)
	}
	fsckClean(t, spare)

	// Another size, with one template kept: the first template and its spare go.
	if err := tp.Create(filepath.Join(dir, "other.img"), MinSize, 0, 0); err != nil {
		t.Fatal(err)
	}
	tp.Wait()
	other := nameOf(t, MinSize)
	if got := templateFiles(t, tp); !slices.Equal(got, []string{other, other + spareSuffix}) {
		t.Errorf("templates %v, want only %s and its spare", got, other)
	}
}

// nameOf is the name of the template for size, owned by root, made by this mkfs.ext4.
func nameOf(t *testing.T, size int64) string {
	t.Helper()
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Fatal(err)
	}
	name, err := templateName(mkfs, size, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// TestTemplateSparesConcurrent: creates at once, with spares on (some wait for a spare
// being made, some take one, some copy): every image is its own file system, none is
// shared, and one spare is left.
func TestTemplateSparesConcurrent(t *testing.T) {
	needRoot(t)
	const size, n = 64 * mib, 6
	tp := NewTemplates(filepath.Join(t.TempDir(), ".templates"), 0, nil).WithSpares()
	t.Cleanup(tp.Wait)
	dir := t.TempDir()
	paths := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		paths[i] = filepath.Join(dir, fmt.Sprintf("img%d.img", i))
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 2 * time.Millisecond) // spread: some find a spare
			errs[i] = tp.Create(paths[i], size, 0, 0)
		})
	}
	wg.Wait()
	tp.Wait()
	seen := map[string]string{}
	inodes := map[uint64]string{}
	for i, p := range paths {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if other, ok := inodes[st.Ino]; ok {
			t.Errorf("%s and %s are one file", other, p)
		}
		inodes[st.Ino] = p
		fsckClean(t, p)
		ids := dumpe2fs(t, p, 0)
		if other, ok := seen[ids.uuid]; ok {
			t.Errorf("%s and %s share UUID %s", other, p, ids.uuid)
		}
		seen[ids.uuid] = p
	}
	name := nameOf(t, size)
	if got := templateFiles(t, tp); !slices.Equal(got, []string{name, name + spareSuffix}) {
		t.Errorf("templates %v, want %s and its spare", got, name)
	}
}

// TestTemplateSpareDeferred: the spare after a take is made once the image taken is
// mounted (Mounted), not while that first mount would compete with it; or after
// fillDelay when no mount comes. A spare after a copy (none was there to take) is made
// at once, as before.
func TestTemplateSpareDeferred(t *testing.T) {
	needRoot(t)
	const size = 64 * mib
	tp := NewTemplates(filepath.Join(t.TempDir(), ".templates"), 0, nil).WithSpares()
	tp.fillDelay = time.Hour
	t.Cleanup(tp.Wait)
	spare := filepath.Join(tp.dir, nameOf(t, size)+spareSuffix)
	dir := t.TempDir()
	inodeOf := func(p string) uint64 {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return 0
		}
		return st.Ino
	}
	making := func() bool {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		return tp.filling[filepath.Base(spare)]
	}

	// A copy: its spare is made at once.
	if err := tp.Create(filepath.Join(dir, "copy.img"), size, 0, 0); err != nil {
		t.Fatal(err)
	}
	tp.wg.Wait() // only what is being made: nothing deferred is started
	first := inodeOf(spare)
	if first == 0 {
		t.Fatalf("no spare after a copy: %v", templateFiles(t, tp))
	}

	// A take: no spare is made until the image is mounted.
	taken := filepath.Join(dir, "taken.img")
	if err := tp.Create(taken, size, 0, 0); err != nil {
		t.Fatal(err)
	}
	if inodeOf(taken) != first {
		t.Fatal("the second image is not the spare")
	}
	time.Sleep(100 * time.Millisecond)
	if inodeOf(spare) != 0 || making() {
		t.Fatalf("a spare is made before the image taken was mounted: %v", templateFiles(t, tp))
	}
	tp.Mounted(filepath.Join(dir, "other.img")) // another image's mount changes nothing
	if making() || inodeOf(spare) != 0 {
		t.Fatal("another image's mount made the spare")
	}
	tp.Mounted(taken)
	tp.wg.Wait()
	second := inodeOf(spare)
	if second == 0 || second == first {
		t.Fatalf("no new spare after the image taken was mounted: %v", templateFiles(t, tp))
	}
	fsckClean(t, spare)

	// A take never mounted: its spare is made after fillDelay.
	tp.fillDelay = 20 * time.Millisecond
	if err := tp.Create(filepath.Join(dir, "unmounted.img"), size, 0, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for inodeOf(spare) == 0 || inodeOf(spare) == second {
		if time.Now().After(deadline) {
			t.Fatalf("no spare 10 s after a take that was not mounted: %v", templateFiles(t, tp))
		}
		time.Sleep(10 * time.Millisecond)
	}
	tp.mu.Lock()
	left := len(tp.deferred)
	tp.mu.Unlock()
	if left != 0 {
		t.Errorf("%d spares still deferred", left)
	}
}
