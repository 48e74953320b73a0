package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The benchmark tree: about 1 GiB of mixed files, always the same bytes (bench/backup.sh
// makes it once with TestBenchTree and runs this package's benchmark and restic on it):
//   - 20000 small files of 512 B to 16 KiB in 400 directories, half of them text;
//   - 160 files of 1 to 5 MiB of random bytes (photos, archives);
//   - 4 files of 64 to 112 MiB, half text, half random (a database, a log).
func makeBenchTree(t testing.TB, dir string) int64 {
	var total int64
	for i := range 20000 {
		size := 512 + (i*7919)%(16<<10-512)
		p := filepath.Join(dir, "small", fmt.Sprintf("d%03d", i%400), fmt.Sprintf("f%05d", i))
		writeFile(t, p, size, uint64(i), 0o644, os.Getuid(), os.Getgid())
		total += int64(size)
	}
	for i := range 160 {
		size := 1<<20 + (i*104729)%(4<<20)
		writeFile(t, filepath.Join(dir, "media", fmt.Sprintf("m%03d.jpg", i)), size, uint64(2*i+100001), 0o644, os.Getuid(), os.Getgid())
		total += int64(size)
	}
	for i := range 4 {
		size := (64 + 16*i) << 20
		writeFile(t, filepath.Join(dir, "large", fmt.Sprintf("l%d", i)), size, uint64(200000+i), 0o600, os.Getuid(), os.Getgid())
		total += int64(size)
	}
	return total
}

// TestBenchTree writes the benchmark tree into $HEARTH_BACKUP_BENCH_GEN (for
// bench/backup.sh); skipped otherwise.
func TestBenchTree(t *testing.T) {
	dir := os.Getenv("HEARTH_BACKUP_BENCH_GEN")
	if dir == "" {
		t.Skip("HEARTH_BACKUP_BENCH_GEN not set: bench/backup.sh makes the benchmark tree with this")
	}
	start := time.Now()
	total := makeBenchTree(t, dir)
	t.Logf("wrote %d bytes in %v", total, time.Since(start))
}

// BenchmarkBackupTree backs up $HEARTH_BACKUP_BENCH_TREE into a new repository, backs it
// up again unchanged, then restores it, in a work directory below
// $HEARTH_BACKUP_BENCH_WORK (default: the system's temporary directory); it reports
// each phase (bench/backup.sh compares them with restic's). Skipped without the tree.
func BenchmarkBackupTree(b *testing.B) {
	tree := os.Getenv("HEARTH_BACKUP_BENCH_TREE")
	if tree == "" {
		b.Skip("HEARTH_BACKUP_BENCH_TREE not set: bench/backup.sh runs this on its 1 GiB tree")
	}
	ctx := context.Background()
	for range b.N {
		work, err := os.MkdirTemp(os.Getenv("HEARTH_BACKUP_BENCH_WORK"), "hearth-backup-bench-")
		if err != nil {
			b.Fatal(err)
		}
		repoDir, out := filepath.Join(work, "repo"), filepath.Join(work, "out")
		r, err := Open(ctx, repoDir, "bench password", Options{TempDir: work})
		if err != nil {
			b.Fatal(err)
		}
		vols := map[string]string{"data": tree}
		t0 := time.Now()
		first, err := r.Backup(ctx, "bench", Meta{Version: "1"}, vols, nil)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		size1 := dirSize(b, repoDir)
		second, err := r.Backup(ctx, "bench", Meta{Version: "1"}, vols, nil)
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		size2 := dirSize(b, repoDir)
		if err := os.Mkdir(out, 0o700); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		if _, err := r.Restore(ctx, second.ID, map[string]string{"data": out}, nil); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		r.Close()
		mb := float64(first.Bytes) / 1e6
		b.ReportMetric(mb/t1.Sub(t0).Seconds(), "first-MB/s")
		b.ReportMetric(float64(t2.Sub(t1).Milliseconds()), "second-ms")
		b.ReportMetric(float64(size2-size1), "second-bytes")
		b.ReportMetric(float64(size1), "repo-bytes")
		b.ReportMetric(mb/t4.Sub(t3).Seconds(), "restore-MB/s")
		b.Logf("data %d bytes in %d files; repository %d bytes after the first backup (%v), +%d after the second (%v, %d files unchanged); restore %v",
			first.Bytes, first.Files, size1, t1.Sub(t0), size2-size1, t2.Sub(t1), second.Unchanged, t4.Sub(t3))
		if err := os.RemoveAll(work); err != nil {
			b.Fatal(err)
		}
	}
}
