package keylock

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestSameKeySerializesOtherKeysDoNot(t *testing.T) {
	var m Map
	unlock := m.Lock("a")
	got := make(chan string, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); u := m.Lock("a"); got <- "a"; u() }()
	go func() { defer wg.Done(); u := m.Lock("b"); got <- "b"; u() }()
	select {
	case k := <-got:
		if k != "b" {
			t.Fatalf("%s got its lock while a was held", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b waited for a")
	}
	select {
	case k := <-got:
		t.Fatalf("%s got its lock while a was held", k)
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	wg.Wait()
	if k := <-got; k != "a" {
		t.Fatalf("got %s", k)
	}
}

func TestLockContextGivesUp(t *testing.T) {
	var m Map
	unlock := m.Lock("a")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := m.LockContext(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LockContext on a held key = %v, want DeadlineExceeded", err)
	}
	unlock()
	u, err := m.LockContext(context.Background(), "a")
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	u()
	u() // a second unlock is harmless
	if n := m.Len(); n != 0 {
		t.Fatalf("%d keys kept after every holder and waiter left", n)
	}
}

func TestKeysAreDroppedWhenFree(t *testing.T) {
	var m Map
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			u := m.Lock(string(rune('a' + i%7)))
			u()
		}(i)
	}
	wg.Wait()
	if n := m.Len(); n != 0 {
		t.Fatalf("%d keys kept", n)
	}
}

func TestTryLock(t *testing.T) {
	var m Map
	u, ok := m.TryLock("a")
	if !ok {
		t.Fatal("TryLock of a free key failed")
	}
	if _, ok := m.TryLock("a"); ok {
		t.Fatal("TryLock of a held key succeeded")
	}
	if u2, ok := m.TryLock("b"); !ok {
		t.Fatal("another key was held")
	} else {
		u2()
	}
	u()
	if u3, ok := m.TryLock("a"); !ok {
		t.Fatal("TryLock after unlock failed")
	} else {
		u3()
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("%d keys kept", n)
	}
}
