package packages

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// fakeStarts is the scheduler's world: starts take a while, a package's interfaces are
// ready some time after its start, and a dependency outside the set is there or not.
type fakeStarts struct {
	mu        sync.Mutex
	g         map[string][]string
	take      time.Duration
	readyIn   time.Duration   // after a start, until its interfaces are ready
	fail      map[string]bool // starts that fail
	absent    map[string]bool // dependencies not installed
	startedAt map[string]time.Time
	endedAt   map[string]time.Time
	running   int
	most      int // most starts at once
}

func (f *fakeStarts) waits(id string) []*hostv1.Wait {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ws []*hostv1.Wait
	for _, dep := range f.g[id] {
		end, ok := f.endedAt[dep]
		switch {
		case f.absent[dep]:
			ws = append(ws, &hostv1.Wait{Package: dep, Reason: "not installed"})
		case !ok && isIn(f.g, dep):
			ws = append(ws, &hostv1.Wait{Package: dep, Reason: "stopped"})
		case ok && time.Since(end) < f.readyIn:
			ws = append(ws, &hostv1.Wait{Package: dep, Reason: "interface web not ready (daemon web is starting)"})
		}
	}
	return ws
}

func isIn(g map[string][]string, id string) bool { _, ok := g[id]; return ok }

func (f *fakeStarts) start(id string) (bool, error) {
	f.mu.Lock()
	f.startedAt[id] = time.Now()
	f.running++
	f.most = max(f.most, f.running)
	f.mu.Unlock()
	time.Sleep(f.take)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running--
	if f.fail[id] {
		return false, errors.New("lxc start failed")
	}
	f.endedAt[id] = time.Now()
	return true, nil
}

func TestSchedule(t *testing.T) {
	many := map[string][]string{}
	var manyIDs []string
	for _, c := range "abcdefghij" {
		many[string(c)] = nil
		manyIDs = append(manyIDs, string(c))
	}
	for _, tc := range []struct {
		name    string
		g       map[string][]string
		ids     []string
		workers int
		readyIn time.Duration
		fail    map[string]bool
		absent  map[string]bool
		want    map[string]string // id → outcome
		most    int               // most starts at once, exactly
	}{
		{name: "independent ones side by side, up to the bound", g: many, ids: manyIDs, workers: 4,
			want: map[string]string{"a": OutcomeStarted, "j": OutcomeStarted}, most: 4},
		{name: "a bound of one is one at a time", g: many, ids: manyIDs[:3], workers: 1,
			want: map[string]string{"a": OutcomeStarted, "c": OutcomeStarted}, most: 1},
		{name: "a chain, each after its dependency is ready", g: map[string][]string{"app": {"db"}, "db": {"node"}, "node": nil},
			ids: []string{"app", "db", "node"}, workers: 4, readyIn: 30 * time.Millisecond,
			want: map[string]string{"node": OutcomeStarted, "db": OutcomeStarted, "app": OutcomeStarted}, most: 1},
		{name: "a diamond: the two sides together", g: map[string][]string{"top": {"l", "r"}, "l": {"base"}, "r": {"base"}, "base": nil},
			ids: []string{"base", "l", "r", "top"}, workers: 4,
			want: map[string]string{"base": OutcomeStarted, "l": OutcomeStarted, "r": OutcomeStarted, "top": OutcomeStarted}, most: 2},
		{name: "a failed dependency leaves its dependents waiting", g: map[string][]string{"app": {"db"}, "db": nil, "web": nil},
			ids: []string{"app", "db", "web"}, workers: 4, fail: map[string]bool{"db": true},
			want: map[string]string{"db": OutcomeFailed, "app": OutcomeWaiting, "web": OutcomeStarted}, most: 2},
		{name: "a dependency not installed: left waiting, the others start", g: map[string][]string{"app": {"gone"}, "web": nil},
			ids: []string{"app", "web"}, workers: 4, absent: map[string]bool{"gone": true},
			want: map[string]string{"app": OutcomeWaiting, "web": OutcomeStarted}, most: 1},
		{name: "a cycle is left waiting", g: map[string][]string{"a": {"b"}, "b": {"a"}, "c": nil},
			ids: []string{"a", "b", "c"}, workers: 4,
			want: map[string]string{"a": OutcomeWaiting, "b": OutcomeWaiting, "c": OutcomeStarted}, most: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeStarts{g: tc.g, take: 20 * time.Millisecond, readyIn: tc.readyIn, fail: tc.fail, absent: tc.absent,
				startedAt: map[string]time.Time{}, endedAt: map[string]time.Time{}}
			rs := schedule(context.Background(), tc.ids, tc.g, tc.workers, f.waits, f.start)
			if len(rs) != len(tc.ids) {
				t.Fatalf("%d results for %d packages: %+v", len(rs), len(tc.ids), rs)
			}
			got := map[string]StartResult{}
			for _, r := range rs {
				got[r.ID] = r
			}
			for id, want := range tc.want {
				if got[id].Outcome != want {
					t.Errorf("%s: %s (%v %v), want %s", id, got[id].Outcome, got[id].Err, got[id].Waits, want)
				}
				if want == OutcomeWaiting && len(got[id].Waits) == 0 {
					t.Errorf("%s waits, but for nothing said", id)
				}
			}
			if f.most != tc.most {
				t.Errorf("at most %d starts at once, want %d", f.most, tc.most)
			}
			// Nothing started before what it depends on had started and was ready.
			for id, at := range f.startedAt {
				for _, dep := range tc.g[id] {
					end, ok := f.endedAt[dep]
					if !ok || at.Before(end.Add(tc.readyIn)) {
						t.Errorf("%s started at %v, before its dependency %s was ready (started %v, ended %v)", id, at, dep, ok, end)
					}
				}
			}
		})
	}
}

// A cancelled schedule starts nothing more, waits for the starts under way, and says why
// the others did not start.
func TestScheduleCancelled(t *testing.T) {
	g := map[string][]string{"a": nil, "b": {"a"}}
	f := &fakeStarts{g: g, take: 50 * time.Millisecond, startedAt: map[string]time.Time{}, endedAt: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	rs := schedule(ctx, []string{"a", "b"}, g, 2, f.waits, f.start)
	out := map[string]StartResult{}
	for _, r := range rs {
		out[r.ID] = r
	}
	if out["a"].Outcome != OutcomeStarted {
		t.Errorf("a, under way when cancelled: %+v", out["a"])
	}
	if out["b"].Outcome != OutcomeWaiting || len(out["b"].Waits) == 0 || !strings.Contains(out["b"].Waits[0].GetReason(), "canceled") {
		t.Errorf("b: %+v", out["b"])
	}
	if _, ok := f.startedAt["b"]; ok {
		t.Error("b started after the cancel")
	}
}
