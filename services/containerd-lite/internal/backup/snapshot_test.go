package backup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"hearth.dev/internal/errdefs"
)

// makeMixedTree writes n files of mixed sizes (most small, some large, half of them
// compressible) below dir, deterministically from seed.
func makeMixedTree(t testing.TB, dir string, n int, seed uint64) int64 {
	t.Helper()
	var total int64
	for i := range n {
		size := 1 << (8 + (i*7)%10) // 256 B .. 128 KiB
		if i%50 == 0 {
			size = 2<<20 + i // some large
		}
		p := filepath.Join(dir, fmt.Sprintf("d%02d", i%13), fmt.Sprintf("f%04d", i))
		writeFile(t, p, size, seed*100000+uint64(i), 0o644, os.Getuid(), os.Getgid())
		total += int64(size)
	}
	return total
}

// A second backup of unchanged data writes almost nothing: less than 5% of what the
// first wrote (bytes added to the repository directory); so does a backup of the same
// data as another package (deduplication).
func TestSecondBackupWritesLittle(t *testing.T) {
	ctx := testContext(t)
	r, dir := openTestRepo(t, ctx)
	vol := t.TempDir()
	total := makeMixedTree(t, vol, 300, 1)
	files := int64(300)

	before := dirSize(t, dir)
	first, err := r.Backup(ctx, "p", Meta{Version: "1"}, map[string]string{"v": vol}, nil)
	must(t, err)
	firstBytes := dirSize(t, dir) - before
	var prog Progress
	second, err := r.Backup(ctx, "p", Meta{Version: "1"}, map[string]string{"v": vol}, func(p Progress) { prog = p })
	must(t, err)
	secondBytes := dirSize(t, dir) - before - firstBytes
	other, err := r.Backup(ctx, "q", Meta{Version: "1"}, map[string]string{"v": vol}, nil)
	must(t, err)
	otherBytes := dirSize(t, dir) - before - firstBytes - secondBytes
	t.Logf("data %d bytes; first backup wrote %d, second %d (%.2f%%, stored %d), same data as another package %d (%.2f%%)",
		total, firstBytes, secondBytes, 100*float64(secondBytes)/float64(firstBytes), prog.Stored,
		otherBytes, 100*float64(otherBytes)/float64(firstBytes))
	if first.Bytes != total || second.Bytes != total || other.Bytes != total {
		t.Errorf("snapshot sizes %d, %d, %d; want %d", first.Bytes, second.Bytes, other.Bytes, total)
	}
	if second.Unchanged != files || first.Unchanged != 0 {
		t.Errorf("unchanged files: first %d, second %d; want 0, %d", first.Unchanged, second.Unchanged, files)
	}
	if secondBytes*20 >= firstBytes || otherBytes*20 >= firstBytes {
		t.Errorf("second backup wrote %d bytes, another package's %d: not less than 5%% of the first's %d",
			secondBytes, otherBytes, firstBytes)
	}
	// Changed data is read again and stored.
	writeFile(t, filepath.Join(vol, "d00", "f0000"), 3<<20, 999, 0o644, os.Getuid(), os.Getgid())
	third, err := r.Backup(ctx, "p", Meta{Version: "1"}, map[string]string{"v": vol}, nil)
	must(t, err)
	if third.Unchanged != files-1 {
		t.Errorf("after changing one file: %d unchanged, want %d", third.Unchanged, files-1)
	}
	if _, err := r.Verify(ctx, third.ID); err != nil {
		t.Fatal(err)
	}
}

