package keylock

import (
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
