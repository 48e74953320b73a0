package images

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkImportRootfsTar imports the root file system tarball named by
// HEARTH_IMPORT_BENCH_TAR (deploy/images/debootstrap.sh prints one; unset, make bench skips this copy) into an empty
// store, each time; the tree is moved aside, untimed. integration's BenchmarkImageImportRootfsTar
// measures the same through the daemon, beside tar -x.
func BenchmarkImportRootfsTar(b *testing.B) {
	tarPath := os.Getenv("HEARTH_IMPORT_BENCH_TAR")
	if tarPath == "" {
		b.Skip("set HEARTH_IMPORT_BENCH_TAR to a root file system tarball")
	}
	if os.Geteuid() != 0 {
		b.Skip("needs root: images keep their files' owners")
	}
	fi, err := os.Stat(tarPath)
	if err != nil {
		b.Fatal(err)
	}
	e := newEnv(b)
	// HEARTH_IMPORT_BENCH_KEEP (a directory on the same file system) keeps the trees
	// after the run too, so that runs in a row do not pay for each other's removals.
	keep := os.Getenv("HEARTH_IMPORT_BENCH_KEEP")
	if keep == "" {
		keep = e.dir
	}
	if keep, err = os.MkdirTemp(keep, "import-bench-"); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(fi.Size())
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		before := cpuTime(b)
		img, err := e.svc.Import(ctx, tarPath, "deb", nil)
		if err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime(b) - before
		b.StopTimer()
		// The tree is moved aside, not deleted (b.TempDir's cleanup does that): on an
		// ext4 without a journal, creating inodes right after deleting thousands scans
		// past every recently deleted one, which would make the next import pay for this
		// one's removal (see NOTES.md).
		e.svc.mu.Lock()
		err = e.svc.removeLocked(img.Digest, true)
		e.svc.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(img.Rootfs, filepath.Join(keep, fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	// CPU time (user and system) tells more than wall time on a loaded machine.
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
