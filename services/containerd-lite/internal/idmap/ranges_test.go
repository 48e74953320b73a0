package idmap

import (
	"errors"
	"strings"
	"testing"

	"hearth.dev/internal/errdefs"
)

func TestParseRanges(t *testing.T) {
	in := "# comment\nalice:100000:65536\nroot:165536:131072\nroot:bad:1\n0:1000000:65536\nroot:5:0\n"
	got, err := parseRanges(strings.NewReader(in), "root")
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]uint64{{165536, 131072}, {1000000, 65536}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestPoolAllocate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		uids   [][2]uint64
		gids   [][2]uint64
		used   []Mapping
		want   uint32
		errSub string
	}{
		{name: "first slot", uids: [][2]uint64{{100000, 4 * Size}}, gids: [][2]uint64{{100000, 4 * Size}}, want: 100000},
		{name: "skips used", uids: [][2]uint64{{100000, 4 * Size}}, gids: [][2]uint64{{100000, 4 * Size}}, used: []Mapping{At(100000), At(100000 + 2*Size)}, want: 100000 + Size},
		{name: "only where uid and gid ranges meet", uids: [][2]uint64{{100000, 4 * Size}}, gids: [][2]uint64{{100000 + 2*Size, 4 * Size}}, want: 100000 + 2*Size},
		{name: "a used mapping off the grid blocks the slots it touches", uids: [][2]uint64{{100000, 3 * Size}}, gids: [][2]uint64{{100000, 3 * Size}}, used: []Mapping{At(100000 + Size/2)}, want: 100000 + 2*Size},
		{name: "exhausted", uids: [][2]uint64{{100000, Size}}, gids: [][2]uint64{{100000, Size}}, used: []Mapping{At(100000)}, errSub: "all 1 ranges"},
		{name: "a range shorter than a slot gives none", uids: [][2]uint64{{100000, Size - 1}}, gids: [][2]uint64{{100000, Size}}, errSub: "all 0 ranges"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := PoolOf(intersect(tc.uids, tc.gids))
			m, err := p.Allocate(tc.used)
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) || !errors.Is(err, errdefs.ErrResourceExhausted) || !errors.Is(err, ErrExhausted) {
					t.Fatalf("err = %v, want one containing %q and wrapping ResourceExhausted", err, tc.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.HostBase != tc.want || m.Size != Size {
				t.Fatalf("got %v, want base %d", m, tc.want)
			}
			if !p.Contains(m) {
				t.Fatalf("pool does not contain its own slot %v", m)
			}
		})
	}
}

func TestOverlaps(t *testing.T) {
	a := At(100000)
	for _, tc := range []struct {
		b    Mapping
		want bool
	}{
		{At(100000), true},
		{At(100000 + Size), false},
		{At(100000 - Size), false},
		{Mapping{HostBase: 100000 + Size - 1, Size: 1}, true},
		{Mapping{HostBase: 99999, Size: 1}, false},
		{Mapping{HostBase: 99999, Size: 2}, true},
	} {
		if got := a.Overlaps(tc.b); got != tc.want || tc.b.Overlaps(a) != tc.want {
			t.Errorf("%v overlaps %v = %v, want %v", a, tc.b, got, tc.want)
		}
	}
}

// FuzzParseRanges: any file gives ranges that lie within 32-bit ids and slots that fit
// their ranges.
func FuzzParseRanges(f *testing.F) {
	f.Add("root:100000:65536\n")
	f.Add("root:4294901760:65536\nroot:0:1\n# x\nroot::\n")
	f.Add("0:196608:67108864\nalice:1:2:3\n")
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := parseRanges(strings.NewReader(in), "root")
		if err != nil {
			return
		}
		for _, r := range rs {
			if r[1] == 0 || r[0] > 1<<32-1 || r[1] > 1<<32-1 {
				t.Fatalf("range %v out of bounds", r)
			}
		}
		p := PoolOf(rs)
		for _, s := range p.slots {
			m := At(s)
			if uint64(m.HostBase)+uint64(m.Size) > 1<<32 {
				t.Fatalf("slot %v past the id space", m)
			}
			inside := false
			for _, r := range rs {
				if uint64(s) >= r[0] && uint64(s)+Size <= r[0]+r[1] {
					inside = true
				}
			}
			if !inside {
				t.Fatalf("slot %v in no range of %v", m, rs)
			}
		}
	})
}
