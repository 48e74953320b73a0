package idmap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"hearth.dev/internal/errdefs"
)

// Files name root's subordinate id files.
type Files struct{ SubUID, SubGID string }

// SystemFiles are the host's.
var SystemFiles = Files{SubUID: "/etc/subuid", SubGID: "/etc/subgid"}

// Pool is the host ids containers may be given: root's subordinate ranges that exist for
// both uids and gids, cut into Size-id slots.
type Pool struct {
	slots []uint32 // HostBase of every slot, ascending
}

// ErrExhausted says every slot is taken.
var ErrExhausted = errors.New("no free id range")

// LoadPool reads root's ranges from the files. Containers get ids only from them, as
// newuidmap would insist; LXC writes the maps directly (see lxcrt's forkstart), so this
// is where that rule is kept.
func LoadPool(f Files) (Pool, error) {
	uids, err := readRanges(f.SubUID, "root")
	if err != nil {
		return Pool{}, err
	}
	gids, err := readRanges(f.SubGID, "root")
	if err != nil {
		return Pool{}, err
	}
	p := PoolOf(intersect(uids, gids))
	if len(p.slots) == 0 {
		return p, fmt.Errorf("root has no subordinate id range of %d ids in both %s and %s: add one, such as 'root:100000:%d' to each (deploy/install-deps.sh does)", Size, f.SubUID, f.SubGID, Size*1024)
	}
	return p, nil
}

// PoolOf cuts ranges ([start, start+count)) into slots.
func PoolOf(ranges [][2]uint64) Pool {
	var p Pool
	for _, r := range ranges {
		for b := r[0]; b+Size <= r[0]+r[1] && b+Size <= 1<<32; b += Size {
			p.slots = append(p.slots, uint32(b))
		}
	}
	slices.Sort(p.slots)
	p.slots = slices.Compact(p.slots)
	return p
}

// Len is how many containers the pool can hold.
func (p Pool) Len() int { return len(p.slots) }

// Contains reports whether m is one of the pool's slots.
func (p Pool) Contains(m Mapping) bool {
	_, ok := slices.BinarySearch(p.slots, m.HostBase)
	return ok && m.Size == Size
}

// Allocate returns the lowest slot that overlaps none of used.
func (p Pool) Allocate(used []Mapping) (Mapping, error) {
	for _, b := range p.slots {
		m := At(b)
		if !slices.ContainsFunc(used, m.Overlaps) {
			return m, nil
		}
	}
	return Mapping{}, fmt.Errorf("%w: all %d ranges of %d ids in root's subordinate ids are taken; add more to /etc/subuid and /etc/subgid, or remove a container (and its kept volumes): %w", ErrExhausted, len(p.slots), Size, errdefs.ErrResourceExhausted)
}

// readRanges returns the ranges of user in a subordinate id file.
func readRanges(path, user string) ([][2]uint64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseRanges(f, user)
}

func parseRanges(r io.Reader, user string) ([][2]uint64, error) {
	var out [][2]uint64
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || (f[0] != user && f[0] != "0") {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 {
			continue
		}
		out = append(out, [2]uint64{start, count})
	}
	return out, sc.Err()
}

// intersect returns the parts of a that b also covers.
func intersect(a, b [][2]uint64) [][2]uint64 {
	var out [][2]uint64
	for _, x := range a {
		for _, y := range b {
			lo, hi := max(x[0], y[0]), min(x[0]+x[1], y[0]+y[1])
			if lo < hi {
				out = append(out, [2]uint64{lo, hi - lo})
			}
		}
	}
	return out
}