// Prune keeps the newest N of one package, leaves the others' alone, and frees what
// only the deleted snapshots used; what is kept still verifies and restores.
func TestPruneKeepsN(t *testing.T) {
	ctx := testContext(t)
	r, dir := openTestRepo(t, ctx)
	vol := t.TempDir()
	makeMixedTree(t, vol, 20, 2)
	otherVol := t.TempDir()
	makeMixedTree(t, otherVol, 5, 3)
	other, err := r.Backup(ctx, "other", Meta{}, map[string]string{"v": otherVol}, nil)
	must(t, err)
	var ids []string
	for i := range 5 {
		// Each snapshot holds 1 MiB of its own.
		writeFile(t, filepath.Join(vol, "own"), 1<<20, uint64(1000+2*i+1), 0o644, os.Getuid(), os.Getgid())
		s, err := r.Backup(ctx, "p", Meta{Version: fmt.Sprint(i)}, map[string]string{"v": vol}, nil)
		must(t, err)
		ids = append(ids, s.ID)
	}
	before := dirSize(t, dir)
	n, err := r.Prune(ctx, "p", 2)
	if err != nil || n != 3 {
		t.Fatalf("Prune = %d, %v; want 3 deleted", n, err)
	}
	after := dirSize(t, dir)
	t.Logf("repository %d bytes before prune, %d after", before, after)
	if before-after < 3<<20 {
		t.Errorf("prune freed %d bytes, want at least the 3 MiB only the deleted snapshots held", before-after)
		t.Logf("repository files: %v", repoFiles(t, dir, ""))
	}
	list, err := r.List(ctx, "p")
	must(t, err)
	if len(list) != 2 || list[0].ID != ids[3] || list[1].ID != ids[4] || list[1].Version != "4" {
		t.Errorf("after prune: %+v, want the snapshots %v", list, ids[3:])
	}
	all, err := r.List(ctx, "")
	must(t, err)
	if len(all) != 3 || all[0].ID != other.ID {
		t.Errorf("all snapshots after prune: %+v", all)
	}
	for _, id := range []string{ids[3], ids[4], other.ID} {
		if _, err := r.Verify(ctx, id); err != nil {
			t.Errorf("Verify %s after prune: %v", id, err)
		}
	}
	out := t.TempDir()
	if _, err := r.Restore(ctx, ids[4], map[string]string{"v": out}, nil); err != nil {
		t.Fatalf("Restore after prune: %v", err)
	}
	compare(t, scan(t, vol), scan(t, out))
	if _, err := r.Verify(ctx, ids[0]); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Verify of a pruned snapshot: %v, want NotFound", err)
	}
	if n, err := r.Prune(ctx, "p", 2); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v", n, err)
	}
	if _, err := r.Prune(ctx, "p", 0); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Prune keeping 0: %v", err)
	}
}

func TestRestoreChecks(t *testing.T) {
	ctx := testContext(t)
	r, _ := openTestRepo(t, ctx)
	vol := t.TempDir()
	makeMixedTree(t, vol, 3, 4)
	s, err := r.Backup(ctx, "p", Meta{}, map[string]string{"v": vol}, nil)
	must(t, err)
	empty := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	must(t, os.Symlink(empty, link))
	for _, tc := range []struct {
		name string
		id   string
		into map[string]string
		want error
	}{
		{"unknown snapshot", "0123456789abcdef0123456789abcdef", map[string]string{"v": empty}, errdefs.ErrNotFound},
		{"bad id", "../x", map[string]string{"v": empty}, errdefs.ErrInvalidArgument},
		{"unknown volume", s.ID, map[string]string{"nope": empty}, errdefs.ErrNotFound},
		{"target is a symlink", s.ID, map[string]string{"v": link}, errdefs.ErrInvalidArgument},
		{"target missing", s.ID, map[string]string{"v": filepath.Join(empty, "missing")}, errdefs.ErrInvalidArgument},
		{"target not empty", s.ID, map[string]string{"v": vol}, errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := r.Restore(ctx, tc.id, tc.into, nil); !errors.Is(err, tc.want) {
				t.Errorf("Restore: %v, want %v", err, tc.want)
			}
			if ents, _ := os.ReadDir(empty); len(ents) != 0 {
				t.Errorf("Restore wrote %v", ents)
			}
		})
	}
	for _, tc := range []struct {
		pkg string
		vol string
	}{{"", "v"}, {"a/b", "v"}, {"..", "v"}, {"p", "a/b"}, {"p", ""}, {"p", "x\n"}} {
		if _, err := r.Backup(ctx, tc.pkg, Meta{}, map[string]string{tc.vol: vol}, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Backup(%q, volume %q): %v, want InvalidArgument", tc.pkg, tc.vol, err)
		}
	}
}
