package manifest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"hearth.dev/internal/semver"
)

// Dependency is another package this one uses, named by its id under dependencies:
//
//	dependencies:
//	  bitcoind: {version: ">=25.0", requires: [rpc], description: "the node it talks to"}
//
// The host starts the package only once each dependency that is not optional runs and
// the daemons behind the interfaces it requires are ready; the package reaches those
// interfaces (and only those) at <id>.hearth.internal.
type Dependency struct {
	// Version is a range the dependency's version must be in (">=25.0", "^1.2", "1.x");
	// any version when empty.
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	// Requires names interfaces of the dependency (its manifest's interfaces) this
	// package uses.
	Requires []string `yaml:"requires,omitempty" json:"requires,omitempty"`
	// Optional: the package starts without it; it is still told when it is missing.
	Optional bool `yaml:"optional,omitempty" json:"optional,omitempty"`
	// Description says what the package uses it for, for the user.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
}

// MaxDescription bounds a dependency's description.
const MaxDescription = 256

// Range is the dependency's version range (any version when none is given).
func (d Dependency) Range() (semver.Range, error) {
	if strings.TrimSpace(d.Version) == "" {
		return semver.ParseRange("*")
	}
	return semver.ParseRange(d.Version)
}

// Check says what an installed dependency lacks: a version outside the range, or an
// interface the dependent requires that its manifest does not declare. Each problem is a
// sentence that names the dependency; none when it fits.
func (d Dependency) Check(dep *Manifest) []string {
	var out []string
	if r, err := d.Range(); err == nil {
		if v, err := semver.Parse(dep.Version); err != nil || !r.Contains(v) {
			out = append(out, fmt.Sprintf("%s %s is installed; a version in %s is needed", dep.ID, dep.Version, d.Version))
		}
	}
	for _, it := range d.Requires {
		if _, ok := dep.Interfaces[it]; !ok {
			have := slices.Sorted(maps.Keys(dep.Interfaces))
			if len(have) == 0 {
				have = []string{"none"}
			}
			out = append(out, fmt.Sprintf("%s %s declares no interface %q (it has: %s)", dep.ID, dep.Version, it, strings.Join(have, ", ")))
		}
	}
	return out
}

// dependencies checks the dependencies' ids, version ranges and required interface names.
func (c *checker) dependencies(m *Manifest) {
	for _, id := range slices.Sorted(maps.Keys(m.Dependencies)) {
		d := m.Dependencies[id]
		f := "dependencies." + id
		if !idRE.MatchString(id) {
			c.add(f, "%q is not a package id: use 1 to 32 lower-case letters, digits and '-'", id)
		}
		if id == m.ID {
			c.add(f, "a package cannot depend on itself")
		}
		if strings.TrimSpace(d.Version) != "" {
			if _, err := semver.ParseRange(d.Version); err != nil {
				c.add(f+".version", "%v", err)
			}
		}
		for i, it := range d.Requires {
			rf := fmt.Sprintf("%s.requires[%d]", f, i)
			if !nameRE.MatchString(it) {
				c.add(rf, "%q is not an interface name: use lower-case letters, digits, '.', '_' and '-'", it)
			} else if slices.Contains(d.Requires[:i], it) {
				c.add(rf, "interface %q is named twice", it)
			}
		}
		if len(d.Description) > MaxDescription || !utf8.ValidString(d.Description) {
			c.add(f+".description", "give at most %d bytes of UTF-8 text", MaxDescription)
		}
	}
}
