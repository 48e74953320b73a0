package containers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestStartSlots: no more than MaxStarts containers start at once; one more waits its
// turn, gets it when a start ends, and gives up with its context, saying why.
func TestStartSlots(t *testing.T) {
	m := New(Options{MaxStarts: 2})
	ctx := context.Background()
	r1, err := m.startSlot(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := m.startSlot(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := m.startSlot(short, "c"); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `container "c" waited for its turn to start (2 start at once)`) {
		t.Fatalf("a third start while two run: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		r3, err := m.startSlot(ctx, "c")
		if err == nil {
			r3()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("the third start went while two ran: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	r1()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the third start did not get the turn a finished start left")
	}
	r2()
	if DefaultMaxStarts() < 2 {
		t.Errorf("DefaultMaxStarts() = %d, want at least 2", DefaultMaxStarts())
	}
}
