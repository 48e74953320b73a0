package images

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

// BenchmarkImportRootfsTar imports the root file system tarball named by
// HEARTH_IMPORT_BENCH_TAR (deploy/images/debootstrap.sh prints one; unset, make bench skips this copy) into an empty
// store, each time; the removal is not timed. integration's BenchmarkImageImportRootfsTar
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
		if _, err := e.svc.Delete(ctx, img.Digest, true); err != nil {
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
