package diskimg

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// go test -run '^$' -bench . -benchtime 5x ./internal/diskimg/ (as root)

// BenchmarkCreate makes images of two sizes both ways: mkfs.ext4 for each (Create), and a
// copy of a template made once (Templates.Create, its template made before the timer).
func BenchmarkCreate(b *testing.B) {
	needRoot(b)
	tp := newTemplates(b, 0)
	for _, m := range []struct {
		name   string
		create createFunc
	}{{"mkfs", Create}, {"template", tp.Create}} {
		for _, size := range []int64{64 << 20, 8 << 30, 10 << 30} {
			b.Run(fmt.Sprintf("%s/%dMiB", m.name, size>>20), func(b *testing.B) {
				dir := b.TempDir()
				path := filepath.Join(dir, "disk.img")
				if err := m.create(filepath.Join(dir, "warm.img"), size, 0, 0); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if err := m.create(path, size, 0, 0); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if err := os.Remove(path); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			})
		}
	}
}

// BenchmarkMount mounts and unmounts a 1 GiB image, and reports each half.
func BenchmarkMount(b *testing.B) {
	needRoot(b)
	path, target := newImage(b, 1<<30, 0, 0)
	var mount, unmount time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := Mount(path, target); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if err := Unmount(target); err != nil {
			b.Fatal(err)
		}
		mount, unmount = mount+mid.Sub(start), unmount+time.Since(mid)
	}
	b.ReportMetric(float64(mount.Microseconds())/float64(b.N), "mount-µs/op")
	b.ReportMetric(float64(unmount.Microseconds())/float64(b.N), "unmount-µs/op")
}

// BenchmarkGrowOffline doubles a new image with GrowOffline.
func BenchmarkGrowOffline(b *testing.B) {
	needRoot(b)
	for _, size := range []int64{64 << 20, 10 << 30} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			dir := b.TempDir()
			path, target := filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt")
			if err := os.Mkdir(target, 0o755); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { cleanup(b, path, target) })
			for b.Loop() {
				b.StopTimer()
				_ = os.Remove(path)
				if err := Create(path, size, 0, 0); err != nil {
					b.Fatal(err)
				}
				// Mounted once, as a package's image is, so e2fsck has a journal to read.
				if _, err := Mount(path, target); err != nil {
					b.Fatal(err)
				}
				if err := Unmount(target); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := GrowOffline(path, 2*size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGrow doubles a mounted 64 MiB image online; it needs CAP_SYS_RESOURCE.
func BenchmarkGrow(b *testing.B) {
	needRoot(b)
	if ok, err := hasCapSysResource(); err != nil || !ok {
		b.Skip("online ext4 growth needs CAP_SYS_RESOURCE, which this process lacks")
	}
	path, target := newImage(b, 64<<20, 0, 0)
	if _, err := Mount(path, target); err != nil {
		b.Fatal(err)
	}
	size := int64(64 << 20)
	for b.Loop() {
		size += 64 << 20
		if err := Grow(path, target, size); err != nil {
			b.Fatal(err)
		}
	}
}
