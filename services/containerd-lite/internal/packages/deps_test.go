package packages

import (
	"errors"
	"strings"
	"testing"

	"hearth.dev/internal/manifest"
	guestv1 "hearth.dev/proto/hearth/guest/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

func TestStartOrder(t *testing.T) {
	for _, tc := range []struct {
		name         string
		g            map[string][]string
		order, stuck string
	}{
		{"none", map[string][]string{}, "", ""},
		{"independent by name", map[string][]string{"b": nil, "a": nil, "c": nil}, "a,b,c", ""},
		{"chain", map[string][]string{"app": {"db"}, "db": {"node"}, "node": nil}, "node,db,app", ""},
		{"diamond", map[string][]string{"top": {"l", "r"}, "l": {"base"}, "r": {"base"}, "base": nil}, "base,l,r,top", ""},
		{"missing dependency is no obstacle", map[string][]string{"app": {"gone"}}, "app", ""},
		{"duplicates counted once", map[string][]string{"app": {"db", "db"}, "db": nil}, "db,app", ""},
		{"cycle and what is behind it", map[string][]string{"a": {"b"}, "b": {"a"}, "c": {"a"}, "d": nil}, "d", "a,b,c"},
		{"self", map[string][]string{"a": {"a"}, "b": nil}, "b", "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			order, stuck := startOrder(tc.g)
			if got := strings.Join(order, ","); got != tc.order {
				t.Errorf("order %q, want %q", got, tc.order)
			}
			if got := strings.Join(stuck, ","); got != tc.stuck {
				t.Errorf("stuck %q, want %q", got, tc.stuck)
			}
		})
	}
}

func TestStopOrder(t *testing.T) {
	g := map[string][]string{
		"node":    nil,
		"wallet":  {"node"},
		"explore": {"node"},
		"shop":    {"wallet"},
		"web":     nil,
	}
	for _, tc := range []struct {
		name    string
		id      string
		running string
		want    string
	}{
		{"no dependents", "web", "web,node", "web"},
		{"leaf", "shop", "node,wallet,shop", "shop"},
		{"dependents first, deepest first", "node", "node,wallet,explore,shop", "shop,wallet,explore,node"},
		{"stopped dependents stay out", "node", "node,explore", "explore,node"},
		{"behind a stopped one", "node", "node,shop", "shop,node"},
		{"id stopped itself", "node", "wallet", "wallet,node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := map[string]bool{}
			for _, n := range strings.Split(tc.running, ",") {
				run[n] = true
			}
			got := strings.Join(stopOrder(g, tc.id, func(n string) bool { return run[n] }), ",")
			if got != tc.want {
				t.Errorf("stopOrder(%s) = %s, want %s", tc.id, got, tc.want)
			}
		})
	}
	// A cycle: both stop, the one asked for last.
	if got := strings.Join(stopOrder(map[string][]string{"a": {"b"}, "b": {"a"}}, "a", func(string) bool { return true }), ","); got != "b,a" {
		t.Errorf("cycle: %s", got)
	}
}

