package integration

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"hearth.dev/internal/dial"
	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// BenchmarkRestartAdopt measures containerd-lite's restart to SERVING with N running
// containers (HEARTH_BENCH_ADOPT, 20 by default) attached to netd's bridge: it adopts
// each (its disk, host.sock, mounts, netd's attachment). It reports the median of the
// restarts and that divided by N.
func BenchmarkRestartAdopt(b *testing.B) {
	requireRoot(b)
	n := 20
	if v := os.Getenv("HEARTH_BENCH_ADOPT"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("HEARTH_BENCH_ADOPT=%q: give a number of containers", v)
		}
	}
	l := newLab(b)
	l.startNetd(b, testBridge(b))
	conn, err := dial.Unix(l.cld.socket)
	if err != nil {
		b.Fatal(err)
	}
	cl := containerv1.NewContainerServiceClient(conn)
	ctx := context.Background()
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			name := fmt.Sprintf("adopt%d", i)
			if _, errs[i] = cl.CreateContainer(ctx, &containerv1.CreateContainerRequest{Name: name}); errs[i] == nil {
				_, errs[i] = cl.StartContainer(ctx, &containerv1.StartContainerRequest{Name: name})
			}
		}()
	}
	wg.Wait()
	conn.Close()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	var ds []time.Duration
	b.ResetTimer()
	for range max(b.N, 3) {
		l.cld.stop(syscall.SIGTERM)
		t0 := time.Now()
		l.start(b)
		ds = append(ds, time.Since(t0))
	}
	b.StopTimer()
	m := median(ds)
	b.ReportMetric(ms(m), "restart-serving-ms")
	b.ReportMetric(ms(m)/float64(n), "per-container-ms")
	b.ReportMetric(float64(n), "containers")
}
