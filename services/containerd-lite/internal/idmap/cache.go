package idmap

import (
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// Cache keeps user namespaces open by mapping, so that a container's next start needs no
// new one: opening one starts a process (about 3 ms of a start). Get returns a descriptor
// of its own (a duplicate), which the caller closes. At most Max are kept, the least
// recently used closed first; a namespace holds no process, only a little kernel memory,
// and one kept for a container that is gone serves the next container given its ids.
type Cache struct {
	Open func(Mapping) (int, error)
	Max  int

	mu    sync.Mutex
	fds   map[Mapping]int
	order []Mapping // least recently used first
}

// Get returns a new descriptor of a user namespace with mapping m.
func (c *Cache) Get(m Mapping) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fd, ok := c.fds[m]; ok {
		c.touch(m)
		return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	}
	fd, err := c.Open(m)
	if err != nil || fd < 0 {
		return fd, err
	}
	if c.fds == nil {
		c.fds = map[Mapping]int{}
	}
	for len(c.order) >= max(1, c.Max) {
		unix.Close(c.fds[c.order[0]])
		delete(c.fds, c.order[0])
		c.order = c.order[1:]
	}
	c.fds[m] = fd
	c.order = append(c.order, m)
	return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
}

func (c *Cache) touch(m Mapping) {
	i := slices.Index(c.order, m)
	c.order = append(slices.Delete(c.order, i, i+1), m)
}
