package memtrim

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestDue(t *testing.T) {
	p := Policy{Period: time.Second, Quiet: 100, Worth: 1000}
	for _, tc := range []struct {
		name                 string
		sinceLook, sinceTrim uint64
		want                 bool
	}{
		{"quiet, garbage", 10, 5000, true},
		{"quiet, just enough", 99, 1000, true},
		{"busy", 100, 5000, false},
		{"quiet, nothing to collect", 0, 999, false},
		{"idle since the last trim", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Due(tc.sinceLook, tc.sinceTrim); got != tc.want {
				t.Errorf("Due(%d, %d) = %v, want %v", tc.sinceLook, tc.sinceTrim, got, tc.want)
			}
		})
	}
}

// TestCounter follows a burst: no trim while it lasts, one once it is over, none while
// idle after it, one after the next burst.
func TestCounter(t *testing.T) {
	p := Policy{Period: time.Second, Quiet: 100, Worth: 1000}
	c := p.Counter(0)
	// The counter at each look: busy, busy, quiet (trim), idle, idle, busy, quiet (trim).
	looks := []uint64{600, 1200, 1210, 1220, 1222, 3000, 3050, 3060}
	var trims []int
	for i, now := range looks {
		if c.Look(now) {
			trims = append(trims, i)
			c.Trimmed(now + 5) // the trim allocates a little
		}
	}
	if len(trims) != 2 || trims[0] != 2 || trims[1] != 6 {
		t.Errorf("trimmed at looks %v, want [2 6]", trims)
	}
}

// TestAllocated: the counter is the runtime's, and grows with allocations.
func TestAllocated(t *testing.T) {
	before := allocated()
	sink = make([]byte, 1<<20)
	if after := allocated(); after < before+1<<20 {
		t.Errorf("allocated: %d before, %d after a 1 MiB allocation", before, after)
	}
}

var sink []byte

// TestKickSetsGCPercent: collection stays as the process set it (off, in guestd) until the
// first kick's trim, KickDelay after it, which sets the policy's percent: the heap's free
// pages go back.
func TestKickSetsGCPercent(t *testing.T) {
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kick := make(chan struct{}, 1)
	done := make(chan struct{})
	const delay = 300 * time.Millisecond
	go func() { Run(ctx, Policy{Period: time.Hour, GCPercent: 77, KickDelay: delay}, kick); close(done) }()

	time.Sleep(20 * time.Millisecond)
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Fatalf("GC percent before the kick = %d, want -1 (unchanged)", got)
	}
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	kick <- struct{}{}
	kicked := time.Now()
	time.Sleep(delay / 3)
	var early runtime.MemStats
	runtime.ReadMemStats(&early)
	if early.NumForcedGC != before.NumForcedGC && time.Since(kicked) < delay {
		t.Fatalf("a trim %v after the kick, before its delay (%v)", time.Since(kicked), delay)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var now runtime.MemStats
		runtime.ReadMemStats(&now)
		if now.NumForcedGC > before.NumForcedGC {
			if at := time.Since(kicked); at < delay {
				t.Fatalf("trimmed %v after the kick, before its delay (%v)", at, delay)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no trim (forced collection) 5 s after the kick")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := debug.SetGCPercent(77); got != 77 {
		t.Errorf("GC percent after the kick = %d, want 77", got)
	}
	cancel()
	<-done
}
