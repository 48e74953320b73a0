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
	e := m.entry(key)
	select {
	case e.ch <- struct{}{}:
		return m.unlocker(key, e), nil
	case <-ctx.Done():
		m.release(key, e)
		return func() {}, ctx.Err()
	}
}

// TryLock locks key if nobody holds it, and reports whether it did.
func (m *Map) TryLock(key string) (func(), bool) {
	e := m.entry(key)
	select {
	case e.ch <- struct{}{}:
		return m.unlocker(key, e), true
	default:
		m.release(key, e)
		return func() {}, false
	}
}

// entry returns key's lock, counting the caller among its holders and waiters.
func (m *Map) entry(key string) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locks == nil {
		m.locks = map[string]*entry{}
	}
	e, ok := m.locks[key]
	if !ok {
		e = &entry{ch: make(chan struct{}, 1)}
		m.locks[key] = e
	}
	e.refs++
	return e
}

func (m *Map) unlocker(key string, e *entry) func() {
	var once sync.Once
	return func() { once.Do(func() { <-e.ch; m.release(key, e) }) }
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
