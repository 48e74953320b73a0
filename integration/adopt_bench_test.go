package integration

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
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
	var ds, reconciles []time.Duration
	startup := regexp.MustCompile(`msg=serving .*startup=(\S+)`)
	b.ResetTimer()
	for range max(b.N, 3) {
		l.cld.stop(syscall.SIGTERM)
		t0 := time.Now()
		l.start(b)
		ds = append(ds, time.Since(t0))
		// containerd-lite's own start-up reconcile, from its log.
		if m := startup.FindStringSubmatch(l.cld.log.String()); m != nil {
			if d, err := time.ParseDuration(m[1]); err == nil {
				reconciles = append(reconciles, d)
			}
		}
	}
	b.StopTimer()
	m := median(ds)
	b.ReportMetric(ms(m), "restart-serving-ms")
	if len(reconciles) > 0 {
		b.ReportMetric(ms(median(reconciles)), "reconcile-ms")
	}
	// Each adoption's steps (the last restart's "adopted running container" lines),
	// medians over the containers.
	steps := map[string][]time.Duration{}
	kv := regexp.MustCompile(` (state|disk|host_sock|mounts|attach|expose|took)=([0-9.]+[µnm]?s)`)
	for _, line := range strings.Split(l.cld.log.String(), "\n") {
		if !strings.Contains(line, "adopted running container") {
			continue
		}
		for _, m := range kv.FindAllStringSubmatch(line, -1) {
			if d, err := time.ParseDuration(m[2]); err == nil {
				steps[m[1]] = append(steps[m[1]], d)
			}
		}
	}
	for k, ds := range steps {
		b.ReportMetric(ms(median(ds)), "adopt-"+k+"-ms")
	}
	b.ReportMetric(ms(m)/float64(n), "per-container-ms")
	b.ReportMetric(float64(n), "containers")
}
