package firewall

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
)

// current is the table as read from the kernel.
type current struct {
	exists bool
	chains map[string]currentChain
}

type currentChain struct {
	hook   *hook // nil for a regular chain
	policy *nftables.ChainPolicy
	rules  []currentRule
}

type currentRule struct {
	handle  uint64
	comment string
}

type opKind int

const (
	opAddTable opKind = iota
	opFlushChain
	opDelRule
	opDelChain
	opAddChain
	opAddRule
)

// op is one message of the batch.
type op struct {
	kind    opKind
	chain   *chainSpec // opAddChain, opAddRule: the chain wanted
	name    string     // the chain's name
	rule    *ruleSpec  // opAddRule
	handle  uint64     // opDelRule
	flushed int        // opFlushChain: how many rules it removes
}

func (o op) String() string {
	switch o.kind {
	case opAddTable:
		return "add table"
	case opFlushChain:
		return fmt.Sprintf("flush chain %s (%d rules)", o.name, o.flushed)
	case opDelRule:
		return fmt.Sprintf("delete rule %s handle %d", o.name, o.handle)
	case opDelChain:
		return "delete chain " + o.name
	case opAddChain:
		return "add chain " + o.name
	case opAddRule:
		return fmt.Sprintf("add rule %s %q", o.name, o.rule.comment)
	}
	return fmt.Sprintf("op(%d)", o.kind)
}

type ops []op

func (batch ops) changes() Changes {
	var c Changes
	for _, o := range batch {
		switch o.kind {
		case opAddTable:
			c.TableCreated = true
		case opFlushChain:
			c.RulesDeleted += o.flushed
		case opDelRule:
			c.RulesDeleted++
		case opDelChain:
			c.ChainsDeleted++
		case opAddChain:
			c.ChainsAdded++
		case opAddRule:
			c.RulesAdded++
		}
	}
	return c
}

// plan returns the batch that turns have into want, in the order the kernel needs:
// the table; every removal of rules (so that no rule still jumps to a chain being
// deleted); the deletion of chains; the chains to add (regular ones first, as want
// lists them); the rules to add. It returns nothing when have is want.
func plan(want []chainSpec, have current) ops {
	var dels, chainDels, chainAdds, adds ops
	addAll := func(c *chainSpec) {
		for i := range c.rules {
			adds = append(adds, op{kind: opAddRule, chain: c, name: c.name, rule: &c.rules[i]})
		}
	}
	wanted := map[string]bool{}
	for i := range want {
		c := &want[i]
		wanted[c.name] = true
		hc, ok := have.chains[c.name]
		switch {
		case !ok:
			chainAdds = append(chainAdds, op{kind: opAddChain, chain: c, name: c.name})
			addAll(c)
		case !sameChain(c, hc):
			dels = append(dels, op{kind: opFlushChain, name: c.name, flushed: len(hc.rules)})
			chainDels = append(chainDels, op{kind: opDelChain, name: c.name})
			chainAdds = append(chainAdds, op{kind: opAddChain, chain: c, name: c.name})
			addAll(c)
		case c.unordered:
			keep := map[string]bool{}
			for _, r := range c.rules {
				keep[r.comment] = false
			}
			for _, r := range hc.rules {
				if seen, ok := keep[r.comment]; ok && !seen {
					keep[r.comment] = true
					continue
				}
				dels = append(dels, op{kind: opDelRule, name: c.name, handle: r.handle})
			}
			for j := range c.rules {
				if !keep[c.rules[j].comment] {
					adds = append(adds, op{kind: opAddRule, chain: c, name: c.name, rule: &c.rules[j]})
				}
			}
		default:
			if !slices.EqualFunc(c.rules, hc.rules, func(w ruleSpec, h currentRule) bool { return w.comment == h.comment }) {
				if len(hc.rules) > 0 {
					dels = append(dels, op{kind: opFlushChain, name: c.name, flushed: len(hc.rules)})
				}
				addAll(c)
			}
		}
	}
	// Chains of the table no longer wanted, in a stable order.
	var stale []string
	for name := range have.chains {
		if !wanted[name] {
			stale = append(stale, name)
		}
	}
	slices.Sort(stale)
	for _, name := range stale {
		if n := len(have.chains[name].rules); n > 0 {
			dels = append(dels, op{kind: opFlushChain, name: name, flushed: n})
		}
		chainDels = append(chainDels, op{kind: opDelChain, name: name})
	}
	var out ops
	if !have.exists {
		out = append(out, op{kind: opAddTable})
	}
	out = append(out, dels...)
	out = append(out, chainDels...)
	out = append(out, chainAdds...)
	return append(out, adds...)
}

// sameChain says whether an existing chain has the kind, hook, priority and policy
// wanted (a base chain's rules are compared apart).
func sameChain(w *chainSpec, h currentChain) bool {
	if w.hook == nil || h.hook == nil {
		return w.hook == nil && h.hook == nil
	}
	return *w.hook == *h.hook && h.policy != nil && *h.policy == nftables.ChainPolicyAccept
}
