package semver

import (
	"strings"
	"testing"
)

func TestRange(t *testing.T) {
	for _, tc := range []struct {
		rng     string
		canon   string
		in, out []string
	}{
		{">=25.0", ">=25.0.0", []string{"25.0.0", "25.0.1", "26.1.0", "100.0.0"}, []string{"24.9.9", "25.0.0-rc.1", "26.0.0-rc.1"}},
		{"^1.2", ">=1.2.0 <2.0.0", []string{"1.2.0", "1.9.9"}, []string{"1.1.9", "2.0.0", "2.0.0-rc.1", "1.3.0-beta"}},
		{"^1.2.3", ">=1.2.3 <2.0.0", []string{"1.2.3", "1.10.0"}, []string{"1.2.2", "2.0.0"}},
		{"^0.2.3", ">=0.2.3 <0.3.0", []string{"0.2.3", "0.2.9"}, []string{"0.3.0", "0.2.2"}},
		{"^0.0.3", ">=0.0.3 <0.0.4", []string{"0.0.3"}, []string{"0.0.4", "0.0.2"}},
		{"^0.0", ">=0.0.0 <0.1.0", []string{"0.0.0", "0.0.9"}, []string{"0.1.0"}},
		{"^0", ">=0.0.0 <1.0.0", []string{"0.9.0"}, []string{"1.0.0"}},
		{"~1.2.3", ">=1.2.3 <1.3.0", []string{"1.2.3", "1.2.99"}, []string{"1.3.0", "1.2.2"}},
		{"~1.2", ">=1.2.0 <1.3.0", []string{"1.2.0"}, []string{"1.3.0"}},
		{"~1", ">=1.0.0 <2.0.0", []string{"1.5.0"}, []string{"2.0.0"}},
		{">=1.0 <2.0", ">=1.0.0 <2.0.0", []string{"1.0.0", "1.99.0"}, []string{"0.9.0", "2.0.0"}},
		{">= 1.0  < 2.0", ">=1.0.0 <2.0.0", []string{"1.0.0"}, []string{"2.0.0"}},
		{"1.2.3", "=1.2.3", []string{"1.2.3", "v1.2.3", "1.2.3+build"}, []string{"1.2.4", "1.2.3-rc.1"}},
		{"=1.2.3", "=1.2.3", []string{"1.2.3"}, []string{"1.2.2"}},
		{"1.2", ">=1.2.0 <1.3.0", []string{"1.2.7"}, []string{"1.3.0"}},
		{"1.x", ">=1.0.0 <2.0.0", []string{"1.7.0"}, []string{"2.0.0"}},
		{"1.2.*", ">=1.2.0 <1.3.0", []string{"1.2.7"}, []string{"1.3.0"}},
		{">1.2", ">=1.3.0", []string{"1.3.0"}, []string{"1.2.9"}},
		{">1.2.3", ">1.2.3", []string{"1.2.4"}, []string{"1.2.3"}},
		{"<=1.2", "<1.3.0", []string{"1.2.9", "0.0.1"}, []string{"1.3.0"}},
		{"<=1.2.3", "<=1.2.3", []string{"1.2.3"}, []string{"1.2.4"}},
		{"<1.x", "<1.0.0", []string{"0.9.0"}, []string{"1.0.0"}},
		{"<2", "<2.0.0", []string{"1.9.9"}, []string{"2.0.0", "2.0.0-rc.1"}},
		{"*", "*", []string{"0.0.1", "99.0.0"}, []string{"1.0.0-rc.1"}},
		{"", "", nil, nil}, // refused, below
		{"^1 || ^3", ">=1.0.0 <2.0.0 || >=3.0.0 <4.0.0", []string{"1.0.0", "3.2.0"}, []string{"2.0.0"}},
		{"^1 || *", "*", []string{"2.0.0"}, nil},
		{">=2.0.0-rc.1", ">=2.0.0-rc.1", []string{"2.0.0-rc.1", "2.0.0-rc.2", "2.0.0", "3.0.0"}, []string{"2.0.0-beta", "3.0.0-rc.1"}},
		{"v1.2.3", "=1.2.3", []string{"1.2.3"}, nil},
	} {
		if tc.rng == "" {
			continue
		}
		r, err := ParseRange(tc.rng)
		if err != nil {
			t.Errorf("ParseRange(%q): %v", tc.rng, err)
			continue
		}
		if r.String() != tc.canon {
			t.Errorf("ParseRange(%q) = %q, want %q", tc.rng, r.String(), tc.canon)
		}
		for _, want := range []bool{true, false} {
			vs := tc.in
			if !want {
				vs = tc.out
			}
			for _, s := range vs {
				if got := r.Contains(mustParse(t, s)); got != want {
					t.Errorf("%q contains %s: %v, want %v", tc.rng, s, got, want)
				}
			}
		}
	}
}

