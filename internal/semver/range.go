package semver

import (
	"fmt"
	"math"
	"strings"
)

// Range is a set of versions, written as npm and Cargo write them:
//
//	1.2.3      exactly 1.2.3 (=1.2.3 too); a partial version is every version it starts:
//	           1.2 is >=1.2.0 <1.3.0, 1 is >=1.0.0 <2.0.0 (1.x, 1.2.* the same)
//	>=25.0     25.0.0 or later; > >= < <= take partial versions: >1.2 is >=1.3.0, <=1.2 is <1.3.0
//	^1.2.3     compatible with 1.2.3: >=1.2.3 <2.0.0; ^0.2.3 is >=0.2.3 <0.3.0, ^0.0.3 is =0.0.3
//	~1.2.3     patch updates: >=1.2.3 <1.3.0; ~1.2 is >=1.2.0 <1.3.0, ~1 is >=1.0.0 <2.0.0
//	>=1.0 <2.0 both (comparators separated by spaces must all hold)
//	^1 || ^2   either (alternatives separated by ||)
//	*          any version
//
// A pre-release version (2.0.0-rc.1) is in a range only when it is in it by order and a
// comparator of the same alternative names a pre-release of the same MAJOR.MINOR.PATCH
// (>=2.0.0-rc.0 takes 2.0.0-rc.1; ^1.2 takes neither 1.3.0-rc.1 nor 2.0.0-rc.1, and * no
// pre-release at all), as npm does: a range that does not ask for pre-releases gets releases.
type Range struct {
	alts [][]comparator // any alternative whose comparators all hold; none: any version
}

type op int

const (
	opEQ op = iota
	opGT
	opGE
	opLT
	opLE
)

var opText = [...]string{opEQ: "=", opGT: ">", opGE: ">=", opLT: "<", opLE: "<="}

type comparator struct {
	op op
	v  Version
}

func (c comparator) String() string { return opText[c.op] + c.v.String() }

func (c comparator) holds(v Version) bool {
	n := v.Compare(c.v)
	switch c.op {
	case opEQ:
		return n == 0
	case opGT:
		return n > 0
	case opGE:
		return n >= 0
	case opLT:
		return n < 0
	default:
		return n <= 0
	}
}

// MaxRangeLen bounds the text of a range.
const MaxRangeLen = 256

// ParseRange reads a range (see Range) of at most MaxRangeLen bytes.
func ParseRange(s string) (Range, error) {
	if len(s) > MaxRangeLen {
		return Range{}, fmt.Errorf("version range is %d bytes; at most %d", len(s), MaxRangeLen)
	}
	return parseRange(s)
}

// parseRange is ParseRange without the bound (String's form of a range may be longer).
func parseRange(s string) (Range, error) {
	var r Range
	if strings.TrimSpace(s) == "" {
		return r, fmt.Errorf("version range %q is empty: write one such as >=1.2, ^1.2.3 or * for any version", s)
	}
	for _, alt := range strings.Split(s, "||") {
		cs, any, err := parseAlt(alt)
		if err != nil {
			return Range{}, fmt.Errorf("version range %q: %w", s, err)
		}
		if any {
			return Range{}, nil // one alternative takes every version
		}
		r.alts = append(r.alts, cs)
	}
	return r, nil
}

// parseAlt reads comparators separated by spaces; any says the alternative is "*".
func parseAlt(s string) (cs []comparator, any bool, err error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, false, fmt.Errorf("empty alternative around ||")
	}
	// An operator may stand apart from its version: ">= 1.2".
	var toks []string
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		if strings.Trim(f, "<>=^~") == "" && i+1 < len(fields) {
			f += fields[i+1]
			i++
		}
		toks = append(toks, f)
	}
	wild := 0
	for _, t := range toks {
		c, isAny, err := parseComparator(t)
		if err != nil {
			return nil, false, err
		}
		if isAny {
			wild++
			continue
		}
		cs = append(cs, c...)
	}
	if wild > 0 && len(cs) == 0 {
		return nil, true, nil
	}
	return cs, false, nil
}

// partial is a version whose minor or patch may be missing (n parts given).
type partial struct {
	v Version
	n int
}

