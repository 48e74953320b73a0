package images

import (
	"context"
	"os"
	"testing"
)

// BenchmarkImportRootfsTar imports the root file system tarball named by
// HEARTH_BENCH_ROOTFS_TAR (deploy/images/debootstrap.sh prints one) into an empty
// store, each time; the removal is not timed. integration's BenchmarkImageImportRootfsTar
// measures the same through the daemon, beside tar -x.
func BenchmarkImportRootfsTar(b *testing.B) {
	tarPath := os.Getenv("HEARTH_BENCH_ROOTFS_TAR")
	if tarPath == "" {
		b.Skip("set HEARTH_BENCH_ROOTFS_TAR to a root file system tarball")
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
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		img, err := e.svc.Import(ctx, tarPath, "deb", nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := e.svc.Delete(ctx, img.Digest, true); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
