package firewall

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
)

// installed is the kernel's view after want was applied from nothing: rule handles count
// up from 1.
func installed(want []chainSpec) current {
	have := current{exists: true, chains: map[string]currentChain{}}
	handle := uint64(0)
	accept := nftables.ChainPolicyAccept
	for _, c := range want {
		hc := currentChain{hook: c.hook}
		if c.hook != nil {
			hc.policy = &accept
		}
		for _, r := range c.rules {
			handle++
			hc.rules = append(hc.rules, currentRule{handle: handle, comment: r.comment})
		}
		have.chains[c.name] = hc
	}
	return have
}

func mustRuleset(t *testing.T, s State) []chainSpec {
	t.Helper()
	n, err := s.normalize()
	if err != nil {
		t.Fatal(err)
	}
	chains, err := ruleset(n)
	if err != nil {
		t.Fatal(err)
	}
	return chains
}

func find(want []chainSpec, chain, prefix string) ruleSpec {
	for _, c := range want {
		for _, r := range c.rules {
			if c.name == chain && strings.HasPrefix(r.comment, prefix) {
				return r
			}
		}
	}
	panic(fmt.Sprintf("no rule %q in %s", prefix, chain))
}

// opLines shows ops with the hashes cut off, for comparison.
func opLines(os ops) []string {
	var out []string
	for _, o := range os {
		s := o.String()
		if i := strings.Index(s, " #"); i >= 0 {
			s = s[:i] + `"`
		}
		out = append(out, s)
	}
	return out
}

func TestPlan(t *testing.T) {
	base := validState()
	want := mustRuleset(t, base)
	withoutDB := validState()
	withoutDB.Containers = withoutDB.Containers[:1]
	withoutDB.Forwards = nil

	tests := []struct {
		name  string
		want  []chainSpec
		have  func() current
		check func(t *testing.T, got ops)
	}{
		{
			name: "nothing there: the table, chains (targets of jumps first), rules",
			want: want,
			have: func() current { return current{} },
			check: func(t *testing.T, got ops) {
				lines := opLines(got)
				if lines[0] != "add table" {
					t.Errorf("first op %q", lines[0])
				}
				chains := []string{}
				for _, l := range lines {
					if name, ok := strings.CutPrefix(l, "add chain "); ok {
						chains = append(chains, name)
					}
				}
				if !slices.Equal(chains, []string{"services", "flows", "forwards", "input", "forward", "prerouting", "output", "postrouting"}) {
					t.Errorf("chains added in order %v", chains)
				}
				if c := got.changes(); !c.TableCreated || c.ChainsAdded != 8 || c.RulesAdded != 19 || c.RulesDeleted != 0 {
					t.Errorf("changes %+v", c)
				}
			},
		},
		{
			name:  "all there: nothing to do",
			want:  want,
			have:  func() current { return installed(want) },
			check: func(t *testing.T, got ops) { wantOps(t, got, nil) },
		},
		{
			name: "a rule twice in an unordered chain (a crash between two writes): the second goes",
			want: want,
			have: func() current {
				h := installed(want)
				c := h.chains[chainFlows]
				c.rules = append(c.rules, currentRule{handle: 100, comment: find(want, chainFlows, "flow web").comment})
				h.chains[chainFlows] = c
				return h
			},
			check: func(t *testing.T, got ops) { wantOps(t, got, []string{"delete rule flows handle 100"}) },
		},
		{
			name: "a container gone: exactly its rules go",
			want: mustRuleset(t, withoutDB),
			have: func() current { return installed(want) },
			check: func(t *testing.T, got ops) {
				// services 1-3, flows: db 4, web 5; forwards: db 6.
				wantOps(t, got, []string{"delete rule flows handle 4", "delete rule forwards handle 6"})
			},
		},
		{
			name: "a container back: its rules are added, nothing else",
			want: want,
			have: func() current { return installed(mustRuleset(t, withoutDB)) },
			check: func(t *testing.T, got ops) {
				wantOps(t, got, []string{`add rule flows "flow db tcp/5432"`, `add rule forwards "forward tcp/15432 db:5432"`})
			},
		},
		{
			name: "a stranger's rule in an ordered chain: the chain is written again",
			want: want,
			have: func() current {
				h := installed(want)
				c := h.chains[chainForward]
				c.rules = slices.Insert(c.rules, 1, currentRule{handle: 200, comment: ""})
				h.chains[chainForward] = c
				return h
			},
			check: func(t *testing.T, got ops) {
				lines := opLines(got)
				if lines[0] != "flush chain forward (7 rules)" || len(lines) != 7 {
					t.Fatalf("ops %q", lines)
				}
				for _, l := range lines[1:] {
					if !strings.HasPrefix(l, "add rule forward ") {
						t.Fatalf("ops %q", lines)
					}
				}
			},
		},
		{
			name: "a chain netd no longer makes: flushed, then deleted after the other removals",
			want: want,
			have: func() current {
				h := installed(want)
				h.chains["old"] = currentChain{rules: []currentRule{{handle: 300, comment: "old"}}}
				c := h.chains[chainFlows]
				c.rules = append(c.rules, currentRule{handle: 301, comment: "jump to old"})
				h.chains[chainFlows] = c
				return h
			},
			check: func(t *testing.T, got ops) {
				wantOps(t, got, []string{"delete rule flows handle 301", "flush chain old (1 rules)", "delete chain old"})
			},
		},
		{
			name: "a base chain with another priority or policy: made again",
			want: want,
			have: func() current {
				h := installed(want)
				c := h.chains[chainInput]
				hk := *c.hook
				hk.prio = 10
				c.hook = &hk
				h.chains[chainInput] = c
				c = h.chains[chainPostrouting]
				drop := nftables.ChainPolicyDrop
				c.policy = &drop
				h.chains[chainPostrouting] = c
				return h
			},
			check: func(t *testing.T, got ops) {
				lines := opLines(got)
				want := []string{
					"flush chain input (3 rules)", "flush chain postrouting (2 rules)",
					"delete chain input", "delete chain postrouting",
					"add chain input", "add chain postrouting",
				}
				if len(lines) != len(want)+5 || !slices.Equal(lines[:len(want)], want) {
					t.Fatalf("ops:\n%s", strings.Join(lines, "\n"))
				}
				if c := got.changes(); c.ChainsAdded != 2 || c.ChainsDeleted != 2 || c.RulesAdded != 5 || c.RulesDeleted != 5 {
					t.Errorf("changes %+v", c)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.check(t, plan(tt.want, tt.have())) })
	}
}

func wantOps(t *testing.T, got ops, want []string) {
	t.Helper()
	if lines := opLines(got); !slices.Equal(lines, want) {
		t.Fatalf("ops:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
