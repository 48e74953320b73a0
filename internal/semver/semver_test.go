package semver

import (
	"slices"
	"strings"
	"testing"
)

// The order given by semver.org's specification, lowest first.
var ordered = []string{
	"0.9.9", "1.0.0-0.3.7", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
	"1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "1.10.0", "2.0.0", "10.0.0",
}

func TestOrder(t *testing.T) {
	for i, a := range ordered {
		for j, b := range ordered {
			got, err := Compare(a, b)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", a, b, got, want)
			}
		}
	}
	if c, _ := Compare("1.0.0+build.1", "1.0.0+other"); c != 0 {
		t.Error("build metadata changed the order")
	}
	if c, _ := Compare("v1.2.3", "1.2.3"); c != 0 {
		t.Error("a leading v changed the version")
	}
}

func TestParseRefuses(t *testing.T) {
	for _, bad := range []string{"", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.x", "1.2.3-", "1.2.3-01", "1.2.3-a..b", "1.2.3+", "1.2.3-a_b", "-1.2.3", "1.2.3 ", "99999999999999999999.0.0"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		} else if !strings.Contains(err.Error(), "version") {
			t.Errorf("Parse(%q): %v does not name the version", bad, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range ordered {
		f.Add(s)
	}
	f.Add("1.2.3-rc.1+build.5")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err != nil {
			return
		}
		// What parses writes back to a version that parses the same and compares equal.
		w, err := Parse(v.String())
		if err != nil || v.Compare(w) != 0 || v.Build != w.Build || !slices.Equal(v.Pre, w.Pre) {
			t.Fatalf("%q -> %q -> %+v, %v", s, v.String(), w, err)
		}
		if v.Compare(v) != 0 {
			t.Fatalf("%q not equal to itself", s)
		}
	})
}
