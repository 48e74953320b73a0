// Package bytesize reads and writes sizes as people and manifests write them: "512Mi",
// "1.5G", "2048".
package bytesize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

var units = []struct {
	suffix string
	mult   float64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// Parse reads a size: a number with an optional unit (Ki, Mi, Gi, Ti binary; k, M, G, T
// decimal; B bytes).
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	// Longest suffix first: "MiB" before "B".
	best := ""
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) && len(u.suffix) > len(best) {
			best, mult = u.suffix, u.mult
		}
	}
	num := strings.TrimSpace(strings.TrimSuffix(t, best))
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("size %q: write a number with an optional unit, such as 512Mi, 1.5Gi or 2G", s)
	}
	v := f * mult
	if v > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}

// Format writes a size in binary units, as Parse reads it.
func Format(b int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if b >= u.m {
			if b%u.m == 0 {
				return fmt.Sprintf("%d%s", b/u.m, u.s)
			}
			return fmt.Sprintf("%.1f%s", float64(b)/float64(u.m), u.s)
		}
	}
	return strconv.FormatInt(b, 10)
}