func TestRangeRefuses(t *testing.T) {
	for _, tc := range []struct{ rng, want string }{
		{"", "empty"},
		{"  ", "empty"},
		{">=", "write a version after the operator"},
		{">=1.0 ||", "empty alternative"},
		{"1.2.3.4", "MAJOR.MINOR.PATCH"},
		{"01.2", "leading zeros"},
		{"1.2-rc.1", "only a full MAJOR.MINOR.PATCH takes a pre-release"},
		{"1.x.3", "nothing but wildcards"},
		{">*", "matches no version"},
		{"<*", "matches no version"},
		{"^18446744073709551615", "too large"},
		{">1.18446744073709551615", "too large"},
		{"~1.2.3-", "pre-release"},
		{">=1.0,<2.0", "not a number"},
		{"abc", "not a number"},
		{strings.Repeat("1", 300), "at most 256"},
	} {
		_, err := ParseRange(tc.rng)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseRange(%q): %v, want an error containing %q", tc.rng, err, tc.want)
		}
	}
}

func TestRangeBelow(t *testing.T) {
	for _, tc := range []struct {
		rng, v string
		below  bool
	}{
		{">=25.0", "24.0.0", true},
		{">=25.0", "25.0.0-rc.1", true},
		{">=25.0", "26.0.0", false},
		{"^1.2", "2.0.0", false},
		{"^1.2 || ^3", "2.5.0", false},
		{"^1.2 || ^3", "1.1.0", true},
		{"<2.0", "1.0.0", false},
		{"*", "0.0.1", false},
		{"1.2.3", "1.2.2", true},
	} {
		r, err := ParseRange(tc.rng)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Below(mustParse(t, tc.v)); got != tc.below {
			t.Errorf("%q below %s = %v, want %v", tc.v, tc.rng, got, tc.below)
		}
	}
}

func mustParse(t testing.TB, s string) Version {
	t.Helper()
	v, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var probes = []string{"0.0.0", "0.0.1", "0.1.0", "1.0.0-rc.1", "1.0.0", "1.2.3", "1.2.3-beta.2", "1.3.0", "2.0.0-0", "2.0.0", "25.0.0", "18446744073709551615.0.0"}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{">=25.0", "^1.2", "~1.2.3", ">=1.0 <2.0", "1.2.3", "*", "^0.0.3 || >= 2.0.0-rc.1", "1.x", "<=1.2", ">1", "v1.2.3+b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			return
		}
		// The written form reads back to itself and to a range with the same versions.
		canon := r.String()
		r2, err := parseRange(canon) // may be longer than MaxRangeLen
		if err != nil {
			t.Fatalf("%q -> %q: %v", s, canon, err)
		}
		if r2.String() != canon {
			t.Fatalf("%q -> %q -> %q", s, canon, r2.String())
		}
		for _, p := range probes {
			v := mustParse(t, p)
			if r.Contains(v) != r2.Contains(v) {
				t.Fatalf("%q and %q differ on %s", s, canon, p)
			}
			if r.Contains(v) && r.Below(v) {
				t.Fatalf("%q contains %s and says it is below", s, p)
			}
		}
	})
}