func parseComparator(t string) (cs []comparator, any bool, err error) {
	var prefix string
	for _, p := range []string{">=", "<=", ">", "<", "=", "^", "~"} {
		if strings.HasPrefix(t, p) {
			prefix = p
			break
		}
	}
	p, err := parsePartial(t[len(prefix):])
	if err != nil {
		return nil, false, err
	}
	if p.n == 0 {
		switch prefix {
		case "", "=", ">=", "^", "~":
			return nil, true, nil
		default:
			return nil, false, fmt.Errorf("%q matches no version: write * for any version", t)
		}
	}
	// next returns the first version after every version p starts (1.2 → 1.3.0).
	next := func(p partial) (Version, error) {
		v := Version{Major: p.v.Major, Minor: p.v.Minor}
		switch p.n {
		case 1:
			v.Major, v.Minor = v.Major+1, 0
			if p.v.Major == math.MaxUint64 {
				return v, fmt.Errorf("%q: %d is too large", t, p.v.Major)
			}
		default:
			v.Minor++
			if p.v.Minor == math.MaxUint64 {
				return v, fmt.Errorf("%q: %d is too large", t, p.v.Minor)
			}
		}
		return v, nil
	}
	lo := comparator{opGE, p.v}
	switch prefix {
	case "", "=":
		if p.n == 3 {
			return []comparator{{opEQ, p.v}}, false, nil
		}
		hi, err := next(p)
		return []comparator{lo, {opLT, hi}}, false, err
	case ">=":
		return []comparator{lo}, false, nil
	case "<":
		return []comparator{{opLT, p.v}}, false, nil
	case ">":
		if p.n == 3 {
			return []comparator{{opGT, p.v}}, false, nil
		}
		hi, err := next(p)
		return []comparator{{opGE, hi}}, false, err
	case "<=":
		if p.n == 3 {
			return []comparator{{opLE, p.v}}, false, nil
		}
		hi, err := next(p)
		return []comparator{{opLT, hi}}, false, err
	case "~":
		hi, err := next(partial{p.v, min(p.n, 2)})
		return []comparator{lo, {opLT, hi}}, false, err
	default: // ^: the first non-zero part given may not change
		var hi Version
		switch {
		case p.v.Major > 0 || p.n == 1:
			hi, err = next(partial{p.v, 1})
		case p.v.Minor > 0 || p.n == 2:
			hi, err = next(partial{p.v, 2})
		default: // ^0.0.3
			hi = Version{Patch: p.v.Patch + 1}
			if p.v.Patch == math.MaxUint64 {
				err = fmt.Errorf("%q: %d is too large", t, p.v.Patch)
			}
		}
		return []comparator{lo, {opLT, hi}}, false, err
	}
}

// parsePartial reads 1, 1.2, 1.2.3-rc.1, 1.x, 1.2.*, * (n = 0) with an optional leading v.
func parsePartial(s string) (partial, error) {
	var p partial
	in := strings.TrimPrefix(s, "v")
	if in == "" {
		return p, fmt.Errorf("%q: write a version after the operator", s)
	}
	core := in
	if i := strings.IndexAny(in, "-+"); i >= 0 {
		core = in[:i]
	}
	parts := strings.Split(core, ".")
	if len(parts) > 3 {
		return p, fmt.Errorf("%q: write MAJOR.MINOR.PATCH, or fewer parts", s)
	}
	for i, part := range parts {
		if part == "x" || part == "X" || part == "*" {
			for _, rest := range parts[i+1:] {
				if rest != "x" && rest != "X" && rest != "*" {
					return p, fmt.Errorf("%q: nothing but wildcards may follow a wildcard", s)
				}
			}
			if core != in {
				return p, fmt.Errorf("%q: a wildcard takes no pre-release or build", s)
			}
			return p, nil
		}
		n, err := number(part)
		if err != nil {
			return p, fmt.Errorf("%q: %s", s, err)
		}
		*[]*uint64{&p.v.Major, &p.v.Minor, &p.v.Patch}[i] = n
		p.n = i + 1
	}
	if core != in {
		if p.n != 3 {
			return p, fmt.Errorf("%q: only a full MAJOR.MINOR.PATCH takes a pre-release or build", s)
		}
		v, err := Parse(in)
		if err != nil {
			return p, err
		}
		p.v = v
	}
	return p, nil
}

// Contains says whether v is in the range.
func (r Range) Contains(v Version) bool {
	if len(r.alts) == 0 {
		return len(v.Pre) == 0
	}
	for _, alt := range r.alts {
		if altContains(alt, v) {
			return true
		}
	}
	return false
}

func altContains(alt []comparator, v Version) bool {
	for _, c := range alt {
		if !c.holds(v) {
			return false
		}
	}
	if len(v.Pre) == 0 {
		return true
	}
	for _, c := range alt {
		if len(c.v.Pre) > 0 && c.v.Major == v.Major && c.v.Minor == v.Minor && c.v.Patch == v.Patch {
			return true
		}
	}
	return false
}

// Below says whether v is lower than every version of the range (v is too old for it).
func (r Range) Below(v Version) bool {
	if len(r.alts) == 0 {
		return false
	}
	for _, alt := range r.alts {
		below := false
		for _, c := range alt {
			if (c.op == opGE || c.op == opGT || c.op == opEQ) && !c.holds(v) && v.Compare(c.v) < 0 {
				below = true
			}
		}
		if !below {
			return false
		}
	}
	return true
}

// Any says whether the range is "*".
func (r Range) Any() bool { return len(r.alts) == 0 }

// String writes the range in plain comparators: ^1.2 as ">=1.2.0 <2.0.0". ParseRange reads
// it back to the same range (when it is not longer than MaxRangeLen).
func (r Range) String() string {
	if len(r.alts) == 0 {
		return "*"
	}
	alts := make([]string, len(r.alts))
	for i, alt := range r.alts {
		cs := make([]string, len(alt))
		for j, c := range alt {
			cs[j] = c.String()
		}
		alts[i] = strings.Join(cs, " ")
	}
	return strings.Join(alts, " || ")
}
