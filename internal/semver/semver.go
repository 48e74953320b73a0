// Package semver reads semantic versions (semver.org 2.0.0: MAJOR.MINOR.PATCH, an optional
// -pre-release and +build) and orders them as that specification does: numbers compare
// numerically; a pre-release is lower than its release (1.0.0-rc.1 < 1.0.0); pre-release
// identifiers compare one by one, numeric ones numerically and below alphanumeric ones,
// and a shorter list that is a prefix of a longer one is lower; build metadata is ignored.
// A leading "v" is accepted. ParseRange reads ranges of versions (>=25.0, ^1.2, ~1.2.3).
package semver

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a parsed semantic version.
type Version struct {
	Major, Minor, Patch uint64
	Pre                 []string
	Build               string
}

// Parse reads s.
func Parse(s string) (Version, error) {
	var v Version
	in := strings.TrimPrefix(s, "v")
	if i := strings.IndexByte(in, '+'); i >= 0 {
		v.Build = in[i+1:]
		in = in[:i]
		if !validIdents(v.Build, false) {
			return v, fmt.Errorf("version %q: build metadata %q: use dot-separated letters, digits and '-'", s, v.Build)
		}
	}
	if i := strings.IndexByte(in, '-'); i >= 0 {
		pre := in[i+1:]
		in = in[:i]
		if !validIdents(pre, true) {
			return v, fmt.Errorf("version %q: pre-release %q: use dot-separated letters, digits and '-', numbers without leading zeros", s, pre)
		}
		v.Pre = strings.Split(pre, ".")
	}
	parts := strings.Split(in, ".")
	if len(parts) != 3 {
		return v, fmt.Errorf("version %q: write MAJOR.MINOR.PATCH, such as 1.4.2", s)
	}
	for i, p := range parts {
		n, err := number(p)
		if err != nil {
			return v, fmt.Errorf("version %q: %s", s, err)
		}
		*[]*uint64{&v.Major, &v.Minor, &v.Patch}[i] = n
	}
	return v, nil
}

func number(p string) (uint64, error) {
	if p == "" || (len(p) > 1 && p[0] == '0') {
		return 0, fmt.Errorf("%q is not a number without leading zeros", p)
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a number", p)
		}
	}
	n, err := strconv.ParseUint(p, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", p)
	}
	return n, nil
}

func validIdents(s string, pre bool) bool {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		digits := true
		for _, c := range id {
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
				digits = false
			default:
				return false
			}
		}
		if pre && digits && len(id) > 1 && id[0] == '0' {
			return false
		}
	}
	return true
}

// String writes the version back.
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if len(v.Pre) > 0 {
		s += "-" + strings.Join(v.Pre, ".")
	}
	if v.Build != "" {
		s += "+" + v.Build
	}
	return s
}

// Compare returns -1, 0 or 1 as v is lower than, equal to (build ignored) or higher than w.
func (v Version) Compare(w Version) int {
	for _, p := range [][2]uint64{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}} {
		if p[0] != p[1] {
			return cmp(p[0] < p[1])
		}
	}
	switch {
	case len(v.Pre) == 0 && len(w.Pre) == 0:
		return 0
	case len(v.Pre) == 0:
		return 1
	case len(w.Pre) == 0:
		return -1
	}
	for i := 0; i < len(v.Pre) && i < len(w.Pre); i++ {
		a, b := v.Pre[i], w.Pre[i]
		if a == b {
			continue
		}
		an, aerr := strconv.ParseUint(a, 10, 64)
		bn, berr := strconv.ParseUint(b, 10, 64)
		switch {
		case aerr == nil && berr == nil:
			return cmp(an < bn)
		case aerr == nil:
			return -1 // numeric below alphanumeric
		case berr == nil:
			return 1
		default:
			return cmp(a < b)
		}
	}
	switch {
	case len(v.Pre) < len(w.Pre):
		return -1
	case len(v.Pre) > len(w.Pre):
		return 1
	}
	return 0
}

func cmp(less bool) int {
	if less {
		return -1
	}
	return 1
}

// Compare parses and compares two versions.
func Compare(a, b string) (int, error) {
	va, err := Parse(a)
	if err != nil {
		return 0, err
	}
	vb, err := Parse(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}
