package leaf

import (
	"errors"
	"fmt"
	"sync"

	"hearth.dev/internal/errdefs"
	"hearth.dev/services/certd/internal/ca"
)

// EventKind says what happened.
type EventKind int

// The events.
const (
	EventExisting EventKind = iota + 1
	EventIssued
	EventRenewed
	EventReissued
	EventRootRotated
	EventRenewalFailed
)

// Event is one change. Record is unset for EventRootRotated, which carries Roots.
type Event struct {
	Kind   EventKind
	Record *Record
	Roots  []ca.Root
}

// ErrLagged ends a subscription whose reader fell too far behind.
var ErrLagged = errors.New("watcher fell behind")

// subBuffer is how many events wait for a slow watcher before it is dropped.
const subBuffer = 256

// Hub fans events out to subscribers.
type Hub struct {
	mu   sync.Mutex
	subs map[*Sub]struct{}
}

// Sub is one subscription. C closes when the subscription ends; Err then says why.
type Sub struct {
	C   chan Event
	hub *Hub
	err error
}

// Subscribe starts a subscription; Close ends it.
func (h *Hub) Subscribe() *Sub {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[*Sub]struct{}{}
	}
	s := &Sub{C: make(chan Event, subBuffer), hub: h}
	h.subs[s] = struct{}{}
	return s
}

// Close ends the subscription.
func (s *Sub) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.endLocked(nil)
}

func (s *Sub) endLocked(err error) {
	if _, ok := s.hub.subs[s]; !ok {
		return
	}
	delete(s.hub.subs, s)
	s.err = err
	close(s.C)
}

// Err says why C closed: nil after Close, an error wrapping ErrLagged (and
// errdefs.ErrResourceExhausted) for a reader that fell behind.
func (s *Sub) Err() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.err
}

// closeAll ends every subscription (when certd stops), so that watch streams end and
// the gRPC server can stop gracefully.
func (h *Hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.endLocked(nil)
	}
}

// Publish sends ev to every subscriber without waiting; one whose buffer is full is
// dropped, so that one slow watcher never holds up certd.
func (h *Hub) Publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.C <- ev:
		default:
			s.endLocked(fmt.Errorf("%w by %d events: watch again and read faster: %w", ErrLagged, subBuffer, errdefs.ErrResourceExhausted))
		}
	}
}
