package netwait

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"

func TestHasDefault(t *testing.T) {
	for _, tc := range []struct {
		name, table string
		want        bool
	}{
		{"empty", header, false},
		{"on-link subnet only", header + "eth0\t0002E70A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", false},
		{"default", header + "eth0\t0002E70A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
			"eth0\t00000000\t0100E70A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", true},
		{"default not up", header + "eth0\t00000000\t0100E70A\t0002\t0\t0\t0\t00000000\t0\t0\t0\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "route")
			if err := os.WriteFile(p, []byte(tc.table), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := HasDefault(p)
			if err != nil || got != tc.want {
				t.Fatalf("HasDefault = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestWait: Wait returns once the route shows up, and fails when it never does.
func TestWait(t *testing.T) {
	p := filepath.Join(t.TempDir(), "route")
	if err := os.WriteFile(p, []byte(header), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := Wait(ctx, p); err == nil {
		t.Fatal("Wait returned without a default route")
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		os.WriteFile(p, []byte(header+"eth0\t00000000\t0100E70A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"), 0o644)
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	t0 := time.Now()
	if err := Wait(ctx2, p); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 15*time.Millisecond {
		t.Fatalf("Wait returned after %v, before the route was written", d)
	}
	// Missing table: an error at once.
	if err := Wait(ctx2, filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("Wait on a missing table returned no error")
	}
}
