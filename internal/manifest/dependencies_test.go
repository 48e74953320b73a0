package manifest

import (
	"fmt"
	"strings"
	"testing"

	"hearth.dev/internal/semver"
)

const depsBase = "id: app\nversion: 1.0.0\nimages: {a: {ref: x}}\ndaemons: {d: {image: a}}\n"

func TestParseDependencies(t *testing.T) {
	m, err := Parse([]byte(depsBase + `dependencies:
  bitcoind: {version: ">=25.0", requires: [rpc, zmq], description: "the node it follows"}
  tor-proxy: {optional: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	b := m.Dependencies["bitcoind"]
	if b.Version != ">=25.0" || strings.Join(b.Requires, ",") != "rpc,zmq" || b.Optional || b.Description != "the node it follows" {
		t.Errorf("bitcoind: %+v", b)
	}
	if !m.Dependencies["tor-proxy"].Optional {
		t.Errorf("tor-proxy: %+v", m.Dependencies["tor-proxy"])
	}
	for _, tc := range []struct {
		dep     Dependency
		version string
		want    bool
	}{
		{b, "25.0.0", true},
		{b, "26.1.3", true},
		{b, "24.9.9", false},
		{b, "26.0.0-rc.1", false}, // a range that names no pre-release takes none
		{m.Dependencies["tor-proxy"], "0.0.1", true},
		{Dependency{Version: "^1.2"}, "1.9.0", true},
		{Dependency{Version: "^1.2"}, "2.0.0", false},
	} {
		r, err := tc.dep.Range()
		if err != nil {
			t.Fatalf("%q: %v", tc.dep.Version, err)
		}
		if got := r.Contains(mustVersion(t, tc.version)); got != tc.want {
			t.Errorf("%q contains %s = %v, want %v", tc.dep.Version, tc.version, got, tc.want)
		}
	}
}

func TestParseDependenciesRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, deps string
		want       []string
	}{
		{"bad id", "  Bitcoin_D: {}\n", []string{`manifest.yaml:6:3: dependencies.Bitcoin_D: "Bitcoin_D" is not a package id`}},
		{"itself", "  app: {}\n", []string{"manifest.yaml:6:3: dependencies.app: a package cannot depend on itself"}},
		{"bad range", "  db: {version: \">=banana\"}\n", []string{"manifest.yaml:6:17: dependencies.db.version: ", "banana"}},
		{"empty alternative", "  db: {version: \"^1 ||\"}\n", []string{"dependencies.db.version: "}},
		{"bad interface", "  db: {requires: [ok, Not OK]}\n", []string{`manifest.yaml:6:23: dependencies.db.requires[1]: "Not OK" is not an interface name`}},
		{"interface twice", "  db: {requires: [rpc, rpc]}\n", []string{`dependencies.db.requires[1]: interface "rpc" is named twice`}},
		{"long description", "  db: {description: " + strings.Repeat("x", MaxDescription+1) + "}\n", []string{"dependencies.db.description: give at most 256 bytes"}},
		{"unknown field", "  db: {versoin: \"1\"}\n", []string{"manifest.yaml:6: field versoin not found in Dependency"}},
		{"not a map", "  db: [x]\n", []string{"manifest.yaml:6: cannot unmarshal !!seq into manifest.Dependency"}},
		{"requires a string", "  db: {requires: rpc}\n", []string{"manifest.yaml:6: cannot unmarshal !!str `rpc`"}},
		{"two at once", "  app: {}\n  db: {version: \"=banana\"}\n", []string{"manifest has 2 problems", "depend on itself", "dependencies.db.version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(depsBase + "dependencies:\n" + tc.deps))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestDependencyCheck(t *testing.T) {
	node := &Manifest{ID: "bitcoind", Version: "25.1.0", Interfaces: map[string]Interface{"rpc": {Daemon: "d", Port: 8332}, "p2p": {Daemon: "d", Port: 8333}}}
	bare := &Manifest{ID: "bitcoind", Version: "26.0.0"}
	for _, tc := range []struct {
		name string
		dep  Dependency
		of   *Manifest
		want []string
	}{
		{"fits", Dependency{Version: ">=25.0", Requires: []string{"rpc"}}, node, nil},
		{"any version", Dependency{}, node, nil},
		{"too old", Dependency{Version: ">=26"}, node, []string{"bitcoind 25.1.0 is installed; a version in >=26 is needed"}},
		{"no such interface", Dependency{Requires: []string{"rpc", "zmq"}}, node, []string{`bitcoind 25.1.0 declares no interface "zmq" (it has: p2p, rpc)`}},
		{"no interfaces at all", Dependency{Version: "^25", Requires: []string{"rpc"}}, bare, []string{
			"bitcoind 26.0.0 is installed; a version in",
			`bitcoind 26.0.0 declares no interface "rpc" (it has: none)`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.dep.Check(tc.of)
			if len(got) != len(tc.want) {
				t.Fatalf("Check = %q, want %d problems like %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d: %q, want it to start with %q", i, got[i], w)
				}
			}
		})
	}
}

// FuzzDependencies: whatever a dependencies entry holds, Parse either refuses it or gives
// a dependency whose id is a package id other than the package's own, whose range parses,
// and whose required interfaces are distinct names; Check never panics on it.
func FuzzDependencies(f *testing.F) {
	f.Add("bitcoind", ">=25.0", "rpc", "the node", false)
	f.Add("app", "*", "", "", true)
	f.Add("db", "^1 || ~2.3", "a,b", "x", false)
	f.Add("x", "1.2.3-rc.1 - 2", "a,a", "\xff", true)
	f.Fuzz(func(t *testing.T, id, version, requires, description string, optional bool) {
		var req []string
		if requires != "" {
			req = strings.Split(requires, ",")
		}
		text := fmt.Sprintf("%sdependencies:\n  %q: {version: %q, requires: %s, description: %q, optional: %v}\n",
			depsBase, id, version, yamlList(req), description, optional)
		m, err := Parse([]byte(text))
		if err != nil {
			return
		}
		if len(m.Dependencies) != 1 {
			t.Fatalf("%d dependencies from %q", len(m.Dependencies), text)
		}
		for dep, d := range m.Dependencies {
			if !idRE.MatchString(dep) || dep == m.ID {
				t.Fatalf("accepted dependency id %q", dep)
			}
			if _, err := d.Range(); err != nil {
				t.Fatalf("accepted version %q whose range does not parse: %v", d.Version, err)
			}
			seen := map[string]bool{}
			for _, r := range d.Requires {
				if !nameRE.MatchString(r) || seen[r] {
					t.Fatalf("accepted requires %q", d.Requires)
				}
				seen[r] = true
			}
			d.Check(&Manifest{ID: dep, Version: "1.0.0"})
			d.Check(&Manifest{ID: dep, Version: "not a version"})
		}
	})
}

func yamlList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func mustVersion(t *testing.T, s string) semver.Version {
	t.Helper()
	v, err := semver.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
