package dns

import (
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"sync"

	"hearth.dev/internal/errdefs"
)

// table maps a container id to its address.
type table struct {
	mu     sync.RWMutex
	addrs  map[string]netip.Addr
	serial uint32 // changes with the table: the SOA's serial
}

func (t *table) init() { t.addrs = map[string]netip.Addr{} }

func (t *table) lookup(id string) (netip.Addr, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	a, ok := t.addrs[id]
	return a, ok
}

func (t *table) version() uint32 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.serial
}

// checkID accepts a DNS label: letters, digits and inner hyphens, at most 63 bytes.
func checkID(id string) error {
	ok := id != "" && len(id) <= 63 && id[0] != '-' && id[len(id)-1] != '-'
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return fmt.Errorf("dns: name %q: give 1 to 63 lower-case letters, digits or inner hyphens: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

func checkAddr(id string, a netip.Addr) error {
	if !a.IsValid() || a.IsUnspecified() {
		return fmt.Errorf("dns: address %v for %q: give a valid address: %w", a, id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Set makes "<id>.<domain>" answer addr (an A record for IPv4, AAAA for IPv6).
func (s *Server) Set(id string, addr netip.Addr) error {
	id = strings.ToLower(id)
	if err := checkID(id); err != nil {
		return err
	}
	if err := checkAddr(id, addr); err != nil {
		return err
	}
	addr = addr.Unmap()
	t := &s.table
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.addrs[id]; !ok || old != addr {
		t.addrs[id] = addr
		t.serial++
	}
	return nil
}

// Delete makes "<id>.<domain>" answer NXDOMAIN.
func (s *Server) Delete(id string) {
	id = strings.ToLower(id)
	t := &s.table
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.addrs[id]; ok {
		delete(t.addrs, id)
		t.serial++
	}
}

// Replace makes the table exactly names; nothing changes when one entry is invalid.
func (s *Server) Replace(names map[string]netip.Addr) error {
	next := make(map[string]netip.Addr, len(names))
	for id, a := range names {
		id = strings.ToLower(id)
		if err := checkID(id); err != nil {
			return err
		}
		if err := checkAddr(id, a); err != nil {
			return err
		}
		next[id] = a.Unmap()
	}
	t := &s.table
	t.mu.Lock()
	defer t.mu.Unlock()
	if !maps.Equal(t.addrs, next) {
		t.addrs = next
		t.serial++
	}
	return nil
}

// Names returns a copy of the table.
func (s *Server) Names() map[string]netip.Addr {
	t := &s.table
	t.mu.RLock()
	defer t.mu.RUnlock()
	return maps.Clone(t.addrs)
}