func TestPath(t *testing.T) {
	g := map[string][]string{"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"c"}}
	for _, tc := range []struct{ from, to, want string }{
		{"a", "c", "a,b,c"},
		{"c", "b", "c,a,b"},
		{"d", "a", "d,c,a"},
		{"a", "d", ""},
		{"x", "a", ""},
	} {
		if got := strings.Join(path(g, tc.from, tc.to), ","); got != tc.want {
			t.Errorf("path(%s, %s) = %q, want %q", tc.from, tc.to, got, tc.want)
		}
	}
}

func TestWaitReasons(t *testing.T) {
	node := &manifest.Manifest{ID: "node", Version: "25.1.0", Daemons: map[string]*manifest.Daemon{"bitcoind": {}, "zmqd": {}},
		Interfaces: map[string]manifest.Interface{"rpc": {Daemon: "bitcoind", Port: 8332}, "zmq": {Daemon: "zmqd", Port: 28332}}}
	ready := map[string]guestv1.DaemonState{"bitcoind": guestv1.DaemonState_DAEMON_STATE_READY, "zmqd": guestv1.DaemonState_DAEMON_STATE_READY}
	app := &manifest.Manifest{ID: "app", Dependencies: map[string]manifest.Dependency{
		"node":  {Version: ">=25.0", Requires: []string{"rpc", "zmq"}},
		"extra": {Optional: true},
	}}
	for _, tc := range []struct {
		name  string
		node  depView
		cycle []string
		want  []string
	}{
		{"ready", depView{installed: true, mf: node, running: true, states: ready}, nil, nil},
		{"not installed", depView{}, nil, []string{"node: not installed"}},
		{"unreadable", depView{installed: true, err: errors.New("bad record")}, nil, []string{"node: unreadable: bad record"}},
		{"too old", depView{installed: true, mf: &manifest.Manifest{ID: "node", Version: "24.0.0", Interfaces: node.Interfaces}, running: true, states: ready}, nil,
			[]string{"node: node 24.0.0 is installed; a version in >=25.0 is needed"}},
		{"lacks an interface", depView{installed: true, mf: &manifest.Manifest{ID: "node", Version: "25.0.0", Interfaces: map[string]manifest.Interface{"rpc": {Daemon: "bitcoind", Port: 1}}}, running: true, states: ready}, nil,
			[]string{`node: node 25.0.0 declares no interface "zmq" (it has: rpc)`}},
		{"stopped", depView{installed: true, mf: node}, nil, []string{"node: stopped"}},
		{"stopped and waiting itself", depView{installed: true, mf: node, waiting: true}, nil, []string{"node: stopped: it waits for its own dependencies"}},
		{"daemon starting", depView{installed: true, mf: node, running: true, states: map[string]guestv1.DaemonState{
			"bitcoind": guestv1.DaemonState_DAEMON_STATE_STARTING, "zmqd": guestv1.DaemonState_DAEMON_STATE_READY}}, nil,
			[]string{"node: interface rpc not ready (daemon bitcoind is starting)"}},
		{"daemon missing and failing", depView{installed: true, mf: node, running: true, states: map[string]guestv1.DaemonState{
			"zmqd": guestv1.DaemonState_DAEMON_STATE_FAILING}}, nil,
			[]string{"node: interface rpc not ready (daemon bitcoind is not running)", "node: interface zmq not ready (daemon zmqd is failing)"}},
		{"states unknown", depView{installed: true, mf: node, running: true, statesErr: errors.New("guestd gone")}, nil,
			[]string{"node: interface rpc not ready (its daemons' states are unknown: guestd gone)", "node: interface zmq not ready (its daemons' states are unknown: guestd gone)"}},
		{"cycle", depView{installed: true, mf: node, running: true, states: ready}, []string{"app", "node", "app"},
			[]string{"node: dependency cycle: app → node → app; no package of it can start"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			views := map[string]depView{"node": tc.node}
			got := waitReasons(app, func(id string) depView {
				if id == "extra" {
					t.Errorf("an optional dependency was looked at")
				}
				return views[id]
			}, func(string) []string { return tc.cycle })
			if s := waitStrings(got); strings.Join(s, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("waits:\n%s\nwant:\n%s", strings.Join(s, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func waitStrings(ws []*hostv1.Wait) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.GetPackage()+": "+w.GetReason())
	}
	return out
}

func TestDependencyWarnings(t *testing.T) {
	mf := &manifest.Manifest{ID: "app", Dependencies: map[string]manifest.Dependency{
		"node":  {Version: ">=25.0", Requires: []string{"rpc"}, Description: "the chain"},
		"tor":   {Optional: true},
		"cache": {Optional: true, Version: "^2"},
	}}
	waits := []*hostv1.Wait{{Package: "node", Reason: "not installed"}}
	got := dependencyWarnings("app", mf, waits, func(id string) depView {
		if id == "cache" {
			return depView{installed: true, mf: &manifest.Manifest{ID: "cache", Version: "1.0.0"}}
		}
		return depView{}
	})
	want := []string{
		"dependency node (>=25.0, the chain): not installed; app waits for it and starts once it runs with its interfaces rpc ready",
		"optional dependency cache: cache 1.0.0 is installed; a version in ^2 is needed",
		"optional dependency tor is not installed: app runs without it",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestIntentsOutliveTheManager: what a manager records (a package waits, with the hooks
// of its first start; another runs; a third forgotten) is what the next one reads.
func TestIntentsOutliveTheManager(t *testing.T) {
	dir := t.TempDir()
	m1, err := New(Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	hooks := []manifest.HookRun{{Name: manifest.HookInstall, Env: map[string]string{"HEARTH_TO_VERSION": "1.0.0"}}}
	for _, step := range []struct {
		id string
		in *intent
	}{
		{"b", &intent{State: intentWaiting, Hooks: hooks}},
		{"a", &intent{State: intentRunning}},
		{"c", &intent{State: intentRunning}},
		{"c", nil},
	} {
		if err := m1.deps().set(step.id, step.in); err != nil {
			t.Fatal(err)
		}
	}
	m2, err := New(Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	got := m2.deps().all()
	if len(got) != 2 || got["a"].State != intentRunning || got["b"].State != intentWaiting ||
		len(got["b"].Hooks) != 1 || got["b"].Hooks[0].Env["HEARTH_TO_VERSION"] != "1.0.0" || got["a"].Since.IsZero() {
		t.Errorf("intents read back: %+v", got)
	}
	if !m2.isWaiting("b") || m2.isWaiting("a") || m2.isWaiting("c") {
		t.Errorf("isWaiting: b %v, a %v, c %v", m2.isWaiting("b"), m2.isWaiting("a"), m2.isWaiting("c"))
	}
	var nilManager *Manager
	if w := nilManager.WaitingFor(t.Context(), "b"); w != nil {
		t.Errorf("a nil manager's WaitingFor: %v", w)
	}
}
