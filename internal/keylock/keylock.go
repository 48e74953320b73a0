// Package keylock serializes work per key: one lock for each key in use, made on first
// use and dropped when nobody holds or waits for it. A wait can be given up with a context.
package keylock

import (
	"context"
	"sync"
)

// Map holds a lock per key. The zero value is ready to use.
type Map struct {
	mu    sync.Mutex
	locks map[string]*entry
}

type entry struct {
	ch   chan struct{} // holds a token while the key is locked
	refs int           // holders and waiters
}

// Lock locks key and returns its unlock.
func (m *Map) Lock(key string) func() {
	unlock, _ := m.LockContext(context.Background(), key)
	return unlock
}

// LockContext locks key, or gives up when ctx ends first and returns ctx's error.
func (m *Map) LockContext(ctx context.Context, key string) (func(), error) {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = map[string]*entry{}
	}
	e, ok := m.locks[key]
	if !ok {
		e = &entry{ch: make(chan struct{}, 1)}
		m.locks[key] = e
	}
	e.refs++
	m.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-e.ch; m.release(key, e) }) }, nil
	case <-ctx.Done():
		m.release(key, e)
		return func() {}, ctx.Err()
	}
}

func (m *Map) release(key string, e *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(m.locks, key)
	}
}

// Len reports how many keys are held or waited for.
func (m *Map) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.locks)
}
