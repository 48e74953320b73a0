package bytesize

import "testing"

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{
		"512Mi": 512 << 20, "1.5Gi": 3 << 29, "2G": 2e9, "2048": 2048, "10KiB": 10240, "7B": 7, " 1Ki ": 1024, "0": 0,
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Mi", "-1Gi", "12XB", "1e400", "NaN", "lots"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

func TestFormatRoundTrip(t *testing.T) {
	for _, v := range []int64{0, 1000, 1 << 10, 512 << 20, 3 << 29, 5 << 40} {
		got, err := Parse(Format(v))
		if err != nil || (got != v && v%1024 == 0) {
			t.Errorf("Parse(Format(%d)) = %d, %v (%q)", v, got, err, Format(v))
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"512Mi", "1.5G", "7", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := Parse(s); err == nil && v < 0 {
			t.Fatalf("Parse(%q) = %d", s, v)
		}
	})
}
