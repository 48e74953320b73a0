package bindings

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"hearth.dev/internal/atomicfile"
	"hearth.dev/internal/errdefs"
)

// PortRange is the host ports given to plain-TCP LAN bindings, both ends included.
type PortRange struct{ First, Last int }

// DefaultPorts is the default PortRange.
var DefaultPorts = PortRange{30000, 32767}

// ParsePortRange reads "FIRST-LAST".
func ParsePortRange(s string) (PortRange, error) {
	var r PortRange
	if _, err := fmt.Sscanf(s, "%d-%d", &r.First, &r.Last); err != nil || r.First < 1 || r.Last > 65535 || r.First > r.Last || fmt.Sprintf("%d-%d", r.First, r.Last) != s {
		return PortRange{}, fmt.Errorf("port range %q: give FIRST-LAST within 1-65535, such as 30000-32767: %w", s, errdefs.ErrInvalidArgument)
	}
	return r, nil
}

// Store holds the bindings, in memory and in a file. Its methods may be called from
// several goroutines.
type Store struct {
	path  string
	ports PortRange

	mu   sync.Mutex
	byID map[string]Binding
}

// Open reads the store kept in dir (bindings.json), or starts an empty one.
func Open(dir string, ports PortRange) (*Store, error) {
	s := &Store{path: filepath.Join(dir, "bindings.json"), ports: ports, byID: map[string]Binding{}}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	var list []Binding
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("%s: %w (the file is written whole; restore it from a backup or remove it to start without bindings)", s.path, err)
	}
	for _, b := range list {
		s.byID[b.ID] = b
	}
	return s, nil
}

// Prepare checks r against the bindings there are and returns the binding it would
// make; exists says that a binding with the same id and settings is there already.
// Nothing changes.
func (s *Store) Prepare(r Request) (b Binding, exists bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prepareLocked(r)
}

// Create makes the binding r asks for, or returns the one there is with the same
// settings (created false). A binding of the same id with other settings (the package's
// port changed) is updated, keeping its host port and LAN name where they still apply.
func (s *Store) Create(r Request) (b Binding, created bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, exists, err := s.prepareLocked(r)
	if err != nil || exists {
		return b, false, err
	}
	old, had := s.byID[b.ID]
	s.byID[b.ID] = b
	if err := s.saveLocked(); err != nil {
		if had {
			s.byID[b.ID] = old
		} else {
			delete(s.byID, b.ID)
		}
		return Binding{}, false, err
	}
	return b, true, nil
}

func (s *Store) prepareLocked(r Request) (Binding, bool, error) {
	if err := r.check(); err != nil {
		return Binding{}, false, err
	}
	b := Binding{
		ID: MakeID(r.Container, r.Interface, r.Exposure, r.Domain), Container: r.Container, Interface: r.Interface,
		Port: r.Port, HTTP: r.HTTP, Exposure: r.Exposure, Domain: r.Domain, Passthrough: r.Passthrough,
	}
	old, had := s.byID[b.ID]
	if r.Exposure == Domain {
		for _, o := range s.byID {
			if o.Domain == b.Domain && o.ID != b.ID {
				return Binding{}, false, fmt.Errorf("domain %s is bound to %s already: unbind it there first (hearthctl unbind %s %s): %w",
					b.Domain, o.Container+"/"+o.Interface, o.Container, o.ID, errdefs.ErrAlreadyExists)
			}
		}
	}
	if r.Exposure == LAN {
		b.LANName = r.Container
		if r.HTTP {
			if had && old.HTTP && old.LANName != "" {
				b.LANName = old.LANName
			} else {
				for _, o := range s.byID {
					if o.Container == r.Container && o.Exposure == LAN && o.HTTP && o.ID != b.ID && o.LANName == r.Container {
						b.LANName = lanName(r.Container, r.Interface)
					}
				}
			}
		} else {
			if had && old.HostPort != 0 {
				b.HostPort = old.HostPort
			} else {
				p, err := s.freePortLocked()
				if err != nil {
					return Binding{}, false, err
				}
				b.HostPort = p
			}
		}
	}
	return b, had && old == b, nil
}

// freePortLocked is the lowest port of the range no binding holds.
func (s *Store) freePortLocked() (int, error) {
	used := map[int]bool{}
	for _, b := range s.byID {
		used[b.HostPort] = true
	}
	for p := s.ports.First; p <= s.ports.Last; p++ {
		if !used[p] {
			return p, nil
		}
	}
	return 0, fmt.Errorf("every host port of %d-%d is bound: unbind a plain-TCP LAN binding, or widen netd's --host-ports: %w", s.ports.First, s.ports.Last, errdefs.ErrResourceExhausted)
}

// Delete removes the binding id, or, with id empty, every binding of container. It
// returns what it removed; removing nothing is ErrNotFound for an id, and no error
// for a container.
func (s *Store) Delete(id, container string) ([]Binding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone []Binding
	switch {
	case id != "":
		b, ok := s.byID[id]
		if !ok {
			return nil, fmt.Errorf("binding %q: there is none (hearthctl addresses PKG lists them): %w", id, errdefs.ErrNotFound)
		}
		gone = append(gone, b)
	case container != "":
		for _, b := range s.byID {
			if b.Container == container {
				gone = append(gone, b)
			}
		}
	default:
		return nil, fmt.Errorf("name a binding or a container: %w", errdefs.ErrInvalidArgument)
	}
	if len(gone) == 0 {
		return nil, nil
	}
	for _, b := range gone {
		delete(s.byID, b.ID)
	}
	if err := s.saveLocked(); err != nil {
		for _, b := range gone {
			s.byID[b.ID] = b
		}
		return nil, err
	}
	sortByID(gone)
	return gone, nil
}

// List returns the bindings, of one container when container is set, sorted by id.
func (s *Store) List(container string) []Binding {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Binding, 0, len(s.byID))
	for _, b := range s.byID {
		if container == "" || b.Container == container {
			out = append(out, b)
		}
	}
	sortByID(out)
	return out
}

// Get returns one binding.
func (s *Store) Get(id string) (Binding, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.byID[id]
	return b, ok
}

func sortByID(list []Binding) {
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
}

func (s *Store) saveLocked() error {
	list := make([]Binding, 0, len(s.byID))
	for _, b := range s.byID {
		list = append(list, b)
	}
	sortByID(list)
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(s.path, data, 0o600)
}

// Containers lists the containers that have bindings.
func (s *Store) Containers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, b := range s.byID {
		if !slices.Contains(out, b.Container) {
			out = append(out, b.Container)
		}
	}
	slices.SortFunc(out, strings.Compare)
	return out
}
