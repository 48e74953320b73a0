package compose

import (
	"bytes"
	"fmt"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// ManifestYAML writes the result's manifest, headed by a comment that says where it came
// from and lists the warnings, for a developer to read and edit.
func (r *Result) ManifestYAML(source string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Made by hearthctl pack --compose from %s: edit it, then pack the directory.\n", source)
	fmt.Fprintf(&b, "# Images are read from images/<name> (an OCI layout or an archive); assets/%s/<volume>\n", AssetsSeedDir)
	b.WriteString("# holds the files the install hook copies into each seeded volume.\n")
	if len(r.Warnings) > 0 {
		b.WriteString("#\n# Warnings:\n")
		for _, w := range r.Warnings {
			b.WriteString("#   " + strings.ReplaceAll(w.String(), "\n", " ") + "\n")
		}
	}
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(r.Manifest); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
