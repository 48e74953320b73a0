package compose

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hearth.dev/internal/manifest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden converts testdata/NAME.yaml (with NAME.env as its variables, when there is one)
// and renders the manifest with its warnings and seeds, or the refusal.
func golden(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	if e, err := ReadEnvFile(strings.TrimSuffix(file, ".yaml") + ".env"); err == nil {
		env = e
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	res, err := Convert(data, Options{File: file, Dir: "testdata", Env: env})
	if err != nil {
		var r Refused
		if !errors.As(err, &r) {
			t.Fatalf("%s: error %v is not Refused", file, err)
		}
		return "REFUSED\n" + err.Error() + "\n"
	}
	out, err := res.ManifestYAML(filepath.Base(file))
	if err != nil {
		t.Fatal(err)
	}
	// What it writes is a manifest that parses back to the same thing.
	back, err := manifest.Parse(out)
	if err != nil {
		t.Fatalf("%s: the manifest made does not parse: %v\n%s", file, err, out)
	}
	if back.ID != res.Manifest.ID || len(back.Daemons) != len(res.Manifest.Daemons) {
		t.Fatalf("%s: parsed back differs", file)
	}
	s := string(out)
	for _, sd := range res.Seeds {
		rel, _ := filepath.Rel("testdata", sd.Source)
		s += "# seed: " + sd.Volume + " <- " + rel + "\n"
	}
	for n, ref := range res.Images {
		if res.Manifest.Images[n].OCI != "images/"+n {
			t.Errorf("%s: image %s is at %q", file, n, res.Manifest.Images[n].OCI)
		}
		_ = ref
	}
	return s
}

func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	if len(files) < 7 {
		t.Fatalf("only %d compose files in testdata", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			got := golden(t, f)
			g := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(g, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(g)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s (go test -update rewrites it):\n%s", f, g, got)
			}
		})
	}
}
